// Bundles each entry point into one self-contained ESM file for Node >= 18.19:
// hooks must not walk node_modules at run time (they run several times per VM start).
import { build } from 'esbuild';
import { readFileSync, readdirSync, copyFileSync, chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
// The hooks are CommonJS: Node loads a .cjs entry ~13 ms faster than an ESM
// one (no ESM loader to set up), and libvirt runs a hook several times per VM
// start (bench/hook-cost.ts). The CLI and the demo stay ESM.
const hooks = {
  'qemu-hook': 'src/hooks/qemu.ts',
  'network-hook': 'src/hooks/network.ts',
};
const entries = {
  virtwire: 'src/cli/virtwire.ts',
  // `virtwire demo` loads it at run time from beside virtwire.mjs: the sandbox stays out of the CLI bundle.
  demo: 'src/demo/demo.ts',
};
// What caches of derived results (src/policy/parse-cache.ts) key on: every source file and the locked dependencies.
const digest = createHash('sha256');
for (const f of ['package-lock.json', ...readdirSync('src', { recursive: true }).map((f) => `src/${f}`).filter((f) => f.endsWith('.ts')).sort()]) {
  digest.update(`${f}\0`).update(readFileSync(f)).update('\0');
}
mkdirSync('dist', { recursive: true });
// The hook bundles were ESM (.mjs) before: a stale one must not look current.
for (const f of Object.keys(hooks)) rmSync(`dist/${f}.mjs`, { force: true });
const common = {
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  sourcemap: false,
  define: { VIRTWIRE_VERSION: JSON.stringify(pkg.version), VIRTWIRE_BUILD: JSON.stringify(digest.digest('hex').slice(0, 16)) },
  logLevel: 'warning',
  // What went into each bundle: test/unit/bundles.test.ts proves no hook bundle holds src/libvirt/.
  metafile: true,
};
const results = await Promise.all([
  build({ ...common, entryPoints: hooks, format: 'cjs', outExtension: { '.js': '.cjs' } }),
  build({
    ...common,
    entryPoints: entries,
    format: 'esm',
    outExtension: { '.js': '.mjs' },
    // Some dependencies are CommonJS and require() Node built-ins.
    banner: { js: "import { createRequire as __vwCreateRequire } from 'node:module'; const require = __vwCreateRequire(import.meta.url);" },
  }),
]);
const result = { metafile: { inputs: {}, outputs: {} } };
for (const r of results) {
  Object.assign(result.metafile.inputs, r.metafile.inputs);
  Object.assign(result.metafile.outputs, r.metafile.outputs);
}
writeFileSync('dist/meta.json', JSON.stringify(result.metafile));
copyFileSync('src/demo/sandbox-init.sh', 'dist/sandbox-init.sh');
for (const f of Object.keys(entries)) chmodSync(`dist/${f}.mjs`, 0o755);
for (const f of Object.keys(hooks)) chmodSync(`dist/${f}.cjs`, 0o755);

// Bundles each entry point into one self-contained ESM file for Node >= 18.19:
// hooks must not walk node_modules at run time (they run several times per VM start).
import { build } from 'esbuild';
import { readFileSync, readdirSync, copyFileSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const entries = {
  'qemu-hook': 'src/hooks/qemu.ts',
  'network-hook': 'src/hooks/network.ts',
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
const result = await build({
  entryPoints: entries,
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18.19',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  sourcemap: false,
  define: { VIRTWIRE_VERSION: JSON.stringify(pkg.version), VIRTWIRE_BUILD: JSON.stringify(digest.digest('hex').slice(0, 16)) },
  // Some dependencies are CommonJS and require() Node built-ins.
  banner: { js: "import { createRequire as __vwCreateRequire } from 'node:module'; const require = __vwCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  // What went into each bundle: test/unit/bundles.test.ts proves no hook bundle holds src/libvirt/.
  metafile: true,
});
writeFileSync('dist/meta.json', JSON.stringify(result.metafile));
copyFileSync('src/demo/sandbox-init.sh', 'dist/sandbox-init.sh');
for (const f of Object.keys(entries)) chmodSync(`dist/${f}.mjs`, 0o755);

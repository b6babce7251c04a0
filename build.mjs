// Bundles each entry point into one self-contained ESM file for Node >= 18.19:
// hooks must not walk node_modules at run time (they run several times per VM start).
import { build } from 'esbuild';
import { readFileSync, copyFileSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const entries = {
  'qemu-hook': 'src/hooks/qemu.ts',
  'network-hook': 'src/hooks/network.ts',
  virtwire: 'src/cli/virtwire.ts',
  // `virtwire demo` loads it at run time from beside virtwire.mjs: the sandbox stays out of the CLI bundle.
  demo: 'src/demo/demo.ts',
};
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
  define: { VIRTWIRE_VERSION: JSON.stringify(pkg.version) },
  // Some dependencies are CommonJS and require() Node built-ins.
  banner: { js: "import { createRequire as __vwCreateRequire } from 'node:module'; const require = __vwCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  // What went into each bundle: test/unit/bundles.test.ts proves no hook bundle holds src/libvirt/.
  metafile: true,
});
writeFileSync('dist/meta.json', JSON.stringify(result.metafile));
copyFileSync('src/demo/sandbox-init.sh', 'dist/sandbox-init.sh');
for (const f of Object.keys(entries)) chmodSync(`dist/${f}.mjs`, 0o755);

// What each bundle is made of, from esbuild's own record (build.mjs writes
// dist/meta.json). Hooks never talk to libvirt (the daemon waits for them):
// no hook bundle may hold anything under src/libvirt/. The hooks and the
// everyday CLI carry nothing of the demo's sandbox, which is its own bundle
// (dist/demo.mjs) that `virtwire demo` loads at run time. `npm test` builds
// first; run alone, this test builds when dist/meta.json is missing or older
// than the sources.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { ROOT } from './helpers.js';

const META = join(ROOT, 'dist', 'meta.json');
const HOOK_BUNDLES = { 'dist/qemu-hook.cjs': 'src/hooks/qemu.ts', 'dist/network-hook.cjs': 'src/hooks/network.ts' };

function newestSourceMtime(dir = join(ROOT, 'src')): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSourceMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function metafile(): Metafile {
  const built = statSync(META, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const sources = Math.max(newestSourceMtime(), ...['build.mjs', 'package.json', 'package-lock.json'].map((f) => statSync(join(ROOT, f)).mtimeMs));
  if (built < sources) execFileSync(process.execPath, ['build.mjs'], { cwd: ROOT, stdio: 'inherit', timeout: 120_000 });
  return JSON.parse(readFileSync(META, 'utf8')) as Metafile;
}

/** The inputs of one bundle under src/libvirt/. */
function libvirtInputs(meta: Metafile, bundle: string): string[] {
  const out = meta.outputs[bundle];
  if (!out) throw new Error(`${bundle} is not in the metafile (outputs: ${Object.keys(meta.outputs).join(', ')})`);
  return Object.keys(out.inputs).filter((p) => p.startsWith('src/libvirt/'));
}

describe('bundle boundaries (esbuild metafile)', () => {
  it('no hook bundle includes anything under src/libvirt/', { timeout: 120_000 }, () => {
    const meta = metafile();
    for (const [bundle, entry] of Object.entries(HOOK_BUNDLES)) {
      const inputs = Object.keys(meta.outputs[bundle]?.inputs ?? {});
      // Not vacuous: the bundle is there and holds its entry point and the hook code.
      expect(meta.outputs[bundle]?.entryPoint).toBe(entry);
      expect(inputs.filter((p) => p.startsWith('src/hooks/')).length).toBeGreaterThan(3);
      expect(libvirtInputs(meta, bundle)).toEqual([]);
    }
    // …while src/libvirt/ exists and is TypeScript the bundler would pick up.
    expect(readdirSync(join(ROOT, 'src', 'libvirt')).sort()).toEqual(['client.ts', 'errors.ts', 'event-lines.ts', 'events.ts', 'virsh.ts']);
  });

  it('the same check flags a bundle that imports the client, even through another module', async () => {
    const r = await build({
      stdin: { contents: "import { LibvirtClient } from './src/libvirt/client.ts'; console.log(LibvirtClient);", resolveDir: ROOT, sourcefile: 'fake-hook.ts', loader: 'ts' },
      absWorkingDir: ROOT,
      bundle: true,
      platform: 'node',
      format: 'esm',
      write: false,
      outfile: 'dist/fake-hook.mjs',
      metafile: true,
      logLevel: 'silent',
    });
    expect(libvirtInputs(r.metafile, 'dist/fake-hook.mjs').sort()).toEqual(['src/libvirt/client.ts', 'src/libvirt/errors.ts', 'src/libvirt/virsh.ts']);
  });
});

describe('the hooks carry only what a hook run needs (issue 12)', () => {
  it.each(Object.keys(HOOK_BUNDLES))('%s holds no execa (the hooks spawn with node:child_process) and nothing of the CLI', { timeout: 120_000 }, (bundle) => {
    const inputs = Object.keys(metafile().outputs[bundle]?.inputs ?? {});
    expect(inputs.length).toBeGreaterThan(10);
    expect(inputs.filter((p) => p.includes('node_modules/execa/') || p.startsWith('src/cli/'))).toEqual([]);
  });
});

describe('the demo is its own bundle', () => {
  it.each(['dist/virtwire.mjs', 'dist/qemu-hook.cjs', 'dist/network-hook.cjs'])('%s includes nothing from src/demo/ (the sandbox)', { timeout: 120_000 }, (out) => {
    const o = metafile().outputs[out];
    expect(o, `${out} in dist/meta.json`).toBeDefined();
    expect(Object.keys(o!.inputs).some((f) => f.startsWith('src/')), `${out} has inputs from src/`).toBe(true);
    expect(Object.keys(o!.inputs).filter((f) => f.startsWith('src/demo/'))).toEqual([]);
  });

  it('dist/demo.mjs is its own entry point, holding the sandbox; virtwire.mjs loads it by a computed path', { timeout: 120_000 }, () => {
    const demo = metafile().outputs['dist/demo.mjs'];
    expect(demo?.entryPoint).toBe('src/demo/demo.ts');
    expect(Object.keys(demo!.inputs)).toEqual(expect.arrayContaining(['src/demo/demo.ts', 'src/demo/sandbox.ts', 'src/demo/guest-image.ts']));
    expect(readFileSync(join(ROOT, 'dist', 'virtwire.mjs'), 'utf8')).toContain('./demo.mjs');
  });
});

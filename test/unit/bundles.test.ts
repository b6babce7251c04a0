// What each bundle is made of, from esbuild's metafile (build.mjs writes
// dist/meta.json): the hooks and the everyday CLI carry nothing of the demo's
// sandbox, which is its own bundle (dist/demo.mjs) that `virtwire demo` loads
// at run time. Needs `npm run build` first (npm test builds before vitest).
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

const META = join(ROOT, 'dist', 'meta.json');

interface Metafile {
  outputs: Record<string, { bytes: number; entryPoint?: string; inputs: Record<string, { bytesInOutput: number }> }>;
}

const DEMO_ONLY = ['src/demo/', 'src/sandbox/'];

// Like the e2e files: skipped (with the reason in its name) only outside CI; under CI=true a missing build fails.
describe.skipIf(!existsSync(META) && process.env.CI !== 'true')('bundles (dist/meta.json; run "npm run build" first)', () => {
  const meta = (): Metafile => JSON.parse(readFileSync(META, 'utf8')) as Metafile;

  it('is a build of the current sources', () => {
    const built = statSync(META).mtimeMs;
    const stale = Object.values(meta().outputs).flatMap((o) => Object.keys(o.inputs))
      .filter((f) => f.startsWith('src/') && (!existsSync(join(ROOT, f)) || statSync(join(ROOT, f)).mtimeMs > built));
    expect(stale, 'sources changed since dist/meta.json was written: run "npm run build"').toEqual([]);
  });

  it.each(['dist/virtwire.mjs', 'dist/qemu-hook.mjs', 'dist/network-hook.mjs'])('%s includes nothing from src/demo/ (the sandbox)', (out) => {
    const o = meta().outputs[out];
    expect(o, `${out} in dist/meta.json`).toBeDefined();
    expect(Object.keys(o!.inputs).some((f) => f.startsWith('src/')), `${out} has inputs from src/`).toBe(true);
    expect(Object.keys(o!.inputs).filter((f) => DEMO_ONLY.some((d) => f.startsWith(d)))).toEqual([]);
  });

  it('dist/demo.mjs is its own entry point, holding the sandbox; virtwire.mjs loads it by a computed path', () => {
    const demo = meta().outputs['dist/demo.mjs'];
    expect(demo?.entryPoint).toBe('src/demo/demo.ts');
    expect(Object.keys(demo!.inputs)).toEqual(expect.arrayContaining(['src/demo/demo.ts', 'src/demo/sandbox.ts', 'src/demo/guest-image.ts']));
    expect(readFileSync(join(ROOT, 'dist', 'virtwire.mjs'), 'utf8')).toContain('./demo.mjs');
  });
});

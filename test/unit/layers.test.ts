// Arrows point down only (ARCHITECTURE.md, "Shape for the next releases"):
// each folder of src/ may import only from folders ranked below it (and
// from itself). Host drivers and the ledger never import each other.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { ROOT } from './helpers.js';

const SRC = join(ROOT, 'src');

/** Rank of each top-level folder; files directly in src/ (errors, paths, log, version) are the base, below model. */
const RANK: Record<string, number> = {
  '.': -1, model: 0,
  xml: 1,
  host: 2, state: 2, policy: 2, rewrite: 2,
  plan: 3,
  bindings: 4,
  engine: 5,
  hooks: 6, libvirt: 6, sandbox: 6, demo: 6,
  cli: 7,
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const folderOf = (file: string): string => relative(SRC, file).split('/').slice(0, -1)[0] ?? '.';

describe('layers', () => {
  it('every import points down (or stays in its folder)', () => {
    const wrong: string[] = [];
    for (const f of files(SRC)) {
      const from = folderOf(f);
      for (const m of readFileSync(f, 'utf8').matchAll(/^(?:import|export)[^'"]*from '(\.[^']+)'/gm)) {
        const target = resolve(dirname(f), (m[1] as string).replace(/\.js$/, '.ts'));
        const to = folderOf(target);
        if (to === from) continue;
        const rf = RANK[from];
        const rt = RANK[to];
        if (rf === undefined || rt === undefined) wrong.push(`${relative(SRC, f)}: unranked folder ${from} or ${to}`);
        else if (rt >= rf) wrong.push(`${relative(SRC, f)} (${from}) imports ${relative(SRC, target)} (${to})`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

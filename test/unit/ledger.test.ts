import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../../src/state/ledger.js';
import { withLock } from '../../src/state/lock.js';
import { tempDir, ROOT } from './helpers.js';
import { recordFigure } from '../support/figures.js';


describe('ledger', () => {
  it('writes, lists and removes entries; a corrupt file does not crash readers', () => {
    const l = new Ledger(tempDir());
    const e = { schema: 1, uuid: '6f1f6a0e-0000-4000-8000-000000000001', name: 'vm "1"\n', state: 'reserved' as const, binding: 'nat' as const, bindingVersion: 1, forwards: [], updatedAt: 'now' };
    l.putVm(e);
    expect(l.hasVm(e.uuid)).toBe(true);
    expect(l.listVms()).toEqual([e]);
    writeFileSync(join(l.dir, 'vms', '6f1f6a0e-0000-4000-8000-000000000002.json'), '{half');
    expect(l.listVms()).toEqual([e]);
    expect(l.removeVm(e.uuid)).toBe(true);
    expect(l.removeVm(e.uuid)).toBe(false);
    expect(() => l.getVm('../../etc/passwd')).toThrow('invalid uuid');
  });

  it('serializes concurrent writers across processes (no lost update)', async () => {
    const dir = tempDir();
    const counter = join(dir, 'counter');
    writeFileSync(counter, '0');
    // Each child does an unprotected-looking read-modify-write with a pause in
    // the middle: without the lock, increments are lost.
    const script = `
      import { withLock } from ${JSON.stringify(join(ROOT, 'src/state/lock.ts'))};
      import { readFileSync, writeFileSync } from 'node:fs';
      for (let i = 0; i < 5; i++) {
        await withLock(${JSON.stringify(join(dir, 'lock'))}, async () => {
          const n = Number(readFileSync(${JSON.stringify(counter)}, 'utf8'));
          await new Promise((r) => setTimeout(r, 5));
          writeFileSync(${JSON.stringify(counter)}, String(n + 1));
        });
      }`;
    const file = join(dir, 'child.ts');
    writeFileSync(file, script);
    const tsx = join(ROOT, 'node_modules', '.bin', 'vite-node');
    const children = Array.from({ length: 6 }, () => new Promise<number>((resolve) => {
      spawn(tsx, [file], { stdio: 'inherit' }).on('close', (code) => resolve(code ?? 1));
    }));
    expect(await Promise.all(children)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(readFileSync(counter, 'utf8')).toBe('30');
    recordFigure('concurrency', '6 processes updating the ledger at once under its lock (read, pause, write)', 'unit', 30);
  }, 60_000);

  it('the lock is released when the holder dies, and reports a clear timeout', async () => {
    const dir = tempDir();
    const lock = join(dir, 'lock');
    // Its own process group, so the kill below ends flock and its sleep alike (no orphan left running).
    const holder = spawn('flock', ['-o', lock, 'sleep', '30'], { detached: true, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
    await expect(withLock(lock, async () => 1, 1)).rejects.toThrow(`could not lock ${lock} within 1 s`);
    const exited = new Promise((r) => holder.on('exit', r));
    process.kill(-(holder.pid as number), 'SIGKILL');
    await exited;
    expect(await withLock(lock, async () => 42, 5)).toBe(42);
  });
});

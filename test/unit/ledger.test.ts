import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger, entryForwards } from '../../src/state/ledger.js';
import { withLock, holdLocksThroughHelpers, lockAhead } from '../../src/state/lock.js';
import { tempDir, ROOT } from './helpers.js';
import { recordFigure } from '../support/figures.js';


/** Pids of the lock helper shells for `lock` (from /proc: no procps needed). */
function lockHelpers(lock: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '').slice(-2).join(' ') === `virtwire-lock ${lock}`; } catch { return false; }
  }).map(Number);
}

describe('ledger', () => {
  it('writes, lists and removes entries; a corrupt file does not crash readers', () => {
    const l = new Ledger(tempDir());
    const e = { schema: 2, uuid: '6f1f6a0e-0000-4000-8000-000000000001', name: 'vm "1"\n', state: 'reserved' as const, nics: [], updatedAt: 'now' };
    l.putVm(e);
    expect(l.hasVm(e.uuid)).toBe(true);
    expect(l.listVms()).toEqual([e]);
    writeFileSync(join(l.dir, 'vms', '6f1f6a0e-0000-4000-8000-000000000002.json'), '{half');
    expect(l.listVms()).toEqual([e]);
    expect(l.removeVm(e.uuid)).toBe(true);
    expect(l.removeVm(e.uuid)).toBe(false);
    expect(() => l.getVm('../../etc/passwd')).toThrow('invalid uuid');
  });

  it('parses an entry once per text of its file: the same object while the file holds the same bytes, never one it no longer holds', () => {
    const a = new Ledger(tempDir());
    const b = new Ledger(a.dir); // another operation (the watcher makes a ledger per request): the same parsed entry
    const e = { schema: 2, uuid: '6f1f6a0e-0000-4000-8000-000000000009', name: 'vm-9', state: 'reserved' as const, nics: [], updatedAt: 'now' };
    a.putVm(e);
    expect(a.getVm(e.uuid)).toBe(e);
    expect(b.listVms()[0]).toBe(e);
    // Handed out again and again: no caller can change it under the next.
    expect(() => { (b.getVm(e.uuid) as { name: string }).name = 'other'; }).toThrow(TypeError);
    expect(() => { (b.getVm(e.uuid)?.nics as unknown[]).push({}); }).toThrow(TypeError);
    const file = join(a.dir, 'vms', `${e.uuid}.json`);
    // Rewritten in place by another process, the same size, within the same clock tick: read anew.
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace('"vm-9"', '"vm-8"'));
    const reread = b.getVm(e.uuid);
    expect(reread).not.toBe(e);
    expect(reread?.name).toBe('vm-8');
    expect(a.listVms()[0]).toBe(reread);
    writeFileSync(file, text.replace('"reserved"', '"gibbrsh"'));
    expect(a.getVm(e.uuid)).toBeUndefined();
    expect(a.readVms().corrupt.map((c) => c.reason)).toEqual(['bad state']);
    writeFileSync(file, text);
    expect(a.getVm(e.uuid)).toEqual(e);
    expect(a.getVm(e.uuid)).not.toBe(e); // parsed again: the text was another in between
    expect(a.removeVm(e.uuid)).toBe(true);
    expect(a.getVm(e.uuid)).toBeUndefined();
  });

  it("reads the port-forward release's entries (schema 1: one binding per VM, forwards flat) as per-NIC entries", () => {
    const l = new Ledger(tempDir());
    const uuid = '6f1f6a0e-0000-4000-8000-000000000003';
    const fwd = (nic: string, port: number) => ({ family: 4, proto: 'tcp', host: { lo: port, hi: port }, guestAddr: '192.168.122.10', guest: { lo: 80, hi: 80 }, from: [], guestSubnet: '192.168.122.0/24', nic, network: 'default', origin: 'x', allowHostConflict: false });
    const v1 = { schema: 1, uuid, name: 'web-1', state: 'applied', binding: 'nat', bindingVersion: 1, forwards: [fwd('52:54:00:00:00:01', 8080), fwd('52:54:00:00:00:02', 8081), fwd('52:54:00:00:00:01', 8082)], updatedAt: 'then' };
    mkdirSync(join(l.dir, 'vms'), { recursive: true });
    writeFileSync(join(l.dir, 'vms', `${uuid}.json`), JSON.stringify(v1));
    const e = l.getVm(uuid);
    expect(e?.nics.map((n) => `${n.mac} ${n.binding}/${n.bindingVersion} ${n.network} ${n.forwards.map((f) => f.host.lo).join(',')}`)).toEqual([
      '52:54:00:00:00:01 nat/1 default 8080,8082',
      '52:54:00:00:00:02 nat/1 default 8081',
    ]);
    expect(entryForwards(e!).map((f) => f.host.lo).sort()).toEqual([8080, 8081, 8082]);
    expect(l.readVms().corrupt).toEqual([]);
  });

  it('serializes concurrent writers across processes (no lost update)', async () => {
    const dir = tempDir();
    const counter = join(dir, 'counter');
    writeFileSync(counter, '0');
    // Each child does an unprotected-looking read-modify-write with a pause in
    // the middle: without the lock, increments are lost.
    // Half of them take it through the long-lived helper (the watcher's way), half spawn flock per lock.
    const script = `
      import { withLock, holdLocksThroughHelpers } from ${JSON.stringify(join(ROOT, 'src/state/lock.ts'))};
      import { readFileSync, writeFileSync } from 'node:fs';
      if (process.argv.includes('--helper')) holdLocksThroughHelpers();
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
    const children = Array.from({ length: 6 }, (_, i) => new Promise<number>((resolve) => {
      spawn(tsx, [file, ...(i % 2 ? ['--helper'] : [])], { stdio: 'inherit' }).on('close', (code) => resolve(code ?? 1));
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

  it.each(['perl', 'sh'] as const)('through the helpers (%s): holders in this process take turns, another process is kept out meanwhile, a killed helper is replaced', async (kind) => {
    const lock = join(tempDir(), 'lock');
    holdLocksThroughHelpers(true, kind);
    try {
      const order: string[] = [];
      const held = (tag: string) => withLock(lock, async () => {
        order.push(`${tag}+`);
        // Meanwhile another process cannot take it.
        expect(spawnSync('flock', ['-n', lock, 'true']).status).toBe(1);
        await new Promise((r) => setTimeout(r, 20));
        order.push(`${tag}-`);
        return tag;
      });
      expect(await Promise.all([held('a'), held('b'), held('c')])).toEqual(['a', 'b', 'c']);
      expect(order).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
      expect(spawnSync('flock', ['-n', lock, 'true']).status, 'released after').toBe(0);
      // A failing holder releases it too.
      await expect(withLock(lock, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
      expect(spawnSync('flock', ['-n', lock, 'true']).status).toBe(0);
      // The helper killed: the next caller still gets the lock.
      const helpers = lockHelpers(lock);
      expect(helpers).toHaveLength(1);
      expect(readFileSync(`/proc/${helpers[0]}/cmdline`, 'utf8').split('\0')[0]).toBe(kind === 'perl' ? '/usr/bin/perl' : 'sh');
      process.kill(helpers[0] as number, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      expect(await withLock(lock, async () => 7, 5)).toBe(7);
      // Held elsewhere: the same clear timeout.
      const holder = spawn('flock', ['-o', lock, 'sleep', '30'], { detached: true, stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 200));
      await expect(withLock(lock, async () => 1, 1)).rejects.toThrow(`could not lock ${lock} within 1 s`);
      await expect(withLock(lock, async () => 1, 0), 'no wait at all').rejects.toThrow(`could not lock ${lock} within 0 s`);
      process.kill(-(holder.pid as number), 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      expect(await withLock(lock, async () => 8, 0), 'free again, taken with no wait').toBe(8);
    } finally {
      holdLocksThroughHelpers(false);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(lockHelpers(lock), 'the helpers ended').toEqual([]);
  });

  it('a lock taken ahead (the watcher, as a prepare arrives): held before its holder comes, which runs under it; dropped when none came; never taken over another holder of this process', async () => {
    const lock = join(tempDir(), 'lock');
    const heldElsewhere = (): boolean => spawnSync('flock', ['-n', lock, 'true']).status === 1;
    holdLocksThroughHelpers(true);
    try {
      const drop = lockAhead(lock);
      for (let i = 0; i < 50 && !heldElsewhere(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(heldElsewhere(), 'taken before any withLock').toBe(true);
      expect(await withLock(lock, async () => heldElsewhere())).toBe(true);
      expect(heldElsewhere(), 'released by the holder that took it').toBe(false);
      await drop(); // nothing left to drop
      expect(heldElsewhere()).toBe(false);

      const unused = lockAhead(lock);
      for (let i = 0; i < 50 && !heldElsewhere(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(heldElsewhere()).toBe(true);
      await unused();
      expect(heldElsewhere(), 'dropped: no holder came').toBe(false);

      // While a holder of this process has it, nothing is taken ahead: the next holder waits its turn as usual.
      const order: string[] = [];
      let release = (): void => {};
      const first = withLock(lock, () => { order.push('first+'); return new Promise<void>((r) => { release = () => { order.push('first-'); r(); }; }); });
      await new Promise((r) => setTimeout(r, 50));
      const none = lockAhead(lock);
      const second = withLock(lock, async () => { order.push('second'); });
      release();
      await Promise.all([first, second, none()]);
      expect(order).toEqual(['first+', 'first-', 'second']);
      expect(heldElsewhere()).toBe(false);
    } finally {
      holdLocksThroughHelpers(false);
    }
  });
});

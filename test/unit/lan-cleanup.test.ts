import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cleanupStaleLans } from '../support/lan.js';

describe.skipIf(process.getuid?.() !== 0)('cleanupStaleLans (needs root: real netns)', () => {
  const pidns = readlinkSync('/proc/self/ns/pid');

  it("deletes a dead owner's LAN netns (killing what runs in it) and its record; leaves live owners and other PID namespaces alone", async () => {
    const dead = 'vw-l-999996-ab';
    const other = 'vw-l-999995-ab';
    for (const ns of [dead, other]) expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    const rec = (ns: string) => `/tmp/virtwire-lan-${ns}.json`;
    writeFileSync(rec(dead), JSON.stringify({ netns: dead, pidns, pid: 999996, start: '1' }));
    writeFileSync(rec(other), JSON.stringify({ netns: other, pidns: 'pid:[1]', pid: 999995, start: '1' }));
    const live = `vw-l-${process.pid}-ab`;
    const start = (await import('node:fs')).readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19];
    writeFileSync(rec(live), JSON.stringify({ netns: live, pidns, pid: process.pid, start }));
    const sleeper = spawn('ip', ['netns', 'exec', dead, 'sleep', '60'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !spawnSync('ip', ['netns', 'pids', dead], { encoding: 'utf8' }).stdout.trim(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(await cleanupStaleLans()).toEqual([dead]);
      expect(existsSync(`/run/netns/${dead}`)).toBe(false);
      expect(existsSync(rec(dead))).toBe(false);
      expect(existsSync(`/run/netns/${other}`)).toBe(true);
      expect(existsSync(rec(other))).toBe(true);
      expect(existsSync(rec(live))).toBe(true);
      await new Promise<void>((r) => (sleeper.exitCode !== null || sleeper.signalCode !== null ? r() : sleeper.once('exit', () => r())));
      expect(sleeper.signalCode).toBe('SIGKILL');
    } finally {
      if (sleeper.exitCode === null && sleeper.signalCode === null) sleeper.kill('SIGKILL');
      for (const ns of [dead, other]) spawnSync('ip', ['netns', 'del', ns]);
      for (const ns of [dead, other, live]) rmSync(rec(ns), { force: true });
    }
  });
});

import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync, existsSync, rmSync, readlinkSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { Sandbox } from '../../src/demo/sandbox.js';
import { alive } from '../support/process.js';

/** A temp dir as a killed sandbox run leaves it. */
function leftover(id: string, owner: object): string {
  const dir = `/tmp/virtwire-sandbox-${id}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/OWNER`, JSON.stringify(owner));
  return dir;
}

describe('Sandbox.cleanupStale', () => {
  const pidns = readlinkSync('/proc/self/ns/pid');

  it('removes what a dead owner in this PID namespace left; leaves live owners and other PID namespaces alone', async () => {
    const dead = leftover('999999-test', { pidns, pid: 999999, start: '1', hostNetns: 'vw-h-999999-aa', clientNetns: 'vw-c-999999-aa' });
    const live = leftover(`${process.pid}-test`, { pidns, pid: process.pid, start: (await import('node:fs')).readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19], hostNetns: 'x', clientNetns: 'y' });
    const nested = leftover('999998-test', { pidns: 'pid:[1]', pid: 999998, start: '1', hostNetns: 'vw-h-999998-aa', clientNetns: 'vw-c-999998-aa' });
    try {
      const removed = await Sandbox.cleanupStale();
      expect(removed).toContain(dead);
      expect(existsSync(dead)).toBe(false);
      expect(existsSync(live)).toBe(true);
      expect(existsSync(nested)).toBe(true);
    } finally {
      for (const d of [dead, live, nested]) rmSync(d, { recursive: true, force: true });
    }
  });

  it.skipIf(process.getuid?.() !== 0)('also removes the netns a dead owner adopted (vw-l-…), killing what runs in it', async () => {
    const ns = 'vw-l-999997-ab';
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    const dir = leftover('999997-test', { pidns, pid: 999997, start: '1', hostNetns: 'vw-h-999997-ab', clientNetns: 'vw-c-999997-ab' });
    writeFileSync(`${dir}/NETNS`, `${ns}\n`);
    // `ip netns exec` execs sleep: the pid is sleep's, inside the netns.
    const sleeper = spawn('ip', ['netns', 'exec', ns, 'sleep', '60'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.trim(); i++) await new Promise((r) => setTimeout(r, 20));
      const removed = await Sandbox.cleanupStale();
      expect(removed).toContain(ns);
      expect(existsSync(`/run/netns/${ns}`)).toBe(false);
      for (let i = 0; i < 50 && alive(sleeper.pid!); i++) await new Promise((r) => setTimeout(r, 20));
      expect(sleeper.exitCode ?? sleeper.signalCode).toBe('SIGKILL');
    } finally {
      if (sleeper.exitCode === null && sleeper.signalCode === null) sleeper.kill('SIGKILL');
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

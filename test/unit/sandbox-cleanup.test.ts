import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync, existsSync, rmSync, readlinkSync } from 'node:fs';
import { Sandbox } from '../../src/demo/sandbox.js';

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
});

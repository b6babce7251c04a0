// The watcher's event source (src/libvirt/events.ts) against the sandbox's
// real libvirtd: libvirt 9 (Debian 12) and 11 (the Debian 13 root, whose own
// virsh runs). The source runs in this process; only its virsh command is
// prefixed with `nsenter` into the sandbox's namespaces and root — the same
// argv a host's virsh gets. No guest boots: domains are defined from XML.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from 'xmlbuilder2';
import { Sandbox } from '../../src/demo/sandbox.js';
import { LibvirtEvents, type EventTrigger } from '../../src/libvirt/events.js';
import { alive } from '../support/process.js';
import { ensureTrixieRoot } from '../support/rootfs.js';
import { MODES, restartLibvirtd, skipE2e } from './support.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms / 1000} s`);
    await sleep(50);
  }
}

/** A name that spells out a fake event: the triggers must still say what really happened. */
const NAME = `ev q'uote "dq" x': Undefined Removed\u2028 ü 日本`;

function domainXml(name: string): string {
  const d = create().ele('domain', { type: 'qemu' });
  d.ele('name').txt(name);
  d.ele('uuid').txt(randomUUID());
  d.ele('memory', { unit: 'MiB' }).txt('64');
  d.ele('os').ele('type', { arch: 'x86_64' }).txt('hvm');
  d.ele('devices');
  return d.end({ prettyPrint: true });
}

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  let src: LibvirtEvents;
  const syncs: EventTrigger[][] = [];
  const log: string[] = [];
  const seen = (kind: string, lifecycle: string) => syncs.some((b) => b.some((t) => t.kind === kind && t.lifecycle === lifecycle));
  /** virsh processes running inside the sandbox (the Debian 13 root has no procps). */
  const virshInside = async () =>
    (await sb.exec(['bash', '-c', 'for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = virsh ] && echo "${p#/proc/}"; done; true'])).stdout.trim();

  beforeAll(async () => {
    sb = await Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined });
    src = new LibvirtEvents(
      {
        sync: (t) => syncs.push([...t]),
        connected: () => log.push('connected'),
        reconnected: () => log.push('reconnected'),
        disconnected: (why) => log.push(`disconnected: ${why}`),
        retrying: (_w, ms) => log.push(`retry in ${ms}`),
      },
      { command: ['nsenter', '-t', String(sb.initPid), '-n', '-m', '-p', '-r', '-w', '--', 'virsh'] },
    );
    src.start();
    await until('connected', () => log.includes('connected'), 15_000);
  }, 240_000);

  afterAll(async () => {
    await src?.stop();
    await sb?.stop();
  });

  it('define and undefine a domain: Defined, then Undefined triggers, coalesced', async () => {
    const file = join(sb.dir, 'ev-domain.xml');
    writeFileSync(file, domainXml(NAME));
    await sb.virsh('define', '--file', file);
    await until('Defined trigger', () => seen('domain', 'Defined'), 10_000);
    expect(seen('domain', 'Undefined')).toBe(false);
    await sb.virsh('undefine', '--domain', NAME);
    await until('Undefined trigger', () => seen('domain', 'Undefined'), 10_000);
    expect(syncs.every((b) => b.every((t) => !('name' in t)))).toBe(true);
  });

  it('stop and start a network: Stopped, then Started triggers', async () => {
    await sb.virsh('net-destroy', '--network', 'default');
    await sb.virsh('net-start', '--network', 'default');
    await until('network Started trigger', () => seen('network', 'Started'), 10_000);
    expect(seen('network', 'Stopped')).toBe(true);
  });

  it('libvirtd restarted: disconnected, then reconnected, and events flow again', { timeout: 90_000 }, async () => {
    const before = src.pids;
    expect(before).toHaveLength(2);
    await restartLibvirtd(sb);
    await until('disconnected', () => log.some((l) => l.startsWith('disconnected')), 10_000);
    expect(log.find((l) => l.startsWith('disconnected'))).toMatch(/^disconnected: virsh (event|net-event): Disconnected from qemu:\/\/\/system due to end of file$/);
    await until('reconnected', () => log.includes('reconnected'), 40_000);
    expect(before.filter(alive)).toEqual([]);
    expect(src.state).toBe('up');
    syncs.length = 0;
    const file = join(sb.dir, 'ev-after.xml');
    writeFileSync(file, domainXml('ev-after-restart'));
    await sb.virsh('define', '--file', file);
    await until('Defined trigger after the reconnect', () => seen('domain', 'Defined'), 10_000);
    await sb.virsh('undefine', '--domain', 'ev-after-restart');
  });

  it('stop() kills both virsh processes (by pid) and leaves none running', async () => {
    const pids = src.pids;
    expect(pids).toHaveLength(2);
    expect(await virshInside()).not.toBe('');
    await src.stop();
    expect(pids.filter(alive)).toEqual([]);
    for (let i = 0; i < 50 && (await virshInside()) !== ''; i++) await sleep(100);
    expect(await virshInside()).toBe('');
  });
});

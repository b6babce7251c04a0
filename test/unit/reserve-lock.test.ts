// Two applies at once never hand out one address: processes that allocate
// and write a reservation through apply's locked step (reserveLocked), with
// the network kept in a file (the fake store: read XML, add a <host>),
// each pausing between its decision and its write.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testPaths, ROOT } from './helpers.js';
import { Ledger } from '../../src/state/ledger.js';
import type { LibvirtClient } from '../../src/libvirt/client.js';
import type { TemplateSet } from '../../src/policy/load.js';
import { recordFigure } from '../support/figures.js';
import { parseNetwork } from '../../src/xml/network.js';

const PROCS = 6;

describe('apply\'s reservation lock', () => {
  it(`${PROCS} processes reserving at once get ${PROCS} different addresses, all written`, async () => {
    const dir = tempDir();
    const store = join(dir, 'network.xml');
    writeFileSync(store, "<network><name>lab</name><forward mode='nat'/><ip address='192.168.100.1' prefix='24'><dhcp><range start='192.168.100.100' end='192.168.100.254'/></dhcp></ip></network>");
    const src = (p: string) => JSON.stringify(join(ROOT, p));
    const script = `
      import { reserveLocked } from ${src('src/cli/reservations.ts')};
      import { allocateIpv4 } from ${src('src/plan/allocate.ts')};
      import { parseNetwork } from ${src('src/xml/network.ts')};
      import { readFileSync, writeFileSync } from 'node:fs';
      const store = ${JSON.stringify(store)};
      const mac = process.argv[2];
      const nic = { index: 0, type: 'network', mac, network: 'lab' };
      const done = await reserveLocked(${JSON.stringify(join(dir, 'reserve.lock'))},
        async () => {
          const a = allocateIpv4({ network: parseNetwork(readFileSync(store, 'utf8')), leases: [], mac, now: 0 });
          await new Promise((r) => setTimeout(r, 20)); // decided, not yet written
          return a.kind === 'new' ? [{ nic, network: 'lab', family: 4, mac, ip: a.ip }] : [];
        },
        async (r) => {
          writeFileSync(store, readFileSync(store, 'utf8').replace('</dhcp>', "<host mac='" + r.mac + "' ip='" + r.ip + "'/></dhcp>"));
        });
      process.stdout.write(done.map((r) => r.ip).join(','));`;
    const file = join(dir, 'child.ts');
    writeFileSync(file, script);
    const viteNode = join(ROOT, 'node_modules', '.bin', 'vite-node');
    const results = await Promise.all(Array.from({ length: PROCS }, (_, i) => new Promise<{ code: number; out: string }>((resolve) => {
      let out = '';
      const c = spawn(viteNode, [file, `52:54:00:aa:00:0${i}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      c.on('close', (code) => resolve({ code: code ?? 1, out }));
    })));
    expect(results.map((r) => r.code)).toEqual(Array(PROCS).fill(0));
    const ips = results.map((r) => r.out.trim());
    expect(new Set(ips).size).toBe(PROCS);
    expect(ips.sort()).toEqual(Array.from({ length: PROCS }, (_, i) => `192.168.100.${i + 2}`).sort());
    const hosts = parseNetwork(readFileSync(store, 'utf8')).ips[0]!.hosts;
    expect(hosts.map((h) => h.ip).sort()).toEqual([...ips].sort());
    recordFigure('concurrency', `${PROCS} processes reserving a DHCP address at once, as \`virtwire apply\` does`, 'unit', PROCS);
  }, 60_000);
});

describe('apply is all or nothing per VM', () => {
  it('a reservation that fails takes back the ones made before it, and the error goes on', async () => {
    const { reserveLocked } = await import('../../src/cli/reservations.js');
    const r = (mac: string, ip: string) => ({ nic: { index: 0, type: 'network', mac, network: 'default' }, network: 'default', family: 4 as const, mac, ip });
    const log: string[] = [];
    const rs = [r('52:54:00:00:00:01', '192.168.100.2'), r('52:54:00:00:00:02', '192.168.100.3')];
    await expect(reserveLocked(join(tempDir(), 'lock'), async () => rs,
      async (x) => { if (x.ip.endsWith('.3')) throw new Error('net-update refused'); log.push(`add ${x.ip}`); },
      async (x) => { log.push(`delete ${x.ip}`); })).rejects.toThrow('net-update refused');
    expect(log).toEqual(['add 192.168.100.2', 'delete 192.168.100.2']);
  });

  it('a NIC\'s IPv4 and IPv6 reservations go together: a refused IPv6 one takes back the IPv4 one, and the other way round', async () => {
    const { reserveLocked } = await import('../../src/cli/reservations.js');
    const mac = '52:54:00:00:00:01';
    const nic = { index: 0, type: 'network', mac, network: 'default' };
    const v4 = { nic, network: 'default', family: 4 as const, mac, ip: '192.168.100.2' };
    const v6 = { nic, network: 'default', family: 6 as const, mac, ip: 'fd00:9::2', id: `00:03:00:01:${mac}`, name: 'vm-1', parentIndex: 1 };
    for (const [order, failing, expected] of [
      [[v4, v6], 'fd00:9::2', ['add 192.168.100.2', 'delete 192.168.100.2']],
      [[v6, v4], '192.168.100.2', ['add fd00:9::2', 'delete fd00:9::2']],
    ] as const) {
      const log: string[] = [];
      await expect(reserveLocked(join(tempDir(), 'lock'), async () => [...order],
        async (x) => { if (x.ip === failing) throw new Error(`net-update refused ${x.ip}`); log.push(`add ${x.ip}`); },
        async (x) => { log.push(`delete ${x.ip}`); })).rejects.toThrow(`net-update refused ${failing}`);
      expect(log).toEqual(expected);
    }
  });
});

describe('what apply asks libvirt for, per family', () => {
  it('IPv4: <host mac ip> into libvirt\'s default <ip>; IPv6: <host id name ip> into the IPv6 <ip> by --parent-index; live only when active, config only when persistent', async () => {
    const { updateReservation } = await import('../../src/cli/reservations.js');
    const calls: unknown[] = [];
    const client = { updateDhcpHost: async (...args: unknown[]) => { calls.push(args); } } as unknown as import('../../src/libvirt/client.js').LibvirtClient;
    const uuid = '2f4b9ae8-5d8e-4e0b-9a6c-7f3d0f0e6a11';
    const networks = { read: async () => ({ uuid, active: true, persistent: false }) } as unknown as import('../../src/cli/reservations.js').NetworkReader;
    const mac = '52:54:00:00:00:01';
    const nic = { index: 0, type: 'network', mac, network: 'default' };
    await updateReservation(client, networks, { nic, network: 'default', family: 4, mac, ip: '192.168.122.2' }, 'add');
    await updateReservation(client, networks, { nic, network: 'default', family: 6, mac, ip: 'fd00:77::2', id: `00:03:00:01:${mac}`, name: 'vm-1', parentIndex: 1 }, 'delete');
    expect(calls).toEqual([
      [uuid, 'add', { mac, ip: '192.168.122.2' }, { live: true, config: false, parentIndex: undefined }],
      [uuid, 'delete', { id: `00:03:00:01:${mac}`, name: 'vm-1', ip: 'fd00:77::2' }, { live: true, config: false, parentIndex: 1 }],
    ]);
  });
});

describe('apply of many VMs: one hold of the reservation lock for many', () => {
  const lockHeld = (file: string): boolean => spawnSync('flock', ['--nonblock', file, 'true']).status !== 0;

  it('the VMs of one hold run under the lock and share what was read under it; each new hold reads afresh', async () => {
    const { underReservationLock } = await import('../../src/cli/apply-domain.js');
    const paths = testPaths(tempDir());
    const lock = new Ledger(paths.runDir).reserveLockFile;
    const client = {} as LibvirtClient;
    const seen: Array<{ held: unknown; locked: boolean }> = [];
    const each = async (_i: number, held: unknown) => { seen.push({ held, locked: lockHeld(lock) }); };
    const noLock = (i: number) => { throw new Error(`VM ${i} got no lock`); };
    await underReservationLock(client, paths, [1, 2, 3, 4, 5], each, noLock, 60_000);
    expect(seen.every((s) => s.locked)).toBe(true);
    expect(new Set(seen.map((s) => s.held)).size).toBe(1);
    expect(lockHeld(lock)).toBe(false);

    seen.length = 0;
    await underReservationLock(client, paths, [1, 2, 3], each, noLock, 0);
    expect(new Set(seen.map((s) => s.held)).size).toBe(3);
  });

  it('a VM that fails makes the next one of the hold read the networks and the store afresh', async () => {
    const { HeldReservations, applyDomainHeld } = await import('../../src/cli/apply-domain.js');
    const paths = testPaths(tempDir());
    const client = { domainXml: async () => { throw new Error('no domain with UUID …'); } } as unknown as LibvirtClient;
    const held = new HeldReservations(client, paths);
    const [networks, store] = [held.networks, held.store];
    const d = { uuid: '6f1f6a0e-0000-4000-8000-000000000001', name: 'vm-1', state: 'shut off' as const, persistent: true };
    const ctx = () => { throw new Error('not for a shut-off VM'); };
    await expect(applyDomainHeld(client, paths, ctx, { templates: [], broken: [] } as unknown as TemplateSet, d, held)).rejects.toThrow('no domain with UUID');
    expect(held.networks).not.toBe(networks);
    expect(held.store).not.toBe(store);
  });
});

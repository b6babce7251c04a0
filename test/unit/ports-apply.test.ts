// apply's host-port step under the real reservation lock (flock), with the
// libvirt boundary faked: concurrent applies never hand out one port twice,
// a VM's ports are written with its reservations or not at all, and a
// release deletes exactly the reservations virtwire made for a domain gone.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, domainXml, set, template, tempDir, testPaths } from './helpers.js';
import { PortStep, releaseGone, type ReleaseClient } from '../../src/cli/allocations.js';
import { reserveLocked } from '../../src/cli/reservations.js';
import { AllocationStore, type Allocations } from '../../src/state/allocations.js';
import { Ledger } from '../../src/state/ledger.js';
import { parseDomain } from '../../src/xml/domain.js';

const BLOCK = 'match: {domains: ["dev-*"]}\nbinding: nat\nforwards: {block: 4, guest: [22, 80]}\n';
const uuid = (i: number) => `6f1f6a0e-0000-4000-8000-0000000000${String(i).padStart(2, '0')}`;
const mac = (i: number) => `52:54:00:aa:01:${String(i).padStart(2, '0')}`;
const PROCS = 6;

describe('apply\'s host ports under the reservation lock', () => {
  it(`${PROCS} processes allocating at once get ${PROCS} disjoint blocks, all recorded`, async () => {
    const root = tempDir();
    const paths = testPaths(root);
    mkdirSync(paths.templatesDir, { recursive: true });
    writeFileSync(join(paths.templatesDir, 'dev.yaml'), BLOCK);
    writeFileSync(paths.configFile, 'forwards:\n  allowedHostPorts: ["20000-20099"]\n  autoPorts: ["20000-20099"]\n');
    const src = (p: string) => JSON.stringify(join(ROOT, p));
    const script = `
      import { reserveLocked } from ${src('src/cli/reservations.ts')};
      import { PortStep } from ${src('src/cli/allocations.ts')};
      import { templatesOf } from ${src('src/cli/reservations.ts')};
      import { Ledger } from ${src('src/state/ledger.ts')};
      import { parseDomain } from ${src('src/xml/domain.ts')};
      import { readFileSync } from 'node:fs';
      const paths = ${JSON.stringify(paths)};
      const domain = parseDomain(readFileSync(process.argv[2], 'utf8'));
      const step = new PortStep(paths, templatesOf(paths));
      await reserveLocked(new Ledger(paths.runDir).reserveLockFile,
        async () => {
          const rs = step.decide({ domain, reservations: [] });
          await new Promise((r) => setTimeout(r, 20)); // decided, not yet written
          return rs;
        },
        async () => {}, undefined, (done) => step.commit(done));
      process.stdout.write(step.text().join(','));`;
    const file = join(root, 'child.ts');
    writeFileSync(file, script);
    const viteNode = join(ROOT, 'node_modules', '.bin', 'vite-node');
    const results = await Promise.all(Array.from({ length: PROCS }, (_, i) => {
      const xml = join(root, `dom-${i}.xml`);
      writeFileSync(xml, domainXml(`dev-${i}`, [{ mac: mac(i) }], '', uuid(i)));
      return new Promise<{ code: number; out: string }>((resolve) => {
        let out = '';
        const c = spawn(viteNode, [file, xml], { stdio: ['ignore', 'pipe', 'inherit'] });
        c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
        c.on('close', (code) => resolve({ code: code ?? 1, out }));
      });
    }));
    expect(results.map((r) => r.code)).toEqual(Array(PROCS).fill(0));
    const starts = results.map((r) => Number(/allocated host ports (\d+)-/.exec(r.out)?.[1]));
    expect(starts.sort((a, b) => a - b)).toEqual(Array.from({ length: PROCS }, (_, i) => 20000 + 4 * i));
    const r = new AllocationStore(paths.stateDir).read();
    expect(r.kind).toBe('ok');
    const data = (r as { data: Allocations }).data;
    expect(Object.keys(data.vms).sort()).toEqual(Array.from({ length: PROCS }, (_, i) => uuid(i)).sort());
  }, 60_000);

  it('a VM whose reservation libvirt refuses records no ports (all or nothing); its next apply allocates the same', async () => {
    const paths = testPaths(tempDir());
    const templates = set(template('dev', BLOCK));
    const domain = parseDomain(domainXml('dev-1', [{ mac: mac(1) }], '', uuid(1)));
    const rs = [{ nic: domain.nics[0]!, network: 'default', mac: mac(1), ip: '192.168.122.2', family: 4 as const }];
    const lock = new Ledger(paths.runDir).reserveLockFile;
    const failing = new PortStep(paths, templates);
    await expect(reserveLocked(lock, async () => failing.decide({ domain, reservations: rs }),
      async () => { throw new Error('net-update refused'); }, undefined, (done) => failing.commit(done))).rejects.toThrow('net-update refused');
    expect(new AllocationStore(paths.stateDir).read()).toEqual({ kind: 'ok', data: { schema: 1, vms: {} } });

    const ok = new PortStep(paths, templates);
    await reserveLocked(lock, async () => ok.decide({ domain, reservations: rs }), async () => {}, undefined, (done) => ok.commit(done));
    expect(ok.text()).toEqual([`allocated host ports 20000-20003 tcp+udp for NIC ${mac(1)}`]);
    const vm = (new AllocationStore(paths.stateDir).read() as { data: Allocations }).data.vms[uuid(1)];
    expect(vm).toMatchObject({ name: 'dev-1', nics: { [mac(1)]: [{ key: 'block', ports: { lo: 20000, hi: 20003 } }] }, reservations: [{ network: 'default', mac: mac(1), ip: '192.168.122.2' }] });

    const again = new PortStep(paths, templates);
    await reserveLocked(lock, async () => again.decide({ domain, reservations: [] }), async () => {}, undefined, (done) => again.commit(done));
    expect(again.text()).toEqual([]);
  });
});

describe('release of domains libvirt no longer defines', () => {
  const NET = '2f4b9ae8-5d8e-4e0b-9a6c-7f3d0f0e6a11';
  const netXml = (hosts: string[]) => `<network><name>default</name><uuid>${NET}</uuid><forward mode='nat'/><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/>${hosts.join('')}</dhcp></ip></network>`;
  const host = (m: string, ip: string) => `<host mac='${m}' ip='${ip}'/>`;

  it('deletes exactly the reservations apply made for it, live and config where each is, and frees its ports; defined domains keep theirs', async () => {
    const paths = testPaths(tempDir());
    const store = new AllocationStore(paths.stateDir);
    store.write({
      schema: 1,
      vms: {
        [uuid(1)]: {
          name: 'gone-1', nics: { [mac(1)]: [{ key: 'block', ports: { lo: 20000, hi: 20003 } }] }, updatedAt: '',
          reservations: [
            { network: 'default', mac: mac(1), ip: '192.168.122.2' }, // live and config
            { network: 'default', mac: mac(2), ip: '192.168.122.3' }, // config only
            { network: 'default', mac: mac(3), ip: '192.168.122.4' }, // changed by the admin since: not ours any more
            { network: 'gone-net', mac: mac(1), ip: '10.0.0.2' }, // its network is gone
          ],
        },
        [uuid(2)]: { name: 'kept', nics: { [mac(5)]: [{ key: 'block', ports: { lo: 20004, hi: 20007 } }] }, reservations: [{ network: 'default', mac: mac(5), ip: '192.168.122.5' }], updatedAt: '' },
      },
    });
    const calls: string[] = [];
    const client: ReleaseClient = {
      listDomainUuids: async () => [uuid(2)],
      listNetworks: async () => [{ uuid: NET, name: 'default', active: true, persistent: true }],
      networkXml: async (_u, o = {}) => (o.inactive
        ? netXml([host(mac(1), '192.168.122.2'), host(mac(2), '192.168.122.3'), host(mac(3), '192.168.122.40'), host(mac(5), '192.168.122.5'), host(mac(9), '192.168.122.9')])
        : netXml([host(mac(1), '192.168.122.2'), host(mac(3), '192.168.122.40'), host(mac(5), '192.168.122.5'), host(mac(9), '192.168.122.9')])),
      updateDhcpHost: async (_u, command, h, o) => { calls.push(`${command} ${h.mac} ${h.ip} live=${o?.live} config=${o?.config}`); },
    };
    let out = '';
    expect(await releaseGone(client, paths, (s) => { out += s; })).toBe(true);
    expect(calls).toEqual([
      `delete ${mac(1)} 192.168.122.2 live=true config=true`,
      `delete ${mac(2)} 192.168.122.3 live=false config=true`,
    ]);
    expect(out).toBe(`VM "gone-1" (${uuid(1)}, no longer defined): released host ports 20000-20003 of NIC ${mac(1)}, reservation 192.168.122.2 of NIC ${mac(1)} on network "default", reservation 192.168.122.3 of NIC ${mac(2)} on network "default"\n`);
    expect(Object.keys((store.read() as { data: Allocations }).data.vms)).toEqual([uuid(2)]);

    out = '';
    expect(await releaseGone(client, paths, (s) => { out += s; })).toBe(true);
    expect(out).toBe('');
  });

  it('an IPv6 reservation apply made (id, name, ip) is deleted by the same three, under its <ip> (--parent-index); one with another name is not ours', async () => {
    const paths = testPaths(tempDir());
    const duid = `00:03:00:01:${mac(1)}`;
    new AllocationStore(paths.stateDir).write({ schema: 1, vms: { [uuid(1)]: { name: 'gone-6', nics: {}, updatedAt: '', reservations: [
      { network: 'default', mac: mac(1), ip: '192.168.122.2' },
      { network: 'default', mac: mac(1), ip: 'fd00:77::2', id: duid, name: 'gone-6' },
      { network: 'default', mac: mac(2), ip: 'fd00:77::3', id: `00:03:00:01:${mac(2)}`, name: 'gone-6' },
    ] } } });
    const v6 = (hosts: string) => `<ip family='ipv6' address='fd00:77::1' prefix='64'><dhcp><range start='fd00:77::100' end='fd00:77::1ff'/>${hosts}</dhcp></ip>`;
    const xml = netXml([host(mac(1), '192.168.122.2')]).replace('</network>', `${v6(`<host id='${duid}' name='gone-6' ip='fd00:77::2'/><host id='00:03:00:01:${mac(2)}' name='renamed' ip='fd00:77::3'/>`)}</network>`);
    const calls: string[] = [];
    const client: ReleaseClient = {
      listDomainUuids: async () => [],
      listNetworks: async () => [{ uuid: NET, name: 'default', active: true, persistent: true }],
      networkXml: async () => xml,
      updateDhcpHost: async (_u, command, h, o) => { calls.push(`${command} ${JSON.stringify(h)} live=${o?.live} config=${o?.config} parent=${o?.parentIndex}`); },
    };
    expect(await releaseGone(client, paths, () => undefined)).toBe(true);
    expect(calls).toEqual([
      `delete {"mac":"${mac(1)}","ip":"192.168.122.2"} live=true config=true parent=undefined`,
      `delete {"id":"${duid}","name":"gone-6","ip":"fd00:77::2"} live=true config=true parent=1`,
    ]);
  });

  it('a delete libvirt refuses keeps that reservation in the store for the next gc, and fails', async () => {
    const paths = testPaths(tempDir());
    const store = new AllocationStore(paths.stateDir);
    store.write({ schema: 1, vms: { [uuid(1)]: { name: 'gone-1', nics: {}, updatedAt: '', reservations: [{ network: 'default', mac: mac(1), ip: '192.168.122.2' }] } } });
    const client: ReleaseClient = {
      listDomainUuids: async () => [],
      listNetworks: async () => [{ uuid: NET, name: 'default', active: true, persistent: true }],
      networkXml: async () => netXml([host(mac(1), '192.168.122.2')]),
      updateDhcpHost: async () => { throw new Error('net-update: operation failed'); },
    };
    let out = '';
    expect(await releaseGone(client, paths, (s) => { out += s; })).toBe(false);
    expect(out.split('\n')[0]).toBe(`VM "gone-1" (${uuid(1)}, no longer defined): error: could not delete reservation 192.168.122.2 of NIC ${mac(1)} on network "default": net-update: operation failed`);
    expect((store.read() as { data: Allocations }).data.vms[uuid(1)]?.reservations).toEqual([{ network: 'default', mac: mac(1), ip: '192.168.122.2' }]);
  });
});

// binding ovs end to end (issue 13 d), on libvirt 9 and 11: a template puts
// VMs on an Open vSwitch bridge with a VLAN tag; `virtwire apply` rewrites the
// NIC (<virtualport type='openvswitch'> with a stable interfaceid, <vlan>);
// libvirt adds the port with that tag at `virsh start`. OVS runs on the
// userspace datapath inside the sandbox (test/support/ovs.ts: this kernel
// has no openvswitch module); peers on tags 100 and 200 share one subnet,
// so only the tag keeps them apart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { guestTap, interfaceIdOf, startOvs, type OvsHandle, type OvsPeer } from '../support/ovs.js';
import { MODES, restartLibvirtd, sandboxWithVirtwire, skipE2e } from './support.js';

const BRIDGE = 'ovsbr0';
const VM = { name: 'db-1', mac: '52:54:00:0f:02:0a', ip: '10.100.0.10' };
const TEMPLATE = `match: {domains: ["db-*"], networks: [default]}
binding: ovs
ovs: {bridge: ${BRIDGE}}
vlan: 100
`;

describe.skipIf(skipE2e).each(MODES)('binding ovs — $mode', ({ trixie }) => {
  let sb: Sandbox;
  let ovs: OvsHandle;
  let p100: OvsPeer;
  let p200: OvsPeer;
  const apply = (...args: string[]) => sb.exec(['virtwire', 'apply', ...args], { reject: false });

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { db: TEMPLATE }));
    ovs = await startOvs(sb);
    await ovs.addNetdevBridge(BRIDGE);
    p100 = await ovs.addPeer({ bridge: BRIDGE, name: 'p100', tag: 100, address: '10.100.0.1/24', dhcp: { range: ['10.100.0.50', '10.100.0.99'], hosts: [{ mac: VM.mac, ip: VM.ip }] } });
    p200 = await ovs.addPeer({ bridge: BRIDGE, name: 'p200', tag: 200, address: '10.100.0.2/24', dhcp: { range: ['10.100.0.150', '10.100.0.199'], hosts: [{ mac: VM.mac, ip: '10.100.0.210' }] } });
    // Defined the way virt-manager would: a NIC on the NAT network "default".
    await sb.defineGuest({ ...VM, reserve: false });
  }, 600_000);

  afterAll(async () => {
    await ovs?.stop();
    await sb?.stop();
  }, 120_000);

  it('apply rewrites the NIC onto the OVS bridge with its tag and a stable interfaceid; a second apply changes nothing', async () => {
    const r = await apply(VM.name);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`NIC ${VM.mac} attached to Open vSwitch bridge ${BRIDGE}, VLAN 100`);
    const xml = (await sb.virsh('dumpxml', '--inactive', '--domain', VM.name)).stdout;
    const iface = /<interface[\s\S]*?<\/interface>/.exec(xml)?.[0] ?? '';
    expect(iface).toMatch(/<interface type='bridge'>/);
    expect(iface).toContain(`<source bridge='${BRIDGE}'/>`);
    expect(iface).toMatch(/<vlan>\s*<tag id='100'\/>\s*<\/vlan>/);
    const uuid = (await sb.virsh('domuuid', '--domain', VM.name)).stdout.trim();
    expect(interfaceIdOf(xml)).toBe(`${uuid.slice(0, 24)}${VM.mac.replace(/:/g, '')}`);
    const again = await apply(VM.name);
    expect(again.stdout.trim()).toBe(`VM "${VM.name}": unchanged`);
  }, 120_000);

  it('virsh start: the port has tag 100, the guest leases from the tag-100 peer, which reaches its page; the tag-200 peer does not', async () => {
    await sb.startGuest(VM.name);
    const tap = await guestTap(sb, VM.name);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');
    expect((await p100.httpGet(VM.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(VM.name)}`);
    expect(await p200.leases()).not.toContain(VM.mac);
    await expect(p200.httpGet(VM.ip, 80, 3000)).rejects.toThrow(/timeout|EHOSTUNREACH/);
    const status = await sb.exec(['virtwire', 'status', VM.name], { reject: false });
    expect(status.stdout).toContain(`NIC ${VM.mac}: template "db", binding ovs v1, attached to Open vSwitch bridge ${BRIDGE}, VLAN 100`);
  }, 300_000);

  it('after a libvirtd restart and after destroy + start: the same port identity and tag, still reachable', async () => {
    const id = interfaceIdOf((await sb.virsh('dumpxml', '--inactive', '--domain', VM.name)).stdout);
    await restartLibvirtd(sb);
    let tap = await guestTap(sb, VM.name);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');
    await sb.destroyGuest(VM.name);
    await sb.startGuest(VM.name);
    tap = await guestTap(sb, VM.name);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');
    expect((await ovs.vsctl('get', 'interface', tap, 'external-ids:iface-id')).replace(/"/g, '')).toBe(id);
    expect((await p100.httpGet(VM.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(VM.name)}`);
  }, 300_000);

  it('a template naming an OVS bridge that does not exist: apply refuses in one line, the definition unchanged', async () => {
    await sb.exec(['tee', '/etc/virtwire/templates/db.yaml'], { input: TEMPLATE.replace(BRIDGE, 'ovsbr9') });
    const before = (await sb.virsh('dumpxml', '--inactive', '--domain', VM.name)).stdout;
    const r = await apply(VM.name);
    expect(r.exitCode).toBe(1);
    expect(r.stdout.trim()).toBe(`VM "${VM.name}": error: VM "${VM.name}" NIC ${VM.mac} (template /etc/virtwire/templates/db.yaml): Open vSwitch has no bridge ovsbr9 (it has: ${BRIDGE}); create it with "ovs-vsctl add-br ovsbr9" or fix ovs.bridge`);
    expect((await sb.virsh('dumpxml', '--inactive', '--domain', VM.name)).stdout).toBe(before);
    await sb.exec(['tee', '/etc/virtwire/templates/db.yaml'], { input: TEMPLATE });
  }, 120_000);
});

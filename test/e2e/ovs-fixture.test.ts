// The Open vSwitch test fixture (test/support/ovs.ts) proven against the real
// daemons, on libvirt 9 (Debian 12, OVS 3.1) and libvirt 11 (Debian 13 root,
// OVS 3.5): ovsdb-server + ovs-vswitchd on the userspace datapath inside the
// sandbox (this kernel has no openvswitch module), a hand-written
// <interface type='bridge'><virtualport type='openvswitch'/><vlan><tag id='100'/>
// NIC that libvirt wires by running ovs-vsctl itself, and peers on tags 100 and
// 200. No virtwire code is involved: this is the ground the OVS e2e tests stand on.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { Sandbox } from '../../src/demo/sandbox.js';
import { defineOvsGuest, guestTap, interfaceIdOf, startOvs, type OvsHandle, type OvsPeer } from '../support/ovs.js';
import { ensureTrixieRoot } from '../support/rootfs.js';
import { MODES, restartLibvirtd, skipE2e } from './support.js';
import { timing } from '../support/timing.js';

const BRIDGE = 'ovsbr0';
// Both peers are on one IPv4 subnet, so only the VLAN tag can keep them apart.
// Each serves DHCP and reserves an address for the guest's MAC: a guest that
// reports .10 took its lease from the tag-100 peer.
const A = { name: 'ovs-a', mac: '52:54:00:0f:01:0a', ip: '10.100.0.10' };
const B = { name: 'ovs-b', mac: '52:54:00:0f:01:0b', ip: '10.100.0.11', interfaceid: '0e1b5c1e-7a3d-4c55-9f00-5e1f00b1ed0b' };
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** TCP connect from a peer, retrying a refused connect (the listener may still be starting) until timeoutMs. */
const CONNECT_JS = `
const [host, port, ms] = process.argv.slice(1);
const end = Date.now() + Number(ms);
const tryOnce = () => require('net').connect(Number(port), host, () => process.exit(0)).on('error', (e) => {
  if (e.code === 'ECONNREFUSED' && Date.now() < end) return setTimeout(tryOnce, 100);
  console.error(e.code || e.message); process.exit(1);
});
tryOnce();
setTimeout(() => { console.error('timeout after ' + ms + ' ms'); process.exit(2); }, Number(ms));
`;

function tcpConnect(peer: OvsPeer, host: string, port: number, timeoutMs: number) {
  return peer.exec([peer.node, '-e', CONNECT_JS, host, String(port), String(timeoutMs)], timeoutMs + 10_000, false);
}

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  let ovs: OvsHandle;
  let p100: OvsPeer;
  let p200: OvsPeer;

  const ifaceId = async (tap: string) => (await ovs.vsctl('get', 'interface', tap, 'external-ids:iface-id')).replace(/"/g, '');

  beforeAll(async () => {
    sb = await Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined });
    ovs = await startOvs(sb);
    timing(`OVS startup (${ovs.version})`, ovs.startupMs);
    await ovs.addNetdevBridge(BRIDGE);
    p100 = await ovs.addPeer({
      bridge: BRIDGE, name: 'p100', tag: 100, address: '10.100.0.1/24',
      dhcp: { range: ['10.100.0.50', '10.100.0.99'], hosts: [{ mac: A.mac, ip: A.ip }, { mac: B.mac, ip: B.ip }] },
    });
    p200 = await ovs.addPeer({
      bridge: BRIDGE, name: 'p200', tag: 200, address: '10.100.0.2/24',
      dhcp: { range: ['10.100.0.150', '10.100.0.199'], hosts: [{ mac: A.mac, ip: '10.100.0.210' }, { mac: B.mac, ip: '10.100.0.211' }] },
    });
  }, 600_000);

  afterAll(async () => {
    await ovs?.stop();
    await sb?.stop();
  }, 120_000);

  it('the fixture: two peers on tag 100 connect over TCP through the userspace datapath; a peer on tag 200 cannot', async () => {
    expect(await ovs.vsctl('get', 'bridge', BRIDGE, 'datapath_type')).toBe('netdev');
    expect(await ovs.vsctl('get', 'port', p100.port, 'tag')).toBe('100');
    expect(await ovs.vsctl('get', 'port', p200.port, 'tag')).toBe('200');
    const p100b = await ovs.addPeer({ bridge: BRIDGE, name: 'p100b', tag: 100, address: '10.100.0.3/24' });
    try {
      // A listener for 8 s in p100b (foreground, so it ends with its exec; any
      // TCP handshake proves the path: checksums included, see ovs.ts).
      const server = p100b.exec(['timeout', '8', 'busybox', 'nc', '-l', '-p', '8080'], 20_000, false);
      expect((await tcpConnect(p100, '10.100.0.3', 8080, 4000)).exitCode).toBe(0);
      const across = await tcpConnect(p200, '10.100.0.3', 8080, 3000);
      expect(across.exitCode, `tag 200 -> tag 100 must fail: ${across.stdout}${across.stderr}`).not.toBe(0);
      await server;
    } finally {
      await p100b.stop();
    }
  }, 120_000);

  it("a guest with <virtualport type='openvswitch'/> and <vlan><tag id='100'/>: port tag=100, DHCP from the tag-100 peer, which reaches its page; the tag-200 peer does not", async () => {
    const inactive = await defineOvsGuest(sb, { ...A, bridge: BRIDGE, tag: 100 });
    console.log(`[ovs] ${A.name} inactive interface:\n${/<interface[\s\S]*?<\/interface>/.exec(inactive)?.[0]}`);
    const t = Date.now();
    await sb.startGuest(A.name);
    timing(`guest boot to READY on the netdev bridge, tag 100`, Date.now() - t);
    const tap = await guestTap(sb, A.name);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');
    console.log(`[ovs] ${A.name} ${tap}: external_ids ${await ovs.vsctl('get', 'interface', tap, 'external_ids')}`);
    console.log(`[ovs] ${A.name} live interface:\n${/<interface[\s\S]*?<\/interface>/.exec((await sb.virsh('dumpxml', '--domain', A.name)).stdout)?.[0]}`);

    expect(await p100.leases()).toContain(`${A.mac} ${A.ip} `);
    expect(await p200.leases()).not.toContain(A.mac);
    expect(await p200.dhcpLog(), 'no DHCP packet of the guest reached the tag-200 peer').not.toContain(A.mac);
    expect((await p100.httpGet(A.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(A.name)}`);
    await expect(p200.httpGet(A.ip, 80, 3000)).rejects.toThrow(/timeout|EHOSTUNREACH/);
  }, 300_000);

  it('interfaceid: libvirt generates one at define time and keeps it in the definition; iface-id stays across a guest restart and a libvirtd restart', async () => {
    const inactive = (await sb.virsh('dumpxml', '--inactive', '--domain', A.name)).stdout;
    const generated = interfaceIdOf(inactive);
    expect(generated, 'a generated interfaceid in the inactive XML').toMatch(UUID_RE);
    let tap = await guestTap(sb, A.name);
    expect(await ifaceId(tap)).toBe(generated);
    const vmId = (await ovs.vsctl('get', 'interface', tap, 'external-ids:vm-id')).replace(/"/g, '');
    expect(vmId).toBe((await sb.virsh('domuuid', '--domain', A.name)).stdout.trim());
    expect(await ovs.vsctl('get', 'interface', tap, 'external-ids:attached-mac')).toBe(`"${A.mac}"`);

    await sb.destroyGuest(A.name);
    expect((await ovs.vsctl('list-ports', BRIDGE)).split('\n'), 'libvirt deletes the port on destroy').not.toContain(tap);
    await sb.startGuest(A.name);
    tap = await guestTap(sb, A.name);
    expect(await ifaceId(tap)).toBe(generated);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');

    await restartLibvirtd(sb);
    expect(await guestTap(sb, A.name)).toBe(tap);
    expect(await ifaceId(tap)).toBe(generated);
    expect(interfaceIdOf((await sb.virsh('dumpxml', '--inactive', '--domain', A.name)).stdout)).toBe(generated);
    expect((await p100.httpGet(A.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(A.name)}`);
  }, 300_000);

  it('interfaceid: redefining from XML without <parameters interfaceid> gets a new one; an explicit interfaceid is kept as given across restarts', async () => {
    // The definition libvirt keeps, minus <parameters interfaceid>: what a tool
    // regenerating the NIC from a template without an interfaceid would define.
    const current = (await sb.virsh('dumpxml', '--inactive', '--domain', A.name)).stdout;
    const before = interfaceIdOf(current);
    const file = join(sb.dir, 'ovs-a-no-interfaceid.xml');
    await writeFile(file, current.replace(/<parameters interfaceid=['"][^'"]*['"]\/>/, ''));
    expect(interfaceIdOf(await readFile(file, 'utf8'))).toBeUndefined();
    await sb.virsh('define', '--file', file);
    const redefined = interfaceIdOf((await sb.virsh('dumpxml', '--inactive', '--domain', A.name)).stdout);
    console.log(`[ovs] ${A.name} redefined without interfaceid: ${before} -> ${redefined}`);
    expect(redefined).toMatch(UUID_RE);
    expect(redefined).not.toBe(before);

    const inactive = await defineOvsGuest(sb, { ...B, bridge: BRIDGE, tag: 100 });
    expect(interfaceIdOf(inactive)).toBe(B.interfaceid);
    await sb.startGuest(B.name);
    let tap = await guestTap(sb, B.name);
    expect(await ifaceId(tap)).toBe(B.interfaceid);
    expect(await ovs.vsctl('get', 'port', tap, 'tag')).toBe('100');
    await sb.destroyGuest(B.name);
    await sb.startGuest(B.name);
    tap = await guestTap(sb, B.name);
    expect(await ifaceId(tap)).toBe(B.interfaceid);
    await restartLibvirtd(sb);
    expect(await ifaceId(tap)).toBe(B.interfaceid);
    expect(interfaceIdOf((await sb.virsh('dumpxml', '--inactive', '--domain', B.name)).stdout)).toBe(B.interfaceid);
    expect((await p100.httpGet(B.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(B.name)}`);
  }, 300_000);

  it('why startOvs sets userspace-tso-enable: without it, TCP between two veth peers on one tag fails, the receiver counting checksum errors', async () => {
    await ovs.stop();
    const plain = await startOvs(sb, { userspaceTso: false });
    ovs = plain; // afterAll stops this one
    expect(await plain.vsctl('get', 'Open_vSwitch', '.', 'other_config:userspace-tso-enable')).toBe('"false"');
    await plain.addNetdevBridge('ovsbr1');
    const x = await plain.addPeer({ bridge: 'ovsbr1', name: 'x', tag: 100, address: '10.101.0.1/24' });
    const y = await plain.addPeer({ bridge: 'ovsbr1', name: 'y', tag: 100, address: '10.101.0.2/24' });
    const csumErrors = async () => {
      const snmp = (await y.exec(['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Tcp:'));
      const [names, values] = snmp.map((l) => l.split(/\s+/));
      return Number(values![names!.indexOf('InCsumErrors')]);
    };
    const server = y.exec(['timeout', '6', 'busybox', 'nc', '-l', '-p', '8080'], 20_000, false);
    const before = await csumErrors();
    const c = await tcpConnect(x, '10.101.0.2', 8080, 3000);
    expect(c.exitCode, 'the connect must fail').not.toBe(0);
    const errors = (await csumErrors()) - before;
    console.log(`[ovs] ${plain.version}, userspace-tso-enable=false: connect ${c.stderr.trim()}, receiver's Tcp InCsumErrors +${errors}`);
    expect(errors).toBeGreaterThan(0);
    await server;
  }, 120_000);
});

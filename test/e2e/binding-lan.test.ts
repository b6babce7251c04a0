// bindings bridge and macvtap end to end (issue 13 a, b, f), on libvirt 9 and
// 11: templates put VMs defined on "default" (as virt-manager does) on a
// host bridge whose uplink is a veth to a "LAN" netns, and straight on a bare
// veth uplink with macvtap in modes bridge and vepa; the LAN's own dnsmasq
// gives them their addresses and a LAN client reaches their pages; after a
// libvirtd restart and after destroy + start, still so, with nothing of
// virtwire's left on the host for VMs it holds no host state for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { addLan, macvtapNodeClashes, type Lan } from '../support/lan.js';
import { MODES, restartLibvirtd, sandboxWithVirtwire, skipE2e, virtwireLeftovers } from './support.js';

const BR = { name: 'lan-1', mac: '52:54:00:1b:00:10', ip: '198.51.100.10' };
const MVT = {
  bridge: { name: 'edge-b', mac: '52:54:00:1b:00:11', ip: '203.0.113.11' },
  vepa: { name: 'edge-v', mac: '52:54:00:1b:00:12', ip: '203.0.113.12' },
} as const;
const TEMPLATES = {
  lan: 'match: {domains: ["lan-*"], networks: [default]}\nbinding: bridge\nbridge: {name: br-lan}\n',
  'edge-bridge': 'match: {domains: ["edge-b"], networks: [default]}\nbinding: macvtap\nmacvtap: {uplink: lan1, mode: bridge}\n',
  'edge-vepa': 'match: {domains: ["edge-v"], networks: [default]}\nbinding: macvtap\nmacvtap: {uplink: lan1, mode: vepa}\n',
};

describe.skipIf(skipE2e).each(MODES)('bindings bridge and macvtap — $mode', ({ trixie }) => {
  let sb: Sandbox;
  let bridged: Lan;
  let bare: Lan;
  const guests = [BR, MVT.bridge, MVT.vepa];
  const lanOf = (g: { ip: string }): Lan => (g.ip.startsWith('198.51.100.') ? bridged : bare);
  const reachable = async (): Promise<void> => {
    for (const g of guests) expect((await lanOf(g).httpGet(g.ip, 80)).trim(), g.name).toBe(`virtwire-guest ${guestLabel(g.name)}`);
  };

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, TEMPLATES));
    bridged = await addLan(sb, { uplink: 'lan0', bridge: 'br-lan', address: '198.51.100.1/24', hosts: [BR] });
    bare = await addLan(sb, { uplink: 'lan1', address: '203.0.113.1/24', hosts: [MVT.bridge, MVT.vepa] });
    for (const g of guests) await sb.defineGuest({ ...g, reserve: false });
  }, 600_000);

  afterAll(async () => {
    await bridged?.close();
    await bare?.close();
    await sb?.stop();
  }, 120_000);

  it('apply attaches each NIC as its template says; a second apply changes nothing', async () => {
    const r = await sb.exec(['virtwire', 'apply', '--all'], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`NIC ${BR.mac} attached to bridge br-lan`);
    expect(r.stdout).toContain(`NIC ${MVT.bridge.mac} attached to macvtap bridge on lan1`);
    expect(r.stdout).toContain(`NIC ${MVT.vepa.mac} attached to macvtap vepa on lan1`);
    const iface = async (name: string) => /<interface[\s\S]*?<\/interface>/.exec((await sb.virsh('dumpxml', '--inactive', '--domain', name)).stdout)?.[0] ?? '';
    expect(await iface(BR.name)).toMatch(/<interface type='bridge'>[\s\S]*<source bridge='br-lan'\/>/);
    expect(await iface(MVT.bridge.name)).toMatch(/<interface type='direct'>[\s\S]*<source dev='lan1' mode='bridge'\/>/);
    expect(await iface(MVT.vepa.name)).toMatch(/<interface type='direct'>[\s\S]*<source dev='lan1' mode='vepa'\/>/);
    const again = await sb.exec(['virtwire', 'apply', '--all'], { reject: false });
    expect(again.stdout.trim().split('\n').filter((l) => !l.endsWith(': unchanged'))).toEqual([]);
  }, 120_000);

  it('virsh start: each guest takes its LAN address from the LAN\'s DHCP server, and a LAN client reaches its page', async () => {
    for (const g of guests) await sb.startGuest(g.name);
    await reachable();
    expect(await macvtapNodeClashes(sb)).toEqual([]);
    for (const g of [MVT.bridge, MVT.vepa]) {
      const live = (await sb.virsh('dumpxml', '--domain', g.name)).stdout;
      const dev = /<target dev='([^']+)'/.exec(live)?.[1] ?? '';
      const link = (await sb.exec(['ip', '-d', 'link', 'show', 'dev', dev])).stdout;
      expect(link, `${g.name}'s ${dev}`).toMatch(new RegExp(`macvtap mode ${g === MVT.bridge ? 'bridge' : 'vepa'}`));
    }
    const status = (await sb.exec(['virtwire', 'status', BR.name], { reject: false })).stdout;
    expect(status).toContain(`NIC ${BR.mac}: template "lan", binding bridge v1, attached to bridge br-lan`);
  }, 300_000);

  it('after a libvirtd restart, and after each VM is destroyed and started again: all reachable, nothing of virtwire\'s on the host', async () => {
    await restartLibvirtd(sb);
    await reachable();
    for (const g of guests) { await sb.destroyGuest(g.name); await sb.startGuest(g.name); }
    await reachable();
    expect(await virtwireLeftovers(sb)).toEqual([]);
    expect((await sb.exec(['ls', '/run/virtwire/vms'], { reject: false })).stdout.trim()).toBe('');
  }, 300_000);
});

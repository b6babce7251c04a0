// Issue 10, scope 4, IPv6: on a network with a DHCPv6 range (the sandbox's
// `default` with fd00:77::/64, range ::100-::1ff), `virtwire apply` reserves a
// VM's NIC an IPv6 address too — <host id=DUID-LL(MAC) name=DOMAIN ip=…/> in
// the IPv6 <ip> — next to its IPv4 one; a plain `virsh start` then gives the
// guest (busybox udhcpc6, which sends that DUID-LL) the reserved IPv6, and an
// IPv6 forward answers at the host's IPv6 address. A stale entry is refused
// in one line and nothing is reserved for that VM. On libvirt 9 (iptables
// backend) and libvirt 11 (nftables backend).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { dhcpHostLines, MODES, sandboxWithVirtwire, skipE2e } from './support.js';

const WEB = 'match: {domains: ["web6-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const MAC = '52:54:00:e2:6a:01';
const DUID = `00:03:00:01:${MAC}`;
// IPv4: libvirt's stock range fills the subnet, so the first free address inside it.
// IPv6: the first free address outside the DHCPv6 range (fd00:77::1 is the network's own).
const GUEST = { name: 'web6-1', mac: MAC, ip: '192.168.122.2', ip6: 'fd00:77::2', reserve: false };
const HOST4 = `<host mac='${MAC}' ip='192.168.122.2'/>`;
const HOST6 = `<host id='${DUID}' name='web6-1' ip='fd00:77::2'/>`;

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;

  const virtwire = (...args: string[]) => sb.exec(['virtwire', ...args], { reject: false });
  const hostEntries = (...flags: string[]) => dhcpHostLines(sb, ...flags);

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web6: WEB }, { ipv6: true }));
    await sb.defineGuest(GUEST);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('plan shows both <host> lines; apply reserves IPv4 and IPv6 (live and config); virsh start: the guest takes the reserved IPv6 and the IPv6 forward answers', async () => {
    expect(await hostEntries()).toEqual([]);

    const plan = await virtwire('plan', 'web6-1');
    expect(plan.stderr).toBe('');
    expect(plan.exitCode, plan.stdout).toBe(2);
    // A unified diff of the network XML: each <host> in its <ip>'s <dhcp>, indented as libvirt writes it.
    expect(plan.stdout).toContain('VM "web6-1": would change\n--- network "default"\n+++ network "default" (after apply)\n@@ ');
    const added = plan.stdout.split('\n').filter((l) => l.startsWith('+') && l.includes('<host '));
    expect(added).toEqual([`+      ${HOST4}`, `+      ${HOST6}`]);
    expect(plan.stdout.split('\n')).toContain('  forward at start: tcp [*]:8080 -> [fd00:77::2]:80');
    expect(await hostEntries(), 'plan changes nothing').toEqual([]);

    const apply = await virtwire('apply', 'web6-1');
    expect(apply).toMatchObject({ exitCode: 0, stderr: '' });
    expect(apply.stdout.trim()).toBe(`VM "web6-1": changed (reserved 192.168.122.2 for NIC ${MAC} on network "default"; `
      + `reserved fd00:77::2 for NIC ${MAC} on network "default" (DHCPv6 client ${DUID}, name "web6-1"); recorded its wiring in the domain <metadata>)`);
    expect(await hostEntries()).toEqual([HOST4, HOST6]);
    expect(await hostEntries('--inactive')).toEqual([HOST4, HOST6]);

    await sb.startGuest(GUEST.name); // waits for READY with ip=192.168.122.2 ip6=fd00:77::2
    // dnsmasq leased it to the DUID-LL udhcpc6 sent, as libvirt's lease file records it (what the allocator reads).
    const leases = JSON.parse((await sb.exec(['cat', '/var/lib/libvirt/dnsmasq/virbr0.status'])).stdout) as Array<Record<string, unknown>>;
    expect(leases.find((l) => l['ip-address'] === 'fd00:77::2')).toMatchObject({ 'client-id': DUID });
    expect((await sb.clientHttpGet(sb.hostAddress6, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(GUEST.name)}`);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(GUEST.name)}`);

    const again = await virtwire('apply', 'web6-1');
    expect(again.stdout.trim()).toBe('VM "web6-1": unchanged');
    expect(again.exitCode).toBe(0);
    const plan2 = await virtwire('plan', '--all');
    expect(plan2.exitCode, plan2.stdout).toBe(0);
    expect(await hostEntries()).toEqual([HOST4, HOST6]);
  }, 300_000);

  it('an IPv6 entry holding the NIC\'s DUID under another name (a renamed VM) is refused in one line naming it and the fix; nothing is reserved for that VM', async () => {
    const mac = '52:54:00:e2:6a:02';
    const stale = `<host id='00:03:00:01:${mac}' name='old-name' ip='fd00:77::50'/>`;
    await sb.virsh('net-update', '--network', 'default', '--command', 'add', '--section', 'ip-dhcp-host', '--xml', stale, '--parent-index', '1', '--live', '--config');
    await sb.defineGuest({ name: 'web6-2', mac, ip: '192.168.122.3', reserve: false });
    const before = await hostEntries();

    const apply = await virtwire('apply', 'web6-2');
    expect(apply.exitCode).toBe(1);
    expect(apply.stdout.trim()).toBe(`VM "web6-2": error: network "default" reserves fd00:77::50 for NIC ${mac}'s DUID 00:03:00:01:${mac} under the name "old-name", not this VM's (renamed?); `
      + `virtwire finds a VM's IPv6 reservation by its name: delete that entry (virsh net-update default delete ip-dhcp-host "${stale}" --live --config --parent-index 1), then run virtwire apply again`);
    expect(await hostEntries(), 'no IPv4 reservation either').toEqual(before);

    // The suggested command, as printed, fixes it.
    await sb.virsh('net-update', '--network', 'default', '--command', 'delete', '--section', 'ip-dhcp-host', '--xml', stale, '--parent-index', '1', '--live', '--config');
    const fixed = await virtwire('apply', 'web6-2');
    expect(fixed.stdout.trim()).toBe(`VM "web6-2": changed (reserved 192.168.122.3 for NIC ${mac} on network "default"; `
      + `reserved fd00:77::3 for NIC ${mac} on network "default" (DHCPv6 client 00:03:00:01:${mac}, name "web6-2"); recorded its wiring in the domain <metadata>)`);
    expect(fixed.exitCode).toBe(0);
  }, 120_000);
});

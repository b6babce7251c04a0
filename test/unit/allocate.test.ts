// The DHCP reservation allocator (src/plan/allocate.ts) and the per-VM
// planner on top of it (src/engine/reservations.ts).
import { describe, expect, it } from 'vitest';
import { allocateIpv4, allocateIpv6 } from '../../src/plan/allocate.js';
import { parseNetwork } from '../../src/xml/network.js';
import type { Lease } from '../../src/host/libvirt-status.js';
import { UserError } from '../../src/errors.js';
import { plannedReservations } from '../../src/engine/reservations.js';
import { parseDomain } from '../../src/xml/domain.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, defaultNetwork, domainXml, set, template } from './helpers.js';

const MAC = '52:54:00:aa:00:01';
const NOW = 1_800_000_000;

function net(dhcp: string, extra = '', addr = "address='192.168.100.1' netmask='255.255.255.0'"): string {
  return `<network><name>lab</name><forward mode='nat'/><bridge name='virbr9'/>
  <ip ${addr}><dhcp>${dhcp}</dhcp></ip>${extra}</network>`;
}

const alloc = (xml: string, leases: Lease[] = [], mac = MAC) => allocateIpv4({ network: parseNetwork(xml), leases, mac, now: NOW });
const lease = (ip: string, mac: string, expiry = NOW + 3600): Lease => ({ ip, mac, expiry });

describe('allocateIpv4', () => {
  it('takes the first address outside the dynamic range, skipping the network\'s own, network and reserved ones', () => {
    expect(alloc(net("<range start='192.168.100.100' end='192.168.100.254'/>"))).toEqual({ kind: 'new', ip: '192.168.100.2' });
    const xml = net("<range start='192.168.100.100' end='192.168.100.254'/><host mac='52:54:00:bb:00:01' ip='192.168.100.2'/><host mac='52:54:00:bb:00:02' ip='192.168.100.3'/>");
    expect(alloc(xml)).toEqual({ kind: 'new', ip: '192.168.100.4' });
  });

  it('never takes the network\'s own address wherever it lies, nor the broadcast address', () => {
    const xml = net("<range start='10.0.0.2' end='10.0.0.5'/>", '', "address='10.0.0.6' prefix='29'");
    // 10.0.0.0/29: .0 network, .7 broadcast, .6 the network's own, .2-.5 range, .1 free
    expect(alloc(xml)).toEqual({ kind: 'new', ip: '10.0.0.1' });
    expect(alloc(xml, [lease('10.0.0.1', '52:54:00:cc:00:01'), lease('10.0.0.2', '52:54:00:cc:00:02')])).toEqual({ kind: 'new', ip: '10.0.0.3' });
  });

  it('skips addresses leased to another MAC, but not expired leases', () => {
    const xml = net("<range start='192.168.100.100' end='192.168.100.254'/>");
    expect(alloc(xml, [lease('192.168.100.2', '52:54:00:cc:00:01')])).toEqual({ kind: 'new', ip: '192.168.100.3' });
    expect(alloc(xml, [lease('192.168.100.2', '52:54:00:cc:00:01', NOW - 1)])).toEqual({ kind: 'new', ip: '192.168.100.2' });
  });

  it('reuses the address the NIC leases now, unless another host entry reserves it', () => {
    const xml = net("<range start='192.168.100.100' end='192.168.100.254'/>");
    expect(alloc(xml, [lease('192.168.100.150', MAC)])).toEqual({ kind: 'new', ip: '192.168.100.150' });
    const taken = net("<range start='192.168.100.100' end='192.168.100.254'/><host mac='52:54:00:bb:00:01' ip='192.168.100.150'/>");
    expect(alloc(taken, [lease('192.168.100.150', MAC)])).toEqual({ kind: 'new', ip: '192.168.100.2' });
    // A lease outside the subnet (a stale file) is not reused.
    expect(alloc(xml, [lease('10.9.9.9', MAC)])).toEqual({ kind: 'new', ip: '192.168.100.2' });
  });

  it('already reserved for this MAC: nothing to do', () => {
    const xml = net(`<range start='192.168.100.100' end='192.168.100.254'/><host mac='${MAC.toUpperCase()}' ip='192.168.100.7'/>`);
    expect(alloc(xml)).toEqual({ kind: 'reserved', ip: '192.168.100.7' });
  });

  it('falls back inside the range when the range fills the subnet (libvirt\'s stock default network)', () => {
    const xml = net("<range start='192.168.100.2' end='192.168.100.254'/>");
    expect(alloc(xml)).toEqual({ kind: 'new', ip: '192.168.100.2' });
    expect(alloc(xml, [lease('192.168.100.2', '52:54:00:cc:00:01')])).toEqual({ kind: 'new', ip: '192.168.100.3' });
  });

  it('ignores IPv6: hosts, ranges and leases of the IPv6 <ip> do not count', () => {
    const v6 = "<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::100' end='fd00::1ff'/><host id='00:03:00:01:52:54:00:aa:00:01' name='vm' ip='fd00::10'/></dhcp></ip>";
    const xml = net("<range start='192.168.100.100' end='192.168.100.254'/>", v6);
    expect(alloc(xml, [lease('fd00::100', MAC)])).toEqual({ kind: 'new', ip: '192.168.100.2' });
  });

  it('an exhausted pool is a one-line UserError naming the network and the fix', () => {
    const xml = net("<range start='10.0.0.2' end='10.0.0.5'/><host mac='52:54:00:bb:00:01' ip='10.0.0.1'/>", '', "address='10.0.0.6' prefix='29'");
    const leases = ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'].map((ip, i) => lease(ip, `52:54:00:cc:00:0${i}`));
    let err: unknown;
    try { alloc(xml, leases); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(UserError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    expect(msg).toMatch(/^network "lab" has no free IPv4 address left in 10\.0\.0\.0\/29 for NIC 52:54:00:aa:00:01/);
    expect(msg).toContain('virsh net-update lab delete ip-dhcp-host');
  });

  it('a network without IPv4 DHCP is a one-line UserError', () => {
    const xml = "<network><name>lab</name><forward mode='nat'/><ip address='192.168.100.1' prefix='24'/></network>";
    expect(() => alloc(xml)).toThrow(/^network "lab" has no IPv4 DHCP .*address:$/);
  });
});

describe('allocateIpv6', () => {
  const ID = `00:03:00:01:${MAC}`;
  /** A dual-stack network: IPv4 with a range, and IPv6 `addr` with `dhcp` (the second <ip>: index 1). */
  const net6 = (dhcp: string, addr = "address='fd00:9::1' prefix='64'") =>
    net("<range start='192.168.100.100' end='192.168.100.254'/>", `<ip family='ipv6' ${addr}><dhcp>${dhcp}</dhcp></ip>`);
  const RANGE = "<range start='fd00:9::100' end='fd00:9::1ff'/>";
  const alloc6 = (xml: string, leases: Lease[] = [], o: { mac?: string; name?: string; vmMacs?: string[] } = {}) =>
    allocateIpv6({ network: parseNetwork(xml), leases, mac: o.mac ?? MAC, now: NOW, name: o.name ?? 'vm-1', vmMacs: o.vmMacs ?? [o.mac ?? MAC] });
  const lease6 = (ip: string, clientId: string, expiry = NOW + 3600): Lease => ({ ip, clientId, iaid: '7', expiry });
  const errorOf = (f: () => unknown): string => {
    try { f(); } catch (e) { expect(e).toBeInstanceOf(UserError); return (e as Error).message; }
    throw new Error('no error');
  };

  it('takes the first address outside the DHCPv6 range, skipping the network\'s own and reserved ones', () => {
    expect(alloc6(net6(RANGE))).toEqual({ kind: 'new', ip: 'fd00:9::2' });
    const xml = net6(`${RANGE}<host id='00:03:00:01:52:54:00:bb:00:01' name='a' ip='fd00:9::2'/><host id='00:03:00:01:52:54:00:bb:00:02' name='b' ip='FD00:9:0::3'/>`);
    expect(alloc6(xml)).toEqual({ kind: 'new', ip: 'fd00:9::4' });
  });

  it('the range starting right after the network\'s own address: the first address after the range', () => {
    expect(alloc6(net6("<range start='fd00:9::2' end='fd00:9::ffff'/>"))).toEqual({ kind: 'new', ip: 'fd00:9::1:0' });
  });

  it('skips addresses leased to another client (another DUID), but not expired leases; IPv4 leases do not count', () => {
    const xml = net6(RANGE);
    expect(alloc6(xml, [lease6('fd00:9::2', '00:03:00:01:52:54:00:cc:00:01')])).toEqual({ kind: 'new', ip: 'fd00:9::3' });
    expect(alloc6(xml, [lease6('fd00:9::2', '00:03:00:01:52:54:00:cc:00:01', NOW - 1)])).toEqual({ kind: 'new', ip: 'fd00:9::2' });
    expect(alloc6(xml, [lease('192.168.100.2', '52:54:00:cc:00:01')])).toEqual({ kind: 'new', ip: 'fd00:9::2' });
  });

  it('reuses the address the NIC\'s DUID leases now, unless another host entry reserves it', () => {
    expect(alloc6(net6(RANGE), [lease6('fd00:9::1a7', ID)])).toEqual({ kind: 'new', ip: 'fd00:9::1a7' });
    const taken = net6(`${RANGE}<host id='00:03:00:01:52:54:00:bb:00:01' name='a' ip='fd00:9::1a7'/>`);
    expect(alloc6(taken, [lease6('fd00:9::1a7', ID)])).toEqual({ kind: 'new', ip: 'fd00:9::2' });
    // The same MAC under another DUID type is another client as far as dnsmasq is concerned.
    expect(alloc6(net6(RANGE), [{ ...lease6('fd00:9::1a7', `00:01:00:01:2e:3f:4a:5b:${MAC}`), mac: MAC }])).toEqual({ kind: 'new', ip: 'fd00:9::2' });
  });

  it('falls back inside the range when the range fills the subnet', () => {
    const xml = net6("<range start='fd00:9::2' end='fd00:9::fe'/>", "address='fd00:9::1' prefix='120'");
    expect(alloc6(xml)).toEqual({ kind: 'new', ip: 'fd00:9::2' });
    expect(alloc6(xml, [lease6('fd00:9::2', '00:03:00:01:52:54:00:cc:00:01')])).toEqual({ kind: 'new', ip: 'fd00:9::3' });
  });

  it('an exhausted pool is a one-line UserError naming the network, the subnet and the fix', () => {
    // fd00:9::/126: ::0 and ::3 are never taken, ::1 is the network's own, ::2 the range, leased to another client.
    const xml = net6("<range start='fd00:9::2' end='fd00:9::2'/>", "address='fd00:9::1' prefix='126'");
    const msg = errorOf(() => alloc6(xml, [lease6('fd00:9::2', '00:03:00:01:52:54:00:cc:00:01')]));
    expect(msg).not.toContain('\n');
    expect(msg).toBe('network "lab" has no free IPv6 address left in fd00:9::/126 for NIC 52:54:00:aa:00:01 (all reserved or leased); remove unused <host> entries '
      + '(virsh net-update lab delete ip-dhcp-host "<host id=… name=… ip=…/>" --parent-index 1 --live --config), widen the subnet, or give the template an IPv6 address:');
  });

  it('no IPv6 <ip>, or one without a DHCPv6 range: nothing to reserve', () => {
    expect(alloc6(net("<range start='192.168.100.100' end='192.168.100.254'/>"))).toBeUndefined();
    expect(alloc6(net6("<host name='vm-1' ip='fd00:9::10'/>"))).toBeUndefined();
  });

  it('already reserved: the IPv6 host named after the VM, with this NIC\'s DUID, another NIC\'s of the VM, or a DUID no MAC can be read from', () => {
    expect(alloc6(net6(`${RANGE}<host id='${ID}' name='vm-1' ip='fd00:9::10'/>`))).toEqual({ kind: 'reserved', ip: 'fd00:9::10' });
    const other = '00:03:00:01:52:54:00:aa:00:02';
    expect(alloc6(net6(`${RANGE}<host id='${other}' name='vm-1' ip='fd00:9::11'/>`), [], { vmMacs: [MAC, '52:54:00:aa:00:02'] })).toEqual({ kind: 'reserved', ip: 'fd00:9::11' });
    // DUID-EN (systemd-networkd's default): an admin reserved it by hand for the guest's own DUID.
    expect(alloc6(net6(`${RANGE}<host id='00:02:00:00:ab:11:01:02:03:04' name='vm-1' ip='fd00:9::12'/>`))).toEqual({ kind: 'reserved', ip: 'fd00:9::12' });
    // DUID-LLT of this NIC's MAC (dhclient's default).
    expect(alloc6(net6(`${RANGE}<host id='00:01:00:01:2e:3f:4a:5b:${MAC}' name='vm-1' ip='fd00:9::13'/>`))).toEqual({ kind: 'reserved', ip: 'fd00:9::13' });
    expect(alloc6(net6(`${RANGE}<host name='vm-1' ip='fd00:9::14'/>`))).toEqual({ kind: 'reserved', ip: 'fd00:9::14' });
  });

  it('a host named after the VM whose DUID holds the MAC of no NIC of the VM is stale: refused, naming the entry and the command that deletes it', () => {
    const stale = "<host id='00:03:00:01:52:54:00:dd:00:01' name='vm-1' ip='fd00:9::10'/>";
    expect(errorOf(() => alloc6(net6(`${RANGE}${stale}`)))).toBe(
      'network "lab" has an IPv6 reservation named after this VM for DUID 00:03:00:01:52:54:00:dd:00:01 (MAC 52:54:00:dd:00:01, no NIC of this VM; NIC 52:54:00:aa:00:01 would be 00:03:00:01:52:54:00:aa:00:01); '
      + `if it is stale, delete it (virsh net-update lab delete ip-dhcp-host "${stale}" --live --config --parent-index 1), then run virtwire apply again`);
  });

  it('the NIC\'s DUID reserved under another name (or none) is refused, naming the entry; an odd name is not pasted into the command', () => {
    expect(errorOf(() => alloc6(net6(`${RANGE}<host id='${ID}' name='old-vm' ip='fd00:9::10'/>`)))).toBe(
      `network "lab" reserves fd00:9::10 for NIC ${MAC}'s DUID ${ID} under the name "old-vm", not this VM's (renamed?); virtwire finds a VM's IPv6 reservation by its name: `
      + `delete that entry (virsh net-update lab delete ip-dhcp-host "<host id='${ID}' name='old-vm' ip='fd00:9::10'/>" --live --config --parent-index 1), then run virtwire apply again`);
    expect(errorOf(() => alloc6(net6(`${RANGE}<host id='${ID}' name='a$(x)' ip='fd00:9::10'/>`)))).toContain(`"<host id='${ID}' name='NAME' ip='fd00:9::10'/>"`);
    expect(errorOf(() => alloc6(net6(`${RANGE}<host id='${ID}' ip='fd00:9::10'/>`)))).toContain('under no name');
  });

  it('a VM name libvirt or dnsmasq would not take as a host name is refused in one line with the fix', () => {
    for (const name of ['my vm', 'a,b', 'x,ignore', '7d', '42', 'ignore', '1.2.3.4', '-a', '_a', 'a..b', 'vm"1', 'a$b', 'x'.repeat(64), 'été', '']) {
      const msg = errorOf(() => alloc6(net6(RANGE), [], { name }));
      expect(msg).not.toMatch(/[\n\r]/);
      expect(msg).toMatch(/^the VM's name ".*" is not a host name dnsmasq takes in a DHCPv6 reservation .*; rename the domain \(virsh domrename, while it is shut off\), or give the template an IPv6 address:$/);
    }
    for (const name of ['Web_1-a', '1vm', 'web01.example.com', 'a.b_c']) expect(alloc6(net6(RANGE), [], { name })).toEqual({ kind: 'new', ip: 'fd00:9::2' });
  });
});

describe('plannedReservations: which NICs of a VM need one', () => {
  const WEB = template('web', 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n');
  const FIXED = template('fixed', 'match: {domains: ["fixed-*"]}\nbinding: nat\naddress: 192.168.122.50\nforwards:\n  - {proto: tcp, host: 8081, guest: 80}\n');
  const isolated = parseNetwork("<network><name>iso</name><ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.100' end='10.1.0.200'/></dhcp></ip></network>");
  const views = (name: string) => (name === 'default' ? { info: defaultNetwork(), leases: [] } : name === 'iso' ? { info: isolated, leases: [] } : undefined);
  const planned = (xml: string) =>
    plannedReservations({ domain: parseDomain(xml), templates: set(WEB, FIXED), network: views, now: NOW }).map((r) => `${r.mac} ${r.network} ${r.ip}`);

  it('a wired NIC without reservation gets the first free address; two on one network get two', () => {
    expect(planned(domainXml('web-1', [{ mac: '52:54:00:77:00:20' }, { mac: '52:54:00:77:00:21' }]))).toEqual([
      '52:54:00:77:00:20 default 192.168.122.2',
      '52:54:00:77:00:21 default 192.168.122.3',
    ]);
  });

  it('skips NICs already reserved, NICs of a template with address:, and VMs no template wires', () => {
    expect(planned(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]))).toEqual([]);
    expect(planned(domainXml('fixed-1', [{ mac: '52:54:00:77:00:20' }]))).toEqual([]);
    expect(planned(domainXml('db-1', [{ mac: '52:54:00:77:00:20' }]))).toEqual([]);
  });

  it('a wired NIC on a non-NAT or missing network is a one-line error naming VM, NIC and network', () => {
    expect(() => planned(domainXml('web-1', [{ mac: '52:54:00:77:00:20', network: 'iso' }]))).toThrow(
      /^VM "web-1" NIC 52:54:00:77:00:20: binding nat needs a NAT network .*network "iso" has forward mode "isolated"; attach the NIC to a NAT network, or keep template \/etc\/virtwire\/templates\/web\.yaml off this network with match\.networks$/);
    expect(() => planned(domainXml('web-1', [{ mac: '52:54:00:77:00:20', network: 'gone' }]))).toThrow(
      'VM "web-1" NIC 52:54:00:77:00:20: network "gone" does not exist; define it, or attach the NIC to another network');
  });
});

describe('plannedReservations on a dual-stack network (IPv6 with a DHCPv6 range)', () => {
  const WEB = template('web', 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n');
  const FIX4 = template('fix4', 'match: {domains: ["fix4-*"]}\nbinding: nat\naddress: 192.168.100.50\nforwards:\n  - {proto: tcp, host: 8081, guest: 80}\n');
  const FIX46 = template('fix46', 'match: {domains: ["fix46-*"]}\nbinding: nat\naddress: [192.168.100.51, "fd00:9::51"]\nforwards:\n  - {proto: tcp, host: 8082, guest: 80}\n');
  const DUAL = `<network><name>dual</name><forward mode='nat'/><bridge name='virbr9'/>
    <ip address='192.168.100.1' prefix='24'><dhcp><range start='192.168.100.100' end='192.168.100.254'/></dhcp></ip>
    <ip family='ipv6' address='fd00:9::1' prefix='64'><dhcp><range start='fd00:9::100' end='fd00:9::1ff'/>
      <host id='00:03:00:01:52:54:00:99:00:01' name='web-9' ip='fd00:9::2'/></dhcp></ip></network>`;
  const leases: Lease[] = [{ ip: 'fd00:9::150', clientId: '00:03:00:01:52:54:00:77:00:31', iaid: '1', expiry: NOW + 60 }];
  const planned = (xml: string) =>
    plannedReservations({ domain: parseDomain(xml), templates: set(WEB, FIX4, FIX46), network: (n) => (n === 'dual' ? { info: parseNetwork(DUAL), leases } : undefined), now: NOW });
  const text = (xml: string) => planned(xml).map((r) => [r.family, r.mac, r.ip, r.id, r.name, r.parentIndex].filter((x) => x !== undefined).join(' '));

  it('a wired NIC gets an IPv4 and an IPv6 reservation (<host id=DUID-LL name=VM>, parent <ip> index 1); the IPv6 one is the first free outside the range', () => {
    expect(text(domainXml('web-1', [{ mac: '52:54:00:77:00:30', network: 'dual' }]))).toEqual([
      '4 52:54:00:77:00:30 192.168.100.2',
      '6 52:54:00:77:00:30 fd00:9::3 00:03:00:01:52:54:00:77:00:30 web-1 1',
    ]);
  });

  it('the IPv6 address the NIC\'s DUID leases now is kept', () => {
    expect(text(domainXml('web-1', [{ mac: '52:54:00:77:00:31', network: 'dual' }]))[1]).toBe('6 52:54:00:77:00:31 fd00:9::150 00:03:00:01:52:54:00:77:00:31 web-1 1');
  });

  it('two NICs on the network: two IPv4 reservations, one IPv6 (name= is unique in an <ip>), for the first', () => {
    expect(text(domainXml('web-2', [{ mac: '52:54:00:77:00:32', network: 'dual' }, { mac: '52:54:00:77:00:33', network: 'dual' }]))).toEqual([
      '4 52:54:00:77:00:32 192.168.100.2',
      '6 52:54:00:77:00:32 fd00:9::3 00:03:00:01:52:54:00:77:00:32 web-2 1',
      '4 52:54:00:77:00:33 192.168.100.3',
    ]);
  });

  it('a template with an IPv4 address: gets only the IPv6 reservation; with both families, none; a VM already reserved by name, only IPv4', () => {
    expect(text(domainXml('fix4-1', [{ mac: '52:54:00:77:00:34', network: 'dual' }]))).toEqual(['6 52:54:00:77:00:34 fd00:9::3 00:03:00:01:52:54:00:77:00:34 fix4-1 1']);
    expect(text(domainXml('fix46-1', [{ mac: '52:54:00:77:00:35', network: 'dual' }]))).toEqual([]);
    expect(text(domainXml('web-9', [{ mac: '52:54:00:99:00:01', network: 'dual' }]))).toEqual(['4 52:54:00:99:00:01 192.168.100.2']);
  });

  it('a VM whose name cannot be a DHCPv6 host name: one error line, nothing planned', () => {
    expect(() => planned(domainXml('web-3 x', [{ mac: '52:54:00:77:00:36', network: 'dual' }]))).toThrow(
      /^the VM's name "web-3 x" is not a host name .*NIC 52:54:00:77:00:36 on network "dual" after the VM; rename the domain/);
  });

  it('plan\'s diff is a unified diff of the network XML: each <host> under its <ip>, after the last one, as libvirt will list it', async () => {
    const { reservationDiff } = await import('../../src/cli/commands/plan.js');
    const xml = readFileSync(join(ROOT, 'test', 'data', 'xml', 'network-nat-dual-in.xml'), 'utf8');
    const nic = parseDomain(domainXml('web-1', [{ mac: '52:54:00:77:00:30', network: 'lab-nat' }])).nics[0]!;
    const rs = [
      { nic, network: 'lab-nat', mac: nic.mac, family: 4 as const, ip: '192.168.100.2' },
      { nic, network: 'lab-nat', mac: nic.mac, family: 6 as const, id: '00:03:00:01:52:54:00:77:00:30', name: 'web-1', ip: 'fd00:100::2', parentIndex: 1 },
    ];
    expect(reservationDiff({ name: 'lab-nat', xml, info: parseNetwork(xml) }, rs)).toBe([
      '--- network "lab-nat"',
      '+++ network "lab-nat" (after apply)',
      '@@ -26,12 +26,14 @@',
      "       <range start='192.168.100.128' end='192.168.100.254'/>",
      "       <host mac='52:54:00:a1:b2:01' name='render02' ip='192.168.100.10'/>",
      "       <host mac='52:54:00:3c:8e:1a' name='debian12' ip='192.168.100.11'/>",
      "+      <host mac='52:54:00:77:00:30' ip='192.168.100.2'/>",
      '     </dhcp>',
      '   </ip>',
      "   <ip family='ipv6' address='fd00:100::1' prefix='64'>",
      '     <dhcp>',
      "       <range start='fd00:100::100' end='fd00:100::1ff'/>",
      "       <host id='00:03:00:01:52:54:00:a1:b2:01' name='render02' ip='fd00:100::10'/>",
      "+      <host id='00:03:00:01:52:54:00:77:00:30' name='web-1' ip='fd00:100::2'/>",
      '     </dhcp>',
      '   </ip>',
      ' </network>',
      '',
    ].join('\n'));
  });
});

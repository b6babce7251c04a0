// The DHCP reservation allocator (src/plan/allocate.ts) and the per-VM
// planner on top of it (src/engine/reservations.ts).
import { describe, expect, it } from 'vitest';
import { allocateIpv4 } from '../../src/plan/allocate.js';
import { parseNetwork } from '../../src/xml/network.js';
import type { Lease } from '../../src/host/libvirt-status.js';
import { UserError } from '../../src/errors.js';
import { plannedReservations } from '../../src/engine/reservations.js';
import { parseDomain } from '../../src/xml/domain.js';
import { defaultNetwork, domainXml, set, template } from './helpers.js';

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

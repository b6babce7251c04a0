// Which IPv4 address a NIC gets as its DHCP host reservation. Pure: the
// network's XML (parsed) and its current leases in, one address out.
import type { NetworkInfo, NetworkIp } from '../xml/network.js';
import type { Lease } from '../host/libvirt-status.js';
import { bigIntToIp, canonicalIp, ipFamily, ipToBigInt } from '../model/addr.js';
import { UserError, quoted, shellWord } from '../errors.js';

export interface AllocateInput {
  network: NetworkInfo;
  leases: readonly Lease[];
  /** The NIC's MAC, lowercase. */
  mac: string;
  /** Seconds since the epoch: leases that expired before are free. */
  now: number;
}

/** Already reserved for this MAC (nothing to do), or the address to reserve. */
export type Allocation = { kind: 'reserved'; ip: string } | { kind: 'new'; ip: string };

/** The IPv4 <ip> dnsmasq serves DHCP on (libvirt allows one), else the first IPv4 one. */
export function dhcpIpv4(net: NetworkInfo): NetworkIp | undefined {
  const v4 = net.ips.filter((ip) => ip.family === 4);
  return v4.find((ip) => ip.ranges.length > 0 || ip.hosts.length > 0) ?? v4[0];
}

/**
 * The IPv4 to reserve for `mac`: the one it already has reserved; else the
 * address it leases now, when that is in the subnet and not reserved for
 * another host; else the first address of the subnet that is not the
 * network's own, not network/broadcast, not reserved, not leased to another
 * MAC — outside the dynamic range first, inside it when nothing is left
 * outside (libvirt's stock default network makes its whole subnet the range;
 * dnsmasq never hands a reserved address to another client).
 * Throws a one-line UserError naming the network and the fix.
 */
export function allocateIpv4(input: AllocateInput): Allocation {
  const { network, mac } = input;
  const ip = dhcpIpv4(network);
  if (!ip || ip.ranges.length === 0 && ip.hosts.length === 0) {
    throw new UserError(`network ${quoted(network.name)} has no IPv4 DHCP (<ip><dhcp>): virtwire cannot reserve an address for NIC ${mac}; add a <dhcp> range to it (virsh net-edit), or give the template an address:`);
  }
  const mine = ip.hosts.find((h) => h.mac === mac);
  if (mine) return { kind: 'reserved', ip: mine.ip };

  const reserved = new Set(ip.hosts.map((h) => ipToBigInt(h.ip)));
  const live = input.leases.filter((l) => ipFamily(l.ip) === 4 && (l.expiry === 0 || l.expiry > input.now));
  const leasedToOthers = new Set(live.filter((l) => l.mac !== mac).map((l) => ipToBigInt(l.ip)));
  const own = ipToBigInt(ip.address);
  const { first, last } = ip.subnet;
  const usable = (n: bigint): boolean => n > first && n < last && n !== own && !reserved.has(n) && !leasedToOthers.has(n);

  const lease = live.find((l) => l.mac === mac && usable(ipToBigInt(l.ip)));
  if (lease) return { kind: 'new', ip: canonicalIp(lease.ip) };

  const ranges = ip.ranges.map((r) => ({ start: ipToBigInt(r.start), end: ipToBigInt(r.end) }));
  const rangeHolding = (n: bigint) => ranges.find((r) => r.start <= n && n <= r.end);
  // Outside the ranges, jumping over each range; then inside them.
  for (let n = first + 1n; n < last; n++) {
    const r = rangeHolding(n);
    if (r) { n = r.end; continue; }
    if (usable(n)) return { kind: 'new', ip: bigIntToIp(n, 4) };
  }
  for (const r of ranges) {
    for (let n = r.start > first ? r.start : first + 1n; n <= r.end && n < last; n++) {
      if (usable(n)) return { kind: 'new', ip: bigIntToIp(n, 4) };
    }
  }
  throw new UserError(`network ${quoted(network.name)} has no free IPv4 address left in ${ip.subnet.text} for NIC ${mac} (all reserved or leased); remove unused <host> entries (virsh net-update ${shellWord(network.name, 'NETWORK')} delete ip-dhcp-host "<host mac=… ip=…/>" --live --config), widen the subnet, or give the template an address:`);
}

/** The network as it will be once `mac` has `ip` reserved. */
export function withHost(net: NetworkInfo, mac: string, ip: string): NetworkInfo {
  const target = dhcpIpv4(net);
  return { ...net, ips: net.ips.map((x) => (x === target ? { ...x, hosts: [...x.hosts, { mac, ip }] } : x)) };
}

// Which addresses a NIC gets as its DHCP host reservations: IPv4 (keyed by
// MAC) and IPv6 (keyed by DUID, named after the domain). Pure: the network's
// XML (parsed) and its current leases in, one address out. Both families
// share one rule (choose()): the address the NIC leases now when it is free,
// else the first free one, outside the dynamic range when there is room.
import type { DhcpHost, NetworkInfo, NetworkIp } from '../xml/network.js';
import type { Lease } from '../host/libvirt-status.js';
import { bigIntToIp, canonicalIp, ipFamily, ipToBigInt, type Family } from '../model/addr.js';
import { dhcpHostNameProblem, duidLL, macOfDuid } from '../model/dhcp6.js';
import { UserError, quoted, shellWord } from '../errors.js';

export interface AllocateInput {
  network: NetworkInfo;
  leases: readonly Lease[];
  /** The NIC's MAC, lowercase. */
  mac: string;
  /** Seconds since the epoch: leases that expired before are free. */
  now: number;
}

export interface Allocate6Input extends AllocateInput {
  /** The domain's name: the IPv6 <host>'s name=, by which virtwire finds it. */
  name: string;
  /** MACs of all the VM's NICs: an IPv6 host named after the VM whose DUID holds one of them is the VM's own. */
  vmMacs: readonly string[];
}

/** Already reserved for this NIC (nothing to do), or the address to reserve. */
export type Allocation = { kind: 'reserved'; ip: string } | { kind: 'new'; ip: string };

/** The IPv4 <ip> dnsmasq serves DHCP on (libvirt allows one), else the first IPv4 one. */
export function dhcpIpv4(net: NetworkInfo): NetworkIp | undefined {
  const v4 = net.ips.filter((ip) => ip.family === 4);
  return v4.find((ip) => ip.ranges.length > 0 || ip.hosts.length > 0) ?? v4[0];
}

/** The IPv6 <ip> with a DHCPv6 range (libvirt allows one), else undefined: no IPv6 reservation there. */
export function dhcpIpv6(net: NetworkInfo): NetworkIp | undefined {
  return net.ips.find((ip) => ip.family === 6 && ip.ranges.length > 0);
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
  return { kind: 'new', ip: choose(network, ip, liveLeases(input, 4), (l) => l.mac === mac, mac, `"<host mac=… ip=…/>"`) };
}

/**
 * The IPv6 to reserve for `mac` on the network's DHCPv6 <ip>, as
 * <host id=DUID-LL(mac) name=DOMAIN ip=…/>; undefined when the network has
 * no DHCPv6 range. Already reserved: the host named after the domain (the
 * one the hooks forward to), unless its DUID holds the MAC of no NIC of this
 * VM (stale: refused). Else like IPv4: the address this DUID leases now when
 * free, else the first free one (not the network's own, not reserved, not
 * leased to another client), outside the range first.
 * Throws a one-line UserError naming the network, the entry, and the fix.
 */
export function allocateIpv6(input: Allocate6Input): Allocation | undefined {
  const { network, mac, name } = input;
  const ip = dhcpIpv6(network);
  if (!ip) return undefined;
  const id = duidLL(mac);
  const net = quoted(network.name);
  const named = ip.hosts.find((h) => !h.mac && h.name === name);
  if (named) {
    const owner = named.id === undefined ? undefined : macOfDuid(named.id);
    if (owner === undefined || input.vmMacs.includes(owner)) return { kind: 'reserved', ip: named.ip };
    throw new UserError(`network ${net} has an IPv6 reservation named after this VM for DUID ${named.id} (MAC ${owner}, no NIC of this VM; NIC ${mac} would be ${id}); if it is stale, delete it (${deleteCommand(network.name, ip, named)}), then run virtwire apply again`);
  }
  const other = ip.hosts.find((h) => h.id === id);
  if (other) {
    throw new UserError(`network ${net} reserves ${other.ip} for NIC ${mac}'s DUID ${id} under ${other.name === undefined ? 'no name' : `the name ${quoted(other.name)}`}, not this VM's (renamed?); virtwire finds a VM's IPv6 reservation by its name: delete that entry (${deleteCommand(network.name, ip, other)}), then run virtwire apply again`);
  }
  const bad = dhcpHostNameProblem(name);
  if (bad) {
    throw new UserError(`the VM's name ${quoted(name)} ${bad}, and virtwire names the IPv6 reservation of NIC ${mac} on network ${net} after the VM; rename the domain (virsh domrename, while it is shut off), or give the template an IPv6 address:`);
  }
  return { kind: 'new', ip: choose(network, ip, liveLeases(input, 6), (l) => l.clientId === id, mac, `"<host id=… name=… ip=…/>" --parent-index ${ip.index}`) };
}

/** The network as it will be once a reservation is made: IPv4 by mac; IPv6 by id and name. */
export function withHost(net: NetworkInfo, r: { family: Family; mac: string; id?: string; name?: string; ip: string }): NetworkInfo {
  const target = r.family === 4 ? dhcpIpv4(net) : dhcpIpv6(net);
  const host: DhcpHost = r.family === 4 ? { mac: r.mac, ip: r.ip } : { id: r.id, name: r.name, ip: r.ip };
  return { ...net, ips: net.ips.map((x) => (x === target ? { ...x, hosts: [...x.hosts, host] } : x)) };
}

function liveLeases(input: AllocateInput, family: Family): Lease[] {
  return input.leases.filter((l) => ipFamily(l.ip) === family && (l.expiry === 0 || l.expiry > input.now));
}

/**
 * The address to reserve in `ip` for the client whose leases `isMine` picks:
 * its current lease when usable, else the first usable address outside the
 * ranges, else inside them. Usable: in the subnet, not its first or last
 * address (IPv4 network/broadcast; IPv6 subnet-router anycast), not the
 * network's own, not reserved, not leased to another client.
 */
function choose(network: NetworkInfo, ip: NetworkIp, live: readonly Lease[], isMine: (l: Lease) => boolean, mac: string, hostXml: string): string {
  const reserved = new Set(ip.hosts.map((h) => ipToBigInt(h.ip)));
  const leasedToOthers = new Set(live.filter((l) => !isMine(l)).map((l) => ipToBigInt(l.ip)));
  const own = ipToBigInt(ip.address);
  const { first, last } = ip.subnet;
  const usable = (n: bigint): boolean => n > first && n < last && n !== own && !reserved.has(n) && !leasedToOthers.has(n);

  const lease = live.find((l) => isMine(l) && usable(ipToBigInt(l.ip)));
  if (lease) return canonicalIp(lease.ip);

  const ranges = ip.ranges.map((r) => ({ start: ipToBigInt(r.start), end: ipToBigInt(r.end) }));
  const rangeHolding = (n: bigint) => ranges.find((r) => r.start <= n && n <= r.end);
  // Outside the ranges, jumping over each range; then inside them. Only
  // reserved and leased addresses are skipped one by one, so this ends fast
  // even in an IPv6 /64.
  for (let n = first + 1n; n < last; n++) {
    const r = rangeHolding(n);
    if (r) { n = r.end; continue; }
    if (usable(n)) return bigIntToIp(n, ip.family);
  }
  for (const r of ranges) {
    for (let n = r.start > first ? r.start : first + 1n; n <= r.end && n < last; n++) {
      if (usable(n)) return bigIntToIp(n, ip.family);
    }
  }
  throw new UserError(`network ${quoted(network.name)} has no free IPv${ip.family} address left in ${ip.subnet.text} for NIC ${mac} (all reserved or leased); remove unused <host> entries (virsh net-update ${shellWord(network.name, 'NETWORK')} delete ip-dhcp-host ${hostXml} --live --config), widen the subnet, or give the template an ${ip.family === 6 ? 'IPv6 ' : ''}address:`);
}

/** The command that deletes an IPv6 <host> (libvirt matches name and ip); the name only when it is plain. */
function deleteCommand(network: string, ip: NetworkIp, h: DhcpHost): string {
  const name = h.name === undefined ? '' : ` name='${/^[A-Za-z0-9._-]+$/.test(h.name) ? h.name : 'NAME'}'`;
  return `virsh net-update ${shellWord(network, 'NETWORK')} delete ip-dhcp-host "<host${h.id ? ` id='${h.id}'` : ''}${name} ip='${h.ip}'/>" --live --config --parent-index ${ip.index}`;
}

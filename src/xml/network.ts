import { parseXml, child, children, attr, text, type XmlElement } from './parse.js';
import { canonicalIp, ipFamily, netmaskToPrefix, subnetOf, type Cidr } from '../model/addr.js';

export interface DhcpHost {
  mac?: string;
  /** IPv6: the DHCPv6 client's DUID (lowercase hex bytes with colons), which dnsmasq gives the address to. */
  id?: string;
  name?: string;
  ip: string;
}

export interface NetworkIp {
  family: 4 | 6;
  /** Its position among the network's <ip> elements (net-update's --parent-index). */
  index: number;
  address: string;
  subnet: Cidr;
  hosts: DhcpHost[];
  /** Its <dhcp><range start end>s of this family (dnsmasq's dynamic pool); [] without DHCP. */
  ranges: Array<{ start: string; end: string }>;
}

export interface NetworkInfo {
  name: string;
  bridge?: string;
  forwardMode: string;
  ips: NetworkIp[];
}

/**
 * Parses a libvirt network: the status file (/run/libvirt/network/NAME.xml,
 * <networkstatus><network>…), the network hook's stdin (<hookData><network>…)
 * or a plain <network>.
 */
export function parseNetwork(xml: string): NetworkInfo {
  const root = parseXml(xml);
  const net = child(root, 'network') ?? child(child(root, 'networkstatus'), 'network') ?? child(child(root, 'hookData'), 'network');
  if (!net) throw new Error('no <network> element');
  return networkFromElement(net);
}

function networkFromElement(net: XmlElement): NetworkInfo {
  const ips: NetworkIp[] = [];
  for (const [index, ip] of children(net, 'ip').entries()) {
    const address = attr(ip, 'address');
    const family = address ? ipFamily(address) : undefined;
    if (!address || !family) continue;
    const prefix = Number(attr(ip, 'prefix') ?? (family === 4 ? netmaskToPrefix(attr(ip, 'netmask') ?? '') ?? 24 : 64));
    const hosts: DhcpHost[] = [];
    for (const h of children(child(ip, 'dhcp'), 'host')) {
      const hostIp = attr(h, 'ip');
      if (!hostIp || ipFamily(hostIp) !== family) continue;
      hosts.push({ mac: attr(h, 'mac')?.toLowerCase(), id: attr(h, 'id')?.toLowerCase(), name: attr(h, 'name'), ip: canonicalIp(hostIp) });
    }
    const ranges: NetworkIp['ranges'] = [];
    for (const r of children(child(ip, 'dhcp'), 'range')) {
      const start = attr(r, 'start');
      const end = attr(r, 'end');
      if (start && end && ipFamily(start) === family && ipFamily(end) === family) ranges.push({ start: canonicalIp(start), end: canonicalIp(end) });
    }
    ips.push({ family, index, address: canonicalIp(address), subnet: subnetOf(address, prefix), hosts, ranges });
  }
  return {
    name: text(child(net, 'name')) ?? '',
    bridge: attr(child(net, 'bridge'), 'name'),
    forwardMode: attr(child(net, 'forward'), 'mode') ?? (child(net, 'forward') ? 'nat' : 'isolated'),
    ips,
  };
}

/**
 * The address reserved for a NIC: IPv4 by MAC; IPv6 by MAC where given, else
 * by host name equal to the domain name (libvirt's IPv6 <host> has id/name, no MAC).
 */
export function reservedAddress(net: NetworkInfo, family: 4 | 6, mac: string, domainName: string): { ip: string; subnet: Cidr } | undefined {
  for (const ip of net.ips) {
    if (ip.family !== family) continue;
    const h = ip.hosts.find((x) => x.mac === mac) ?? (family === 6 ? ip.hosts.find((x) => !x.mac && x.name === domainName) : undefined);
    if (h) return { ip: h.ip, subnet: ip.subnet };
  }
  return undefined;
}

/** The network's subnet that holds `address` (for hairpin NAT), if any. */
export function subnetHolding(net: NetworkInfo, address: string): Cidr | undefined {
  const family = ipFamily(address);
  for (const ip of net.ips) {
    if (ip.family !== family) continue;
    const a = subnetOf(address, Number(ip.subnet.text.split('/')[1]));
    if (a.first === ip.subnet.first) return ip.subnet;
  }
  return undefined;
}

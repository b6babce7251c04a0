import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** A parsed CIDR: normalized text plus the numeric range, for containment checks. */
export interface Cidr {
  text: string;
  family: Family;
  first: bigint;
  last: bigint;
}

export function ipFamily(addr: string): Family | undefined {
  if (isIPv4(addr)) return 4;
  if (isIPv6(addr)) return 6;
  return undefined;
}

export function ipToBigInt(addr: string): bigint {
  if (isIPv4(addr)) {
    return addr.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  }
  if (!isIPv6(addr)) throw new Error(`not an IP address: ${addr}`);
  let text = addr;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const n = ipToBigInt(v4[1]);
    text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headParts.length - tailParts.length;
  const groups = [...headParts, ...Array<string>(zeros).fill('0'), ...tailParts];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function bigIntToIp(n: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Canonical text of an address (IPv6 compressed, lower case). */
export function canonicalIp(addr: string): string {
  const family = ipFamily(addr);
  if (!family) throw new Error(`not an IP address: ${addr}`);
  return bigIntToIp(ipToBigInt(addr), family);
}

/** Parses `198.51.100.0/24`, `2001:db8::/32` or a bare address; returns an error text on failure. */
export function parseCidr(value: string): Cidr | string {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(value.trim());
  const addr = m?.[1];
  const family = addr ? ipFamily(addr) : undefined;
  if (!m || !addr || !family) return `expected an address or CIDR like 198.51.100.0/24, found ${JSON.stringify(value)}`;
  const bits = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? bits : Number(m[2]);
  if (prefix > bits) return `prefix /${prefix} is too long for IPv${family} in ${JSON.stringify(value)}`;
  const n = ipToBigInt(addr);
  const hostBits = BigInt(bits - prefix);
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << hostBits) - 1n);
  const first = n & mask;
  if (first !== n) {
    return `${JSON.stringify(value)} has host bits set; did you mean ${bigIntToIp(first, family)}/${prefix}?`;
  }
  return { text: `${bigIntToIp(first, family)}/${prefix}`, family, first, last: first | ((1n << hostBits) - 1n) };
}

export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.first <= inner.first && inner.last <= outer.last;
}

/** Drops CIDRs contained in others: nft rejects overlapping interval elements. */
export function minimalCidrs(cidrs: readonly Cidr[]): Cidr[] {
  return cidrs.filter((c, i) =>
    !cidrs.some((o, j) => j !== i && cidrContains(o, c) && (o.first !== c.first || o.last !== c.last || j < i)),
  );
}

/** Network prefix containing `addr` (e.g. guest subnet from the libvirt network's ip/prefix). */
export function subnetOf(addr: string, prefix: number): Cidr {
  const family = ipFamily(addr);
  if (!family) throw new Error(`not an IP address: ${addr}`);
  const bits = family === 4 ? 32 : 128;
  const hostBits = BigInt(bits - prefix);
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << hostBits) - 1n);
  const first = ipToBigInt(addr) & mask;
  return { text: `${bigIntToIp(first, family)}/${prefix}`, family, first, last: first | ((1n << hostBits) - 1n) };
}

export function netmaskToPrefix(netmask: string): number | undefined {
  if (!isIPv4(netmask)) return undefined;
  const n = ipToBigInt(netmask);
  const bin = n.toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(bin)) return undefined;
  return bin.indexOf('0') === -1 ? 32 : bin.indexOf('0');
}

import { quote } from './show.js';

export type Family = 4 | 6;

/** An address as a number: 32 bits (IPv4) or 128 bits (IPv6). */
export interface Ip {
  family: Family;
  value: bigint;
}

/** A parsed CIDR: normalized text plus the numeric range, for containment checks. */
export interface Cidr {
  text: string;
  family: Family;
  first: bigint;
  last: bigint;
}

const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/**
 * Parses one IPv4 address (four decimal numbers 0-255, no leading zeros:
 * some tools read those as octal) or IPv6 address (8 groups, or fewer with
 * one "::"; an embedded IPv4 address only as the last 32 bits; no zone ID).
 * Returns what is wrong, as text, instead of throwing.
 */
export function parseIp(text: string): Ip | string {
  const zone = text.indexOf('%');
  if (zone >= 0) return `${quote(text)} has an IPv6 zone ID (${quote(text.slice(zone))}), which names a local link and cannot be used here; write the address without it`;
  const value = text.includes(':') ? parseIPv6(text) : /^[0-9.]+$/.test(text) ? parseIPv4(text) : `${quote(text)} is not an IPv4 or IPv6 address`;
  if (typeof value === 'string') return value;
  return { family: text.includes(':') ? 6 : 4, value };
}

function parseIPv4(text: string): bigint | string {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^[0-9]{1,3}$/.test(p))) return `${quote(text)} is not an IPv4 address, which is four numbers 0-255 like 192.0.2.1`;
  if (parts.some((p) => p.length > 1 && p.startsWith('0'))) return `${quote(text)} has a number with a leading zero, which some tools read as octal; write it without leading zeros`;
  if (parts.some((p) => Number(p) > 255)) return `${quote(text)} is not an IPv4 address: each of its numbers is 0-255`;
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n);
}

function parseIPv6(text: string): bigint | string {
  const bad = (why: string): string => `${quote(text)} is not an IPv6 address: ${why}`;
  const halves = text.split('::');
  if (halves.length > 2) return bad('"::" may appear only once');
  const [head, tail] = halves.map((h) => (h === '' ? [] : h.split(':'))) as [string[], string[] | undefined];
  const last = tail ?? head;
  let v4: bigint | undefined;
  if (last.at(-1)?.includes('.')) {
    const r = parseIPv4(last.pop() as string);
    if (typeof r === 'string') return bad(`its IPv4 part is wrong: ${r}`);
    v4 = r;
  }
  const groups = [...head, ...(tail ?? [])];
  const wrong = groups.find((g) => !HEX_GROUP.test(g));
  if (wrong !== undefined) {
    return bad(wrong.includes('.') ? 'an embedded IPv4 address may only end it' : wrong === '' ? 'it has a stray ":"' : `${quote(wrong)} is not 1-4 hex digits`);
  }
  const count = groups.length + (v4 === undefined ? 0 : 2);
  if (tail === undefined && count !== 8) return bad(`it has ${count} groups; an address has 8, or fewer with one "::"`);
  if (tail !== undefined && count > 7) return bad(`it has ${count} groups besides "::", which stands for at least one; at most 7`);
  const zeros = Array<string>(8 - count).fill('0');
  const words = [...head, ...zeros, ...(tail ?? [])].reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n);
  return v4 === undefined ? words : (words << 32n) | v4;
}

/** An Ip, or undefined for text that is not an address. */
function toIp(addr: string | Ip): Ip | undefined {
  if (typeof addr !== 'string') return addr;
  const ip = parseIp(addr);
  return typeof ip === 'string' ? undefined : ip;
}

function mustParse(addr: string): Ip {
  const ip = parseIp(addr);
  if (typeof ip === 'string') throw new Error(`not an IP address: ${ip}`);
  return ip;
}

export function ipFamily(addr: string): Family | undefined {
  return toIp(addr)?.family;
}

export function ipToBigInt(addr: string): bigint {
  return mustParse(addr).value;
}

/** The IPv4 address (as a number) of an IPv4-mapped IPv6 address ::ffff:a.b.c.d, else undefined. */
function mappedValue(ip: Ip): bigint | undefined {
  return ip.family === 6 && ip.value >> 32n === 0xffffn ? ip.value & 0xffffffffn : undefined;
}

/** The IPv4 address (as a number) of an IPv4-compatible IPv6 address ::a.b.c.d (deprecated), else undefined. */
function compatibleValue(ip: Ip): bigint | undefined {
  return ip.family === 6 && ip.value >> 32n === 0n ? ip.value & 0xffffffffn : undefined;
}

/**
 * Whether `addr` is loopback: 127.0.0.0/8, ::1, and every other spelling of
 * them (0:0:0:0:0:0:0:1, ::ffff:127.0.0.1 and ::ffff:7f00:1, ::127.0.0.1).
 * False for text that is not an address.
 */
export function isLoopback(addr: string | Ip): boolean {
  const ip = toIp(addr);
  if (!ip) return false;
  if (ip.family === 4) return ip.value >> 24n === 127n;
  if (ip.value === 1n) return true;
  const v4 = mappedValue(ip) ?? compatibleValue(ip);
  return v4 !== undefined && v4 >> 24n === 127n;
}

/** Whether `addr` is the unspecified address 0.0.0.0 or :: (any spelling). False for text that is not an address. */
export function isUnspecified(addr: string | Ip): boolean {
  return toIp(addr)?.value === 0n;
}

/** Whether `addr` is multicast: 224.0.0.0/4 or ff00::/8. */
export function isMulticast(addr: string | Ip): boolean {
  const ip = toIp(addr);
  if (!ip) return false;
  return ip.family === 4 ? ip.value >> 28n === 0xen : ip.value >> 120n === 0xffn;
}

/** Whether `addr` is the IPv4 limited broadcast address 255.255.255.255. */
export function isBroadcast(addr: string | Ip): boolean {
  const ip = toIp(addr);
  return ip?.family === 4 && ip.value === 0xffffffffn;
}

/** The IPv4 address of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d` in any spelling, e.g. `::ffff:7f00:1`), else undefined. */
export function ipv4Mapped(addr: string | Ip): string | undefined {
  const ip = toIp(addr);
  const v4 = ip ? mappedValue(ip) : undefined;
  return v4 === undefined ? undefined : bigIntToIp(v4, 4);
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

/** Canonical text of a parsed address (IPv6 compressed, lower case). */
export function formatIp(ip: Ip): string {
  return bigIntToIp(ip.value, ip.family);
}

/** Canonical text of an address (IPv6 compressed, lower case). Throws on text that is not an address. */
export function canonicalIp(addr: string): string {
  return formatIp(mustParse(addr));
}

function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

function cidrFrom(first: bigint, prefix: number, family: Family): Cidr {
  const hostBits = BigInt(bitsOf(family) - prefix);
  return { text: `${bigIntToIp(first, family)}/${prefix}`, family, first, last: first | ((1n << hostBits) - 1n) };
}

function networkOf(n: bigint, prefix: number, family: Family): bigint {
  const bits = bitsOf(family);
  return n & (((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n));
}

/** Parses `198.51.100.0/24`, `2001:db8::/32` or a bare address; returns an error text on failure. */
export function parseCidr(value: string): Cidr | string {
  const m = /^([^/]*)(?:\/(0|[1-9][0-9]{0,2}))?$/.exec(value.trim());
  const addrText = m?.[1] ?? '';
  if (!m || !/[:.]/.test(addrText)) return `expected an address or CIDR like 198.51.100.0/24, found ${quote(value)}`;
  const ip = parseIp(addrText);
  if (typeof ip === 'string') return ip;
  const bits = bitsOf(ip.family);
  const prefix = m[2] === undefined ? bits : Number(m[2]);
  if (prefix > bits) return `prefix /${prefix} is too long for IPv${ip.family} in ${quote(value)}`;
  const first = networkOf(ip.value, prefix, ip.family);
  if (first !== ip.value) return `${quote(value)} has host bits set; did you mean ${bigIntToIp(first, ip.family)}/${prefix}?`;
  return cidrFrom(first, prefix, ip.family);
}

/** The IPv4 CIDR an IPv4-mapped IPv6 CIDR (inside ::ffff:0:0/96) stands for, as text; else undefined. */
export function cidrIpv4Mapped(c: Cidr): string | undefined {
  const v4 = mappedValue({ family: c.family, value: c.first });
  const prefix = Number(c.text.split('/')[1]) - 96;
  return v4 === undefined || prefix < 0 ? undefined : `${bigIntToIp(v4, 4)}/${prefix}`;
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
  const ip = mustParse(addr);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bitsOf(ip.family)) throw new Error(`invalid prefix /${prefix} for ${addr}`);
  return cidrFrom(networkOf(ip.value, prefix, ip.family), prefix, ip.family);
}

export function netmaskToPrefix(netmask: string): number | undefined {
  const ip = toIp(netmask);
  if (ip?.family !== 4) return undefined;
  const bin = ip.value.toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(bin)) return undefined;
  return bin.indexOf('0') === -1 ? 32 : bin.indexOf('0');
}

// binding nat's template settings: `address:` and `forwards:`, and the
// validation of a forward wherever it comes from (template or domain metadata).
import { isMap, isScalar, type Node } from 'yaml';
import {
  parseCidr, parseIp, formatIp, minimalCidrs, cidrIpv4Mapped, ipv4Mapped, isLoopback, isUnspecified, isMulticast, isBroadcast,
  type Cidr, type Ip,
} from '../../model/addr.js';
import { formatRange, parsePortRange, rangeWidth, MAX_FORWARD_RANGE, type PortRange } from '../../model/ports.js';
import { describe, quote } from '../../model/show.js';
import type { Proto } from '../../model/forward.js';
import { didYouMean, type YamlFile } from '../../policy/yaml-doc.js';
import type { Template } from '../../policy/template.js';

/** One forward as an admin (template) or a VM owner (domain metadata) asked for it. */
export interface ForwardSpec {
  proto: Proto;
  host: PortRange;
  guest: PortRange;
  listen?: string;
  from: Cidr[];
  description?: string;
  allowHostConflict: boolean;
  /** file:line:column (template) or "domain metadata" — where to look when it conflicts. */
  origin: string;
}

/**
 * Host ports `virtwire apply` allocates from forwards.autoPorts for one NIC:
 * a forward with `host: auto`, or a port block.
 */
export interface AutoPortsSpec {
  /** The allocation's key for its NIC: `auto:<proto>:<guest ports>`, or `block`. */
  key: string;
  /** How many consecutive host ports. */
  width: number;
  origin: string;
  /** Its forwards, each at an offset from the first allocated port (as many host ports as its guest ports). */
  forwards: Array<{ offset: number; spec: Omit<ForwardSpec, 'host'> }>;
}

/** A nat template's own settings. */
export interface NatSettings {
  address: { 4?: string; 6?: string };
  forwards: ForwardSpec[];
  /**
   * Where each forward was written, for problems found once all are read;
   * parse-time only: dropped by finishNatSettings, so a parsed template is
   * plain data (the hooks keep it as JSON: policy/parse-cache.ts).
   */
  forwardNodes?: Node[];
  autoPorts: AutoPortsSpec[];
  autoNodes?: Node[];
}

export const NAT_KEYS = ['address', 'forwards'] as const;
export const FORWARD_KEYS = ['proto', 'host', 'guest', 'listen', 'from', 'description', 'allowHostConflict'] as const;
/** A port block: `{block: N, guest: [22, 80, "8000-8001"]}`, N consecutive host ports per VM. */
export const BLOCK_KEYS = ['block', 'guest', 'proto', 'from', 'listen', 'description'] as const;
/**
 * Most nft map elements one forward may make (host ports × sources): a
 * forward is one element per port and source, and the whole table is
 * replaced at every change, so a huge one would slow every VM's start.
 */
export const MAX_FORWARD_ELEMENTS = 16384;

export function newNatSettings(): NatSettings {
  return { address: {}, forwards: [], forwardNodes: [], autoPorts: [], autoNodes: [] };
}

/** Reads one of NAT_KEYS into `into`, reporting problems at their node. */
export function readNatKey(y: YamlFile, key: string, value: Node | null, into: NatSettings): void {
  if (key === 'address') readAddresses(y, value, into.address);
  else if (key === 'forwards') {
    // The mapping shorthand `forwards: {block: N, guest: [...]}` is a one-item list (a block only).
    const items = value && isBlock(y, value) ? [value] : y.items(value, 'forwards');
    for (const item of items) {
      const f = isBlock(y, item) ? readBlock(y, item) : readForward(y, item, 'forwards[]', true);
      if (f && 'key' in f) { into.autoPorts.push(f); into.autoNodes?.push(item); } else if (f) { into.forwards.push(f); into.forwardNodes?.push(item); }
    }
  }
}

/** Checks that need every key read. */
export function finishNatSettings(y: YamlFile, s: NatSettings): void {
  checkForwardOverlaps(y, s.forwards, s.forwardNodes ?? []);
  s.autoPorts.forEach((a, i) => {
    const first = s.autoPorts.findIndex((b) => b.key === a.key);
    if (first === i) return;
    y.report(s.autoNodes?.[i] ?? null, a.key === 'block'
      ? `a second port block; a template has at most one (the first is at ${(s.autoPorts[first] as AutoPortsSpec).origin}): merge their guest ports into one block`
      : `a second host: auto forward for ${a.key.slice('auto:'.length).replace(':', ' ')} (the first is at ${(s.autoPorts[first] as AutoPortsSpec).origin}); remove one`);
  });
  delete s.forwardNodes;
  delete s.autoNodes;
}

function isBlock(y: YamlFile, node: Node): boolean {
  const m = y.deref(node);
  return isMap(m) && m.items.some((p) => y.scalar(p.key as Node) === 'block');
}

/** A nat template's settings (its binding must be nat). */
export function natSettings(t: Pick<Template, 'binding' | 'settings' | 'file'>): NatSettings {
  if (t.binding !== 'nat') throw new Error(`template ${t.file} has binding ${t.binding}, not nat`);
  return t.settings as NatSettings;
}

function readAddresses(y: YamlFile, node: Node | null, into: NatSettings['address']): void {
  const nodes = isScalar(y.deref(node)) ? [node as Node] : y.items(node, 'address');
  for (const n of nodes) {
    const v = y.scalar(n);
    if (typeof v !== 'string') {
      y.report(n, `address must be an IPv4 or IPv6 address of the guest (e.g. 192.168.122.10), found ${y.kindOf(n)}`);
      continue;
    }
    const ip = parseIp(v);
    const problem = typeof ip === 'string' ? ip : guestAddressProblem(ip, v);
    if (typeof ip === 'string' || problem) { y.report(n, `address: ${problem}`); continue; }
    if (into[ip.family]) { y.report(n, `address lists two IPv${ip.family} addresses; give at most one per family`); continue; }
    into[ip.family] = formatIp(ip);
  }
}

/** What kind of special address `ip` is, for messages; undefined for an ordinary unicast address. */
function specialKind(ip: Ip): string | undefined {
  if (isLoopback(ip)) return 'a loopback address';
  if (isUnspecified(ip)) return 'the unspecified address';
  if (isMulticast(ip)) return 'a multicast address';
  if (isBroadcast(ip)) return 'the broadcast address';
  if (ipv4Mapped(ip)) return 'an IPv4-mapped IPv6 address';
  return undefined;
}

/** Why a guest address (template `address:`) cannot be forwarded to, or undefined. */
function guestAddressProblem(ip: Ip, text: string): string | undefined {
  const v4 = ipv4Mapped(ip);
  if (v4 && !isLoopback(ip)) return `${quote(text)} is an IPv4-mapped IPv6 address; write the guest's IPv4 address as ${v4}`;
  const kind = specialKind(ip);
  return kind && `${quote(text)} is ${kind}, not a guest's; give the guest's address in its libvirt network (e.g. 192.168.122.10)`;
}

/** Why a host address cannot be a forward's `listen`, or undefined. */
function listenProblem(ip: Ip, text: string): string | undefined {
  if (isLoopback(ip)) return 'loopback addresses cannot be forwarded (the kernel does not route them to a guest); use a host address';
  if (isUnspecified(ip)) return `${quote(text)} is the unspecified address, not one a connection is made to; omit listen to mean every host address`;
  if (isMulticast(ip) || isBroadcast(ip)) return `${quote(text)} is ${specialKind(ip)}, never the destination of a connection; use one of the host's own addresses`;
  const v4 = ipv4Mapped(ip);
  if (v4) return `${quote(text)} is an IPv4-mapped IPv6 address, which IPv6 rules never see (IPv4 packets stay IPv4); use ${v4}`;
  return undefined;
}

export type ForwardKey = (typeof FORWARD_KEYS)[number];
export type RawForward = Partial<Record<ForwardKey, unknown>>;

/** A forward's or block's keys as plain values, and the node each came from; undefined after reporting an unknown key. */
function readFields<K extends string>(y: YamlFile, node: Node, keys: readonly K[], what: string, suggest: readonly string[] = keys): { raw: Partial<Record<K, unknown>>; nodes: Partial<Record<string, Node | null>> } | undefined {
  const raw: Partial<Record<K, unknown>> = {};
  const nodes: Partial<Record<string, Node | null>> = {};
  let bad = false;
  for (const [key, keyNode, value] of y.entries(node, what)) {
    if (!(keys as readonly string[]).includes(key)) {
      y.report(keyNode, `unknown key ${quote(key)} in ${what}${didYouMean(key, suggest)}; allowed: ${keys.join(', ')}`);
      bad = true;
      continue;
    }
    nodes[key] = value;
    raw[key as K] = y.value(value);
  }
  return bad ? undefined : { raw, nodes };
}

/** Reports at the field's node (or the item's, with `what` before the message). */
function reporter(y: YamlFile, node: Node, nodes: Partial<Record<string, Node | null>>, what: string): Report {
  return (key, message) => { y.report(key ? nodes[key] ?? node : node, key ? message : `${what}: ${message}`); };
}

/**
 * Reads one forward from YAML, reporting at the offending node. With `auto`
 * (templates), `host: auto` asks for host ports from forwards.autoPorts.
 */
export function readForward(y: YamlFile, node: Node, what: string): ForwardSpec | undefined;
export function readForward(y: YamlFile, node: Node, what: string, auto: true): ForwardSpec | AutoPortsSpec | undefined;
export function readForward(y: YamlFile, node: Node, what: string, auto = false): ForwardSpec | AutoPortsSpec | undefined {
  const f = readFields(y, node, FORWARD_KEYS, 'a forward', auto ? [...FORWARD_KEYS, 'block'] : FORWARD_KEYS);
  if (!f) return undefined;
  const report = reporter(y, node, f.nodes, what);
  if (auto && f.raw.host === 'auto') return validateAutoForward(f.raw, y.where(node), report);
  return validateForward(f.raw, y.where(node), report);
}

/** `host: auto`: as many host ports as guest ports, allocated at define time. */
function validateAutoForward(raw: RawForward, origin: string, report: Report): AutoPortsSpec | undefined {
  if (raw.guest === undefined) { report('host', 'host: auto needs guest: (the guest port or range; as many host ports are allocated)'); return undefined; }
  const guest = parsePortRange(raw.guest);
  if (typeof guest === 'string') { report('guest', `guest: ${guest}`); return undefined; }
  // Validated as a forward whose host ports are its guest ports: the allocated ones are as many.
  const spec = validateForward({ ...raw, host: formatRange(guest) }, origin, report);
  if (!spec) return undefined;
  const { host: _placeholder, ...rest } = spec;
  return { key: `auto:${spec.proto}:${formatRange(guest)}`, width: rangeWidth(guest), origin, forwards: [{ offset: 0, spec: rest }] };
}

/** Reads a port block, reporting at the offending node. */
function readBlock(y: YamlFile, node: Node): AutoPortsSpec | undefined {
  const f = readFields(y, node, BLOCK_KEYS, 'a port block');
  if (!f) return undefined;
  let ok = true;
  const fail = reporter(y, node, f.nodes, 'forwards[] (port block)');
  const report: Report = (key, message) => { ok = false; fail(key, message); };
  const { raw } = f;
  const width = raw.block;
  if (typeof width !== 'number' || !Number.isInteger(width) || width < 1 || width > MAX_FORWARD_RANGE) {
    report('block', `block must be a whole number of host ports from 1 to ${MAX_FORWARD_RANGE}, found ${describe(width)}`);
  }
  const guests: PortRange[] = [];
  if (raw.guest === undefined) report(null, 'guest is required: the guest ports the block forwards to, in order (e.g. [22, 80, "8000-8001"])');
  for (const g of raw.guest === undefined ? [] : Array.isArray(raw.guest) ? raw.guest : [raw.guest]) {
    const r = parsePortRange(g);
    if (typeof r === 'string') report('guest', `guest: ${r}`);
    else guests.push(r);
  }
  if (raw.guest !== undefined && guests.length === 0 && ok) report('guest', 'guest: list at least one guest port');
  const count = guests.reduce((n, r) => n + rangeWidth(r), 0);
  if (typeof width === 'number' && ok && count > width) {
    report('block', `block: ${width} host port(s) cannot hold the ${count} guest ports listed; make block at least ${count}, or list fewer guest ports`);
  }
  const protos: Proto[] = raw.proto === undefined ? ['tcp', 'udp'] : [readProto(raw.proto, report)].filter((p): p is Proto => p !== undefined);
  const listen = raw.listen === undefined ? undefined : readListen(raw.listen, report);
  const from = raw.from === undefined ? [] : readFrom(raw.from, listen, report);
  if (typeof width === 'number') checkElementCount({ lo: 1, hi: width }, from, report);
  const description = readOptional(raw, 'description', 'string', 'text', report);
  if (!ok) return undefined;
  const origin = y.where(node);
  const forwards: AutoPortsSpec['forwards'] = [];
  let offset = 0;
  for (const guest of guests) {
    for (const proto of protos) forwards.push({ offset, spec: { proto, guest, listen: listen && formatIp(listen), from, description, allowHostConflict: false, origin } });
    offset += rangeWidth(guest);
  }
  return { key: 'block', width: width as number, origin, forwards };
}

type Report = (key: string | null, message: string) => void;

/**
 * Validates a forward's fields, whatever they were written in (template YAML
 * or domain metadata XML). `fail` gets the field at fault (or null) and a message.
 */
export function validateForward(raw: RawForward, origin: string, fail: Report): ForwardSpec | undefined {
  let ok = true;
  const report: Report = (key, message) => { ok = false; fail(key, message); };
  const proto = readProto(raw.proto, report);
  const host = readHostPorts(raw.host, report);
  const guest = raw.guest === undefined ? host : readGuestPorts(raw.guest, host, report);
  const listen = raw.listen === undefined ? undefined : readListen(raw.listen, report);
  const from = raw.from === undefined ? [] : readFrom(raw.from, listen, report);
  if (host) checkElementCount(host, from, report);
  const description = readOptional(raw, 'description', 'string', 'text', report);
  const allowHostConflict = readOptional(raw, 'allowHostConflict', 'boolean', 'true or false', report) ?? false;
  if (!ok || !proto || !host || !guest) return undefined;
  return { proto, host, guest, listen: listen && formatIp(listen), from, description, allowHostConflict, origin };
}

function readProto(proto: unknown, report: Report): Proto | undefined {
  if (proto === 'tcp' || proto === 'udp') return proto;
  if (proto === undefined) report(null, 'proto is required (tcp or udp)');
  else report('proto', `proto must be tcp or udp, found ${describe(proto)}`);
  return undefined;
}

function readHostPorts(value: unknown, report: Report): PortRange | undefined {
  if (value === undefined) { report(null, 'host is required (a port like 8080 or a range like "8000-8010")'); return undefined; }
  const r = parsePortRange(value);
  if (typeof r === 'string') report('host', `host: ${r}`);
  else if (rangeWidth(r) > MAX_FORWARD_RANGE) report('host', `host: a range may span at most ${MAX_FORWARD_RANGE} ports, found ${rangeWidth(r)}`);
  else return r;
  return undefined;
}

function readGuestPorts(value: unknown, host: PortRange | undefined, report: Report): PortRange | undefined {
  const r = parsePortRange(value);
  if (typeof r === 'string') report('guest', `guest: ${r}`);
  else if (host && rangeWidth(r) !== rangeWidth(host)) {
    report('guest', `guest: a range must be as long as the host range (${rangeWidth(host)} ports), found ${rangeWidth(r)}`);
  } else return r;
  return undefined;
}

function readListen(value: unknown, report: Report): Ip | undefined {
  if (typeof value !== 'string') { report('listen', `listen must be one host IP address (e.g. 203.0.113.1), found ${describe(value)}`); return undefined; }
  const ip = parseIp(value);
  const problem = typeof ip === 'string' ? ip : listenProblem(ip, value);
  if (problem) report('listen', `listen: ${problem}`);
  return typeof ip === 'string' || problem ? undefined : ip;
}

/** The source allow-list, minimal (nft refuses overlapping elements). */
function readFrom(value: unknown, listen: Ip | undefined, report: Report): Cidr[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) report('from', 'from: an empty allow-list would admit nobody; remove "from" to admit every source');
  const from: Cidr[] = [];
  for (const v of list) {
    const c = typeof v === 'string' ? parseCidr(v) : `expected a CIDR like 198.51.100.0/24, found ${describe(v)}`;
    const mapped = typeof c === 'string' ? undefined : cidrIpv4Mapped(c);
    if (typeof c === 'string') report('from', `from: ${c}`);
    else if (mapped) report('from', `from: ${quote(v as string)} is an IPv4-mapped IPv6 range, which IPv6 rules never see (IPv4 packets stay IPv4); use ${mapped}`);
    else if (listen && c.family !== listen.family) report('from', `from: ${c.text} is IPv${c.family} but listen ${formatIp(listen)} is IPv${listen.family}`);
    else from.push(c);
  }
  return minimalCidrs(from);
}

function checkElementCount(host: PortRange, from: readonly Cidr[], report: Report): void {
  const n = rangeWidth(host) * Math.max(1, from.length);
  if (n <= MAX_FORWARD_ELEMENTS) return;
  report('from', `from: ${from.length} sources for ${rangeWidth(host)} host ports make ${n} nft map elements, more than the ${MAX_FORWARD_ELEMENTS} a forward may have; use fewer, wider CIDRs or a shorter port range`);
}

/** An optional field of one JS type; undefined when absent or wrong (reported). */
function readOptional<T extends 'string' | 'boolean'>(raw: Partial<Record<'description' | 'allowHostConflict', unknown>>, key: 'description' | 'allowHostConflict', type: T, what: string, report: Report): (T extends 'string' ? string : boolean) | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  if (typeof v === type) return v as T extends 'string' ? string : boolean;
  report(key, `${key} must be ${what}, found ${describe(v)}`);
  return undefined;
}

/** Two forwards of one template must not claim the same proto + host port on overlapping listen addresses. */
export function checkForwardOverlaps(y: YamlFile, forwards: ForwardSpec[], nodes: Node[]): void {
  for (let i = 0; i < forwards.length; i++) {
    for (let j = i + 1; j < forwards.length; j++) {
      const a = forwards[i] as ForwardSpec;
      const b = forwards[j] as ForwardSpec;
      if (a.proto !== b.proto || a.host.lo > b.host.hi || b.host.lo > a.host.hi) continue;
      if (a.listen && b.listen && a.listen !== b.listen) continue;
      y.report(nodes[j], `forward ${b.proto} ${b.host.lo} overlaps the forward at ${a.origin}; merge them or use different host ports`);
    }
  }
}


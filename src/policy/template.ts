import { isScalar, isSeq, type Node } from 'yaml';
import { parseCidr, ipFamily, canonicalIp, minimalCidrs, type Cidr, type Family } from './addr.js';
import { parsePortRange, rangeWidth, MAX_FORWARD_RANGE, describe, type PortRange } from './ports.js';
import { YamlFile, didYouMean, kindOf } from './yaml-doc.js';

export const BINDINGS = ['nat'] as const;
/** Bindings the architecture plans; named in errors so an admin knows they are coming, not misspelled. */
const PLANNED_BINDINGS = ['bridge', 'macvtap', 'sriov', 'ovs', 'isolated', 'passt'];
export type Binding = (typeof BINDINGS)[number];
export type Proto = 'tcp' | 'udp';

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

export interface Template {
  name: string;
  file: string;
  description?: string;
  match: { domains: string[]; networks?: string[]; optIn: boolean };
  priority: number;
  binding: Binding;
  address: { 4?: string; 6?: string };
  forwards: ForwardSpec[];
}

export const TEMPLATE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const TOP_KEYS = ['description', 'match', 'priority', 'binding', 'address', 'forwards'] as const;
const MATCH_KEYS = ['domains', 'networks', 'optIn'] as const;
export const FORWARD_KEYS = ['proto', 'host', 'guest', 'listen', 'from', 'description', 'allowHostConflict'] as const;

/** Template name from its file name: `/etc/virtwire/templates/web.yaml` → `web`. */
export function templateNameOf(file: string): string {
  return (file.split('/').pop() ?? file).replace(/\.ya?ml$/, '');
}

/**
 * Validates one template file. Returns the template (undefined if any problem)
 * and, when `match.domains` itself was valid, the globs — so a broken file can
 * still be ruled out for VMs it clearly does not concern.
 */
export function parseTemplate(file: string, text: string): { template?: Template; domains?: string[]; optIn?: boolean; problems: YamlFile['problems'] } {
  const y = new YamlFile(file, text);
  const name = templateNameOf(file);
  if (!TEMPLATE_NAME.test(name)) {
    y.report(null, `file name ${JSON.stringify(name)} is not a valid template name: use letters, digits, ".", "_" and "-" (it is how domains opt in)`);
  }
  if (y.problems.length) return { problems: y.problems };
  const t: Partial<Template> & { address: Template['address']; forwards: ForwardSpec[] } = {
    name, file, priority: 0, address: {}, forwards: [],
  };
  const forwardNodes: Node[] = [];
  let domainsOk = true;
  let sawBinding = false;
  for (const [key, keyNode, value] of y.entries(y.root, 'a template')) {
    switch (key) {
      case 'description': t.description = readString(y, value, 'description'); break;
      case 'priority': {
        const v = y.scalar(value);
        if (typeof v !== 'number' || !Number.isInteger(v) || v < -1000 || v > 1000) {
          y.report(value, `priority must be a whole number from -1000 to 1000, found ${kindOf(value)}`);
        } else t.priority = v;
        break;
      }
      case 'binding': {
        sawBinding = true;
        const v = y.scalar(value);
        if (typeof v === 'string' && (BINDINGS as readonly string[]).includes(v)) t.binding = v as Binding;
        else if (typeof v === 'string' && PLANNED_BINDINGS.includes(v)) {
          y.report(value, `binding "${v}" is not supported by this version of virtwire yet; supported: ${BINDINGS.join(', ')}`);
        } else y.report(value, `binding must be one of: ${BINDINGS.join(', ')}; found ${kindOf(value)}`);
        break;
      }
      case 'match': {
        const before = y.problems.length;
        t.match = readMatch(y, value);
        domainsOk = !y.problems.slice(before).some((p) => p.message.startsWith('match.domains'));
        break;
      }
      case 'address': readAddresses(y, value, t.address); break;
      case 'forwards':
        for (const item of y.items(value, 'forwards')) {
          const f = readForward(y, item, 'forwards[]');
          if (f) { t.forwards.push(f); forwardNodes.push(item); }
        }
        break;
      default:
        y.report(keyNode, `unknown key "${key}"${didYouMean(key, TOP_KEYS)}; allowed: ${TOP_KEYS.join(', ')}`);
    }
  }
  if (!sawBinding) y.report(y.root, 'binding is required (binding: nat)');
  if (!t.match) y.report(y.root, 'match is required: say which domains this template applies to (match: {domains: ["web-*"]})');
  else if (t.match.domains.length === 0 && !t.match.optIn) {
    y.report(y.root, 'match.domains is empty and match.optIn is not true: this template can never apply; add a glob or set optIn: true');
  }
  checkForwardOverlaps(y, t.forwards, forwardNodes);
  const domains = domainsOk ? t.match?.domains : undefined;
  const optIn = t.match?.optIn;
  if (y.problems.length) return { domains, optIn, problems: y.problems };
  return { template: t as Template, domains, optIn, problems: [] };
}

function readString(y: YamlFile, node: Node | null, what: string): string | undefined {
  const v = y.scalar(node);
  if (typeof v !== 'string') {
    y.report(node, `${what} must be text, found ${kindOf(node)}`);
    return undefined;
  }
  return v;
}

function readStringList(y: YamlFile, node: Node | null, what: string, check?: (s: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const item of y.items(node, what)) {
    const v = y.scalar(item);
    if (typeof v !== 'string' || v === '') { y.report(item, `${what} entries must be non-empty text, found ${kindOf(item)}`); continue; }
    const err = check?.(v);
    if (err) { y.report(item, `${what}: ${err}`); continue; }
    out.push(v);
  }
  return out;
}

function readMatch(y: YamlFile, node: Node | null): Template['match'] {
  const m: Template['match'] = { domains: [], optIn: false };
  for (const [key, keyNode, value] of y.entries(node, 'match')) {
    if (key === 'domains') m.domains = readStringList(y, value, 'match.domains');
    else if (key === 'networks') {
      m.networks = readStringList(y, value, 'match.networks', (s) => (/[/\s]/.test(s) ? `${JSON.stringify(s)} is not a libvirt network name` : undefined));
    } else if (key === 'optIn') {
      const v = y.scalar(value);
      if (typeof v !== 'boolean') y.report(value, `match.optIn must be true or false, found ${kindOf(value)}`);
      else m.optIn = v;
    } else y.report(keyNode, `unknown key "match.${key}"${didYouMean(key, MATCH_KEYS)}; allowed: ${MATCH_KEYS.join(', ')}`);
  }
  return m;
}

function readAddresses(y: YamlFile, node: Node | null, into: Template['address']): void {
  const nodes = isScalar(node) ? [node as Node] : y.items(node, 'address');
  for (const n of nodes) {
    const v = y.scalar(n);
    const family = typeof v === 'string' ? ipFamily(v) : undefined;
    if (typeof v !== 'string' || !family) {
      y.report(n, `address must be an IPv4 or IPv6 address of the guest (e.g. 192.168.122.10), found ${kindOf(n)}`);
      continue;
    }
    if (into[family]) { y.report(n, `address lists two IPv${family} addresses; give at most one per family`); continue; }
    into[family] = canonicalIp(v);
  }
}

export type ForwardKey = (typeof FORWARD_KEYS)[number];
export type RawForward = Partial<Record<ForwardKey, unknown>>;

/** Reads one forward from YAML, reporting at the offending node. */
export function readForward(y: YamlFile, node: Node, what: string): ForwardSpec | undefined {
  const raw: RawForward = {};
  const nodes: Partial<Record<ForwardKey, Node | null>> = {};
  let bad = false;
  for (const [key, keyNode, value] of y.entries(node, 'a forward')) {
    if (!(FORWARD_KEYS as readonly string[]).includes(key)) {
      y.report(keyNode, `unknown key "${key}" in a forward${didYouMean(key, FORWARD_KEYS)}; allowed: ${FORWARD_KEYS.join(', ')}`);
      bad = true;
      continue;
    }
    const k = key as ForwardKey;
    nodes[k] = value;
    raw[k] = k === 'from' && isSeq(value) ? value.items.map((n) => y.scalar(n as Node)) : y.scalar(value);
  }
  if (bad) return undefined;
  return validateForward(raw, y.where(node), (key, message) => {
    y.report(key ? nodes[key] ?? node : node, key ? message : `${what}: ${message}`);
  });
}

/**
 * Validates a forward's fields, whatever they were written in (template YAML
 * or domain metadata XML). `fail` gets the field at fault (or null) and a message.
 */
export function validateForward(raw: RawForward, origin: string, fail: (key: ForwardKey | null, message: string) => void): ForwardSpec | undefined {
  let ok = true;
  const report = (key: ForwardKey | null, message: string): void => { ok = false; fail(key, message); };
  const { proto } = raw;
  if (proto === undefined) report(null, 'proto is required (tcp or udp)');
  else if (proto !== 'tcp' && proto !== 'udp') report('proto', `proto must be tcp or udp, found ${describe(proto)}`);
  let host: PortRange | undefined;
  if (raw.host === undefined) report(null, 'host is required (a port like 8080 or a range like "8000-8010")');
  else {
    const r = parsePortRange(raw.host);
    if (typeof r === 'string') report('host', `host: ${r}`);
    else if (rangeWidth(r) > MAX_FORWARD_RANGE) report('host', `host: a range may span at most ${MAX_FORWARD_RANGE} ports, found ${rangeWidth(r)}`);
    else host = r;
  }
  let guest = host;
  if (raw.guest !== undefined) {
    const r = parsePortRange(raw.guest);
    if (typeof r === 'string') report('guest', `guest: ${r}`);
    else if (host && rangeWidth(r) !== rangeWidth(host)) {
      report('guest', `guest: a range must be as long as the host range (${rangeWidth(host)} ports), found ${rangeWidth(r)}`);
    } else guest = r;
  }
  let listen: string | undefined;
  if (raw.listen !== undefined) {
    const v = raw.listen;
    if (typeof v !== 'string' || !ipFamily(v)) report('listen', `listen must be one host IP address (e.g. 203.0.113.1), found ${describe(v)}`);
    else if (/^(127\.|::1$|::ffff:127\.)/.test(canonicalIp(v))) report('listen', 'listen: loopback addresses cannot be forwarded (the kernel does not route them to a guest); use a host address');
    else listen = canonicalIp(v);
  }
  const from: Cidr[] = [];
  if (raw.from !== undefined) {
    const list = Array.isArray(raw.from) ? raw.from : [raw.from];
    for (const v of list) {
      const c = typeof v === 'string' ? parseCidr(v) : `expected a CIDR like 198.51.100.0/24, found ${describe(v)}`;
      if (typeof c === 'string') report('from', `from: ${c}`);
      else if (listen && c.family !== ipFamily(listen)) report('from', `from: ${c.text} is IPv${c.family} but listen ${listen} is IPv${ipFamily(listen)}`);
      else from.push(c);
    }
    if (list.length === 0) report('from', 'from: an empty allow-list would admit nobody; remove "from" to admit every source');
  }
  let description: string | undefined;
  if (raw.description !== undefined) {
    if (typeof raw.description !== 'string') report('description', `description must be text, found ${describe(raw.description)}`);
    else description = raw.description;
  }
  let allowHostConflict = false;
  if (raw.allowHostConflict !== undefined) {
    if (typeof raw.allowHostConflict !== 'boolean') report('allowHostConflict', `allowHostConflict must be true or false, found ${describe(raw.allowHostConflict)}`);
    else allowHostConflict = raw.allowHostConflict;
  }
  if (!ok || !host || !guest) return undefined;
  return { proto: proto as Proto, host, guest, listen, from: minimalCidrs(from), description, allowHostConflict, origin };
}

/** Two forwards of one template must not claim the same proto + host port on overlapping listen addresses. */
function checkForwardOverlaps(y: YamlFile, forwards: ForwardSpec[], nodes: Node[]): void {
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

export type { Family };

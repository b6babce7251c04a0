import { createHash } from 'node:crypto';
import type { ResolvedForward } from '../model/forward.js';
import { formatIp, minimalCidrs, parseCidr, parseIp, type Cidr, type Family } from '../model/addr.js';

export const TABLE = 'virtwire';
/**
 * The table's maps and sets, per family (status compares their live elements):
 *  - port: forwards any packet to the port takes (no listen address, no
 *    source): a hash map keyed by port and proto alone. Most forwards are
 *    these, and a hash map adds and deletes an element in constant time: 200
 *    deleted cost ~1 ms here, against ~12 ms from an interval map (pipapo
 *    rebuilds its lookup tables for each element it drops), so a VM's
 *    teardown costs the same with 1 forward or 200.
 *  - fwd: forwards limited to a listen address or to sources: an interval map.
 *  - hairpin: guest subnet . guest address pairs, to masquerade.
 * No packet can match in both forward maps: a forward on every address
 * collides with any other forward on its port (plan/conflicts.ts), so the
 * two DNAT rules never compete.
 */
export const PORT_MAP = { 4: 'port4', 6: 'port6' } as const;
export const FORWARD_MAP = { 4: 'fwd4', 6: 'fwd6' } as const;
export const HAIRPIN_SET = { 4: 'hairpin4', 6: 'hairpin6' } as const;

/**
 * Every value placed in the script is re-validated here, whatever the
 * ledger says: the ledger is a file, and nft scripts are a language.
 */
function addr(a: string, family: Family): string {
  const ip = parseIp(a);
  if (typeof ip === 'string' || ip.family !== family) throw new Error(`invalid IPv${family} address in ledger: ${JSON.stringify(a)}`);
  return formatIp(ip);
}

function cidr(c: string, family: Family): Cidr {
  const r = parseCidr(c);
  if (typeof r === 'string' || r.family !== family) throw new Error(`invalid IPv${family} CIDR in ledger: ${JSON.stringify(c)}`);
  return r;
}

function port(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`invalid port in ledger: ${n}`);
  return String(n);
}

function mark(m: number): string {
  if (!Number.isInteger(m) || m <= 0 || m > 0xffffffff) throw new Error(`invalid mark: ${m}`);
  return `0x${m.toString(16).padStart(8, '0')}`;
}

/** A forward that takes every packet to its port, whatever the address and source: it goes in the port map. */
function takesWholePort(f: ResolvedForward): boolean {
  return f.listen === undefined && f.from.length === 0;
}

/**
 * One family's map elements of one kind, one per host port (and source):
 * host port . proto [. listen . source] : guest address . guest port.
 * The port comes first on purpose: nft's lookup for concatenated intervals
 * (pipapo) narrows field by field, and nearly every element has the same
 * proto, listen and source, so a key led by those carried all n elements
 * through three fields — 1000 forwards cut the new-connection rate to ~0.7×
 * (bench/forward-path.ts). Led by the port, the first field already leaves
 * one element.
 */
function mapElements(forwards: readonly ResolvedForward[], family: 4 | 6, kind: 'port' | 'fwd'): string[] {
  const any = family === 4 ? '0.0.0.0/0' : '::/0';
  // A VM's forwards mostly share one guest address (and listen address): each is checked and
  // written once, not once per forward (parsing one is most of an element's cost).
  const checked = new Map<string, string>();
  const address = (a: string): string => {
    let text = checked.get(a);
    if (text === undefined) checked.set(a, (text = addr(a, family)));
    return text;
  };
  const out: string[] = [];
  for (const f of forwards) {
    if (f.family !== family || takesWholePort(f) !== (kind === 'port')) continue;
    if (f.proto !== 'tcp' && f.proto !== 'udp') throw new Error(`invalid proto in ledger: ${String(f.proto)}`);
    const guestAddr = address(f.guestAddr);
    const narrowing = kind === 'port' ? [''] : (f.from.length ? f.from.map((c) => cidr(c, family).text) : [any]).map((s) => ` . ${f.listen ? address(f.listen) : any} . ${s}`);
    for (let p = f.host.lo; p <= f.host.hi; p++) {
      const guestPort = f.guest.lo + (p - f.host.lo);
      for (const n of narrowing) out.push(`${port(p)} . ${f.proto}${n} : ${guestAddr} . ${port(guestPort)}`);
    }
  }
  return out;
}

/** Elements of the port map: host port . proto : guest address . guest port. */
export function portElements(forwards: readonly ResolvedForward[], family: 4 | 6): string[] {
  return mapElements(forwards, family, 'port');
}

/** Elements of the forward map: host port . proto . listen . source : guest address . guest port. */
export function forwardElements(forwards: readonly ResolvedForward[], family: 4 | 6): string[] {
  return mapElements(forwards, family, 'fwd');
}

/**
 * Hairpin pairs: guest subnet . guest address, so a neighbour guest's
 * connection is masqueraded. One guest address may sit in nested subnets
 * (two libvirt networks, 192.168.0.0/16 and 192.168.122.0/24): only the
 * widest is kept, as nft refuses overlapping elements.
 */
export function hairpinElements(forwards: readonly ResolvedForward[], family: 4 | 6): string[] {
  // Each distinct (guest, subnet) once: a VM's forwards mostly share both.
  const pairs = new Set<string>();
  for (const f of forwards) if (f.family === family) pairs.add(`${f.guestAddr}\0${f.guestSubnet}`);
  const subnets = new Map<string, Cidr[]>();
  for (const p of pairs) {
    const [g, c] = p.split('\0') as [string, string];
    const guest = addr(g, family);
    subnets.set(guest, [...(subnets.get(guest) ?? []), cidr(c, family)]);
  }
  return [...subnets].flatMap(([guest, cs]) => minimalCidrs(cs).map((c) => `${c.text} . ${guest}`)).sort();
}

/** One of the table's maps or sets, for one family: how it is declared, and what forwards put in it. */
export interface TableMember {
  kind: 'map' | 'set';
  name: string;
  family: 4 | 6;
  type: string;
  interval: boolean;
  elements: (forwards: readonly ResolvedForward[]) => string[];
  /** The guest address an element of it goes to (status names the VM). */
  guestOf: (element: string) => string | undefined;
}

const mapGuest = (e: string): string | undefined => e.split(' : ')[1]?.split(' . ')[0];

/** The table's maps and sets, in the order the table declares them. */
export const MEMBERS: readonly TableMember[] = ([4, 6] as const).flatMap((family): TableMember[] => {
  const a = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  return [
    { kind: 'map', name: PORT_MAP[family], family, type: `inet_service . inet_proto : ${a} . inet_service`, interval: false, elements: (fw) => portElements(fw, family), guestOf: mapGuest },
    { kind: 'map', name: FORWARD_MAP[family], family, type: `inet_service . inet_proto . ${a} . ${a} : ${a} . inet_service`, interval: true, elements: (fw) => forwardElements(fw, family), guestOf: mapGuest },
    { kind: 'set', name: HAIRPIN_SET[family], family, type: `${a} . ${a}`, interval: true, elements: (fw) => hairpinElements(fw, family), guestOf: (e) => e.split(' . ').pop() },
  ];
});

/** The map a forward's elements go in. */
export function forwardMapOf(f: ResolvedForward): TableMember {
  const name = takesWholePort(f) ? PORT_MAP[f.family] : FORWARD_MAP[f.family];
  return MEMBERS.find((m) => m.name === name) as TableMember;
}

/** An element's key: what nft deletes a map element by. */
function keyOf(member: TableMember, element: string): string {
  return member.kind === 'map' ? element.split(' : ')[0] as string : element;
}

function block(member: TableMember, elements: string[]): string {
  const body = elements.length ? `\n\t\telements = {\n\t\t\t${elements.join(',\n\t\t\t')}\n\t\t}` : '';
  return `\t${member.kind} ${member.name} {\n\t\ttype ${member.type}${member.interval ? '\n\t\tflags interval' : ''}${body}\n\t}\n`;
}

/**
 * The whole `inet virtwire` table for the given forwards, as one nft script
 * that atomically replaces any previous version of the table ("add; delete;
 * add" in one transaction: there is never a moment without rules).
 */
export function renderTable(forwards: readonly ResolvedForward[], ctMark: number): string {
  const m = mark(ctMark);
  // A port map's key says nothing of the family, so its rule must (an IPv6 packet must not take an
  // IPv4 forward); an address match does it already (the output chain's, and the forward maps' key).
  const dnat = (family: 4 | 6, kind: 'port' | 'fwd', familyMatched = false): string => {
    const fam = family === 4 ? 'ip' : 'ip6';
    const key = kind === 'port' ? 'th dport . meta l4proto' : `th dport . meta l4proto . ${fam} daddr . ${fam} saddr`;
    const map = kind === 'port' ? PORT_MAP[family] : FORWARD_MAP[family];
    return `${kind === 'port' && !familyMatched ? `meta nfproto ipv${family} ` : ''}meta l4proto { tcp, udp } fib daddr type local ${key} @${map} ct mark set ct mark | ${m} dnat ${fam} to ${key} map @${map}`;
  };
  return [
    `table inet ${TABLE} {}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    ...MEMBERS.map((member) => block(member, member.elements(forwards))),
    '\t# Priority -105: just before the usual dstnat (-100), so a forward wins over other tools\' DNAT.',
    '\t# Connections from outside and from guests to a host address.',
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority -105; policy accept;',
    `\t\t${dnat(4, 'port')}`,
    `\t\t${dnat(4, 'fwd')}`,
    `\t\t${dnat(6, 'port')}`,
    `\t\t${dnat(6, 'fwd')}`,
    '\t}',
    '\t# Connections the host itself makes to its own addresses (loopback is never forwarded).',
    '\tchain output {',
    '\t\ttype nat hook output priority -105; policy accept;',
    `\t\tip daddr != 127.0.0.0/8 ${dnat(4, 'port', true)}`,
    `\t\tip daddr != 127.0.0.0/8 ${dnat(4, 'fwd')}`,
    `\t\tip6 daddr != ::1 ${dnat(6, 'port', true)}`,
    `\t\tip6 daddr != ::1 ${dnat(6, 'fwd')}`,
    '\t}',
    '\t# Hairpin: a guest reaching a neighbour through a host port must see replies come back through the host.',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority 95; policy accept;',
    `\t\tct mark & ${m} == ${m} ct status dnat ip saddr . ip daddr @${HAIRPIN_SET[4]} masquerade`,
    `\t\tct mark & ${m} == ${m} ct status dnat ip6 saddr . ip6 daddr @${HAIRPIN_SET[6]} masquerade`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** A digest of the table renderTable writes, less its elements: what the live table must be for renderAdditions. */
export function tableLayout(ctMark: number): string {
  return createHash('sha256').update(renderTable([], ctMark)).digest('hex').slice(0, 16);
}

/**
 * One VM's elements added to the table as it is (qemu prepare, when the live
 * table has the layout of this build and holds the other VMs' elements): one
 * transaction of `add element`, far cheaper than writing the table whole.
 * `counts` covers every VM in the table, this one included; undefined when
 * one of its elements is another VM's too (a shared hairpin pair): the table
 * is then written whole.
 */
export function renderAdditions(own: readonly ResolvedForward[], counts: ElementCounts): string | undefined {
  const lines: string[] = [];
  for (const member of MEMBERS) {
    const mine = member.elements(own);
    if (mine.some((e) => (counts.get(`${member.name} ${keyOf(member, e)}`) ?? 0) > 1)) return undefined;
    if (mine.length) lines.push(`add element inet ${TABLE} ${member.name} { ${mine.join(', ')} }`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * The table's chains and how many rules renderTable puts in each, read off
 * the rendered script itself (status compares the live table with it).
 */
export function tableChains(): Map<string, number> {
  const out = new Map<string, number>();
  let chain: string | undefined;
  for (const line of renderTable([], 1).split('\n')) {
    const open = /^\tchain (\S+) \{$/.exec(line)?.[1];
    if (open !== undefined) { chain = open; out.set(chain, 0); continue; }
    if (line === '\t}') chain = undefined;
    else if (chain !== undefined && /^\t\t(?!type |#)/.test(line)) out.set(chain, (out.get(chain) ?? 0) + 1);
  }
  return out;
}

export function renderDeleteTable(): string {
  return `table inet ${TABLE} {}\ndelete table inet ${TABLE}\n`;
}

/** First line of a VM's teardown script: the qemu hook shim reads the UUID from it. */
export const TEARDOWN_HEADER = '# virtwire teardown of VM';

/** How many VMs' forwards put each element in each of the table's maps and sets ("name element" → count; a map's element by its key). */
export type ElementCounts = Map<string, number>;

/** The elements each VM's forwards (one list per VM) put in the table, counted across VMs. */
export function countElements(perVm: ReadonlyArray<readonly ResolvedForward[]>): ElementCounts {
  const counts: ElementCounts = new Map();
  for (const fw of perVm) {
    for (const member of MEMBERS) {
      for (const k of new Set(member.elements(fw).map((e) => `${member.name} ${keyOf(member, e)}`))) counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * A VM's teardown: the nft script that deletes exactly the elements its
 * forwards (`own`) add to the table, for the qemu hook shim to run from the
 * shell at `stopped`/`release` — no Node on a destroy. `counts` covers every
 * VM in the table, this one included: an element another VM also puts there
 * (a hairpin pair of a guest address two entries name) must stay, so the
 * script is not exact and undefined is returned: Node's converge does that
 * teardown. nft deletes map elements by key; keys are unique per host (the
 * conflict checks), which is what makes deleting them alone exact.
 */
export function renderTeardown(uuid: string, own: readonly ResolvedForward[], counts: ElementCounts): string | undefined {
  const lines = [`${TEARDOWN_HEADER} ${uuid}`];
  for (const member of MEMBERS) {
    const mine = [...new Set(member.elements(own).map((e) => keyOf(member, e)))];
    if (mine.length === 0) continue;
    if (mine.some((k) => (counts.get(`${member.name} ${k}`) ?? 0) > 1)) return undefined;
    lines.push(`delete element inet ${TABLE} ${member.name} { ${mine.join(', ')} }`);
  }
  return `${lines.join('\n')}\n`;
}

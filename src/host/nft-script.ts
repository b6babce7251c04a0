import { createHash } from 'node:crypto';
import type { ResolvedForward } from '../model/forward.js';
import { formatIp, minimalCidrs, parseCidr, parseIp, type Cidr, type Family } from '../model/addr.js';

export const TABLE = 'virtwire';
/** The table's maps of forwards and sets of hairpin pairs, per family (status compares their live elements). */
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

/**
 * Map elements for one family: host port . proto . listen . source : guest
 * address . guest port. The port comes first on purpose: nft's lookup for
 * concatenated intervals (pipapo) narrows field by field, and nearly every
 * element has the same proto, listen and source, so a key led by those
 * carried all n elements through three fields — 1000 forwards cut the
 * new-connection rate to ~0.7× (bench/forward-path.ts). Led by the port, the
 * first field already leaves one element.
 */
export function forwardElements(forwards: readonly ResolvedForward[], family: 4 | 6): string[] {
  const any = family === 4 ? '0.0.0.0/0' : '::/0';
  const out: string[] = [];
  for (const f of forwards) {
    if (f.family !== family) continue;
    if (f.proto !== 'tcp' && f.proto !== 'udp') throw new Error(`invalid proto in ledger: ${String(f.proto)}`);
    const sources = f.from.length ? f.from.map((c) => cidr(c, family).text) : [any];
    const listen = f.listen ? addr(f.listen, family) : any;
    const guestAddr = addr(f.guestAddr, family);
    for (let p = f.host.lo; p <= f.host.hi; p++) {
      const guestPort = f.guest.lo + (p - f.host.lo);
      for (const s of sources) out.push(`${port(p)} . ${f.proto} . ${listen} . ${s} : ${guestAddr} . ${port(guestPort)}`);
    }
  }
  return out;
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

function block(kind: 'map' | 'set', name: string, type: string, elements: string[]): string {
  const body = elements.length ? `\n\t\telements = {\n\t\t\t${elements.join(',\n\t\t\t')}\n\t\t}` : '';
  return `\t${kind} ${name} {\n\t\ttype ${type}\n\t\tflags interval${body}\n\t}\n`;
}

/**
 * The whole `inet virtwire` table for the given forwards, as one nft script
 * that atomically replaces any previous version of the table ("add; delete;
 * add" in one transaction: there is never a moment without rules).
 */
export function renderTable(forwards: readonly ResolvedForward[], ctMark: number): string {
  const m = mark(ctMark);
  const dnat = (fam: 'ip' | 'ip6', map: string): string =>
    `meta l4proto { tcp, udp } fib daddr type local th dport . meta l4proto . ${fam} daddr . ${fam} saddr @${map} ct mark set ct mark | ${m} dnat ${fam} to th dport . meta l4proto . ${fam} daddr . ${fam} saddr map @${map}`;
  return [
    `table inet ${TABLE} {}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    block('map', FORWARD_MAP[4], 'inet_service . inet_proto . ipv4_addr . ipv4_addr : ipv4_addr . inet_service', forwardElements(forwards, 4)),
    block('map', FORWARD_MAP[6], 'inet_service . inet_proto . ipv6_addr . ipv6_addr : ipv6_addr . inet_service', forwardElements(forwards, 6)),
    block('set', HAIRPIN_SET[4], 'ipv4_addr . ipv4_addr', hairpinElements(forwards, 4)),
    block('set', HAIRPIN_SET[6], 'ipv6_addr . ipv6_addr', hairpinElements(forwards, 6)),
    '\t# Priority -105: just before the usual dstnat (-100), so a forward wins over other tools\' DNAT.',
    '\t# Connections from outside and from guests to a host address.',
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority -105; policy accept;',
    `\t\t${dnat('ip', FORWARD_MAP[4])}`,
    `\t\t${dnat('ip6', FORWARD_MAP[6])}`,
    '\t}',
    '\t# Connections the host itself makes to its own addresses (loopback is never forwarded).',
    '\tchain output {',
    '\t\ttype nat hook output priority -105; policy accept;',
    `\t\tip daddr != 127.0.0.0/8 ${dnat('ip', FORWARD_MAP[4])}`,
    `\t\tip6 daddr != ::1 ${dnat('ip6', FORWARD_MAP[6])}`,
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
  for (const fam of [4, 6] as const) {
    const map = forwardElements(own, fam);
    if (map.some((e) => (counts.get(`${FORWARD_MAP[fam]} ${e.split(' : ')[0]}`) ?? 0) > 1)) return undefined;
    if (map.length) lines.push(`add element inet ${TABLE} ${FORWARD_MAP[fam]} { ${map.join(', ')} }`);
    const pairs = hairpinElements(own, fam);
    if (pairs.some((e) => (counts.get(`${HAIRPIN_SET[fam]} ${e}`) ?? 0) > 1)) return undefined;
    if (pairs.length) lines.push(`add element inet ${TABLE} ${HAIRPIN_SET[fam]} { ${pairs.join(', ')} }`);
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

/** How many VMs' forwards put each element in each of the table's maps and sets ("map element" → count). */
export type ElementCounts = Map<string, number>;

const TEARDOWN_SETS = [4, 6].flatMap((fam) => [
  { name: FORWARD_MAP[fam as 4 | 6], elements: (fw: readonly ResolvedForward[]) => forwardElements(fw, fam as 4 | 6).map((e) => e.split(' : ')[0] as string) },
  { name: HAIRPIN_SET[fam as 4 | 6], elements: (fw: readonly ResolvedForward[]) => hairpinElements(fw, fam as 4 | 6) },
]);

/** The elements each VM's forwards (one list per VM) put in the table, counted across VMs. */
export function countElements(perVm: ReadonlyArray<readonly ResolvedForward[]>): ElementCounts {
  const counts: ElementCounts = new Map();
  for (const fw of perVm) {
    for (const { name, elements } of TEARDOWN_SETS) {
      for (const e of new Set(elements(fw))) counts.set(`${name} ${e}`, (counts.get(`${name} ${e}`) ?? 0) + 1);
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
  for (const { name, elements } of TEARDOWN_SETS) {
    const mine = [...new Set(elements(own))];
    if (mine.length === 0) continue;
    if (mine.some((e) => (counts.get(`${name} ${e}`) ?? 0) > 1)) return undefined;
    lines.push(`delete element inet ${TABLE} ${name} { ${mine.join(', ')} }`);
  }
  return `${lines.join('\n')}\n`;
}

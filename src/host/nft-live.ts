// The live `inet virtwire` table, read back (`nft -j list table`): the
// elements of its maps and sets, written in the syntax nft-script.ts renders
// them in, so what the ledger gives and what the kernel holds compare as text.
import type { Runner } from './run.js';
import { TABLE } from './nft-script.js';

/** The live table: each map's or set's elements (canonical text, see canonicalElement), and its chains with how many rules each holds. */
export interface LiveTable {
  elements: Map<string, Set<string>>;
  chains: Map<string, number>;
}

/** Reads the live table; undefined when there is none. Throws when nft itself fails. */
export async function readLiveTable(run: Runner): Promise<LiveTable | undefined> {
  const r = await run(['nft', '-j', 'list', 'table', 'inet', TABLE], { timeoutMs: 15_000 });
  if (r.exitCode !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return undefined;
    throw new Error(`nft -j list table inet ${TABLE} failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n')[0] ?? ''}`);
  }
  return parseLiveTable(r.stdout);
}

/** `nft -j list table` output → the table's elements and chains. Pure. */
export function parseLiveTable(json: string): LiveTable {
  type Named = { name?: string; type?: string | string[]; elem?: unknown[]; chain?: string };
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, Named | undefined>> };
  const out: LiveTable = { elements: new Map(), chains: new Map() };
  for (const item of doc.nftables ?? []) {
    const s = item.map ?? item.set;
    if (s?.name !== undefined) {
      const types = typeof s.type === 'string' ? [s.type] : s.type ?? [];
      out.elements.set(s.name, new Set((s.elem ?? []).map((e) => canonicalElement(memberText(e, types)))));
    }
    if (item.chain?.name !== undefined) out.chains.set(item.chain.name, out.chains.get(item.chain.name) ?? 0);
    if (item.rule?.chain !== undefined) out.chains.set(item.rule.chain, (out.chains.get(item.rule.chain) ?? 0) + 1);
  }
  return out;
}

/** nft ≥ 1.1 lists an inet_proto key component as its number in JSON; nft-script writes the name. */
const PROTO_NAMES: Readonly<Record<number, string>> = { 6: 'tcp', 17: 'udp' };

/** A set member or map element ("key : value"), its key components read with the set's key types. */
function memberText(e: unknown, keyTypes: readonly string[]): string {
  const unwrapped = (e as { elem?: { val?: unknown } } | null)?.elem;
  if (unwrapped && 'val' in unwrapped) return memberText(unwrapped.val, keyTypes); // with a counter or comment
  const [key, value] = Array.isArray(e) && e.length === 2 ? e : [e, undefined];
  const parts = (key as { concat?: unknown[] } | null)?.concat ?? [key];
  const keyText = parts.map((p, i) => (keyTypes[i] === 'inet_proto' && typeof p === 'number' ? PROTO_NAMES[p] ?? String(p) : elementText(p))).join(' . ');
  return value === undefined ? keyText : `${keyText} : ${elementText(value)}`;
}

/**
 * One value of nft's JSON in nft's own script syntax: a concatenation
 * "a . b", a prefix "addr/len", a range "a-b". Anything else comes out as
 * its JSON, which then matches nothing expected (and shows as extra).
 */
function elementText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  const o = e as { concat?: unknown[]; prefix?: { addr: unknown; len: unknown }; range?: unknown[] } | null;
  if (o?.concat) return o.concat.map(elementText).join(' . ');
  if (o?.prefix) return `${elementText(o.prefix.addr)}/${elementText(o.prefix.len)}`;
  if (o?.range?.length === 2) return `${elementText(o.range[0])}-${elementText(o.range[1])}`;
  return JSON.stringify(e);
}

/**
 * An element as text, in the one spelling both sides share: nft lists a
 * single-address prefix (x/32, x/128) as the bare address, so both sides
 * drop it. Apply to the rendered elements before comparing with the live ones.
 */
export function canonicalElement(text: string): string {
  return text.split(' ').map((w) => (/^[0-9.]+\/32$/.test(w) || /^[0-9a-f:.]*:[0-9a-f:.]*\/128$/i.test(w) ? w.slice(0, w.lastIndexOf('/')) : w)).join(' ');
}

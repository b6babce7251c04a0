// The live `inet virtwire` table, read back (`nft -j list table`): the
// elements of its maps and sets, written in the syntax nft-script.ts renders
// them in, so what the ledger gives and what the kernel holds compare as text.
import type { Runner } from './run.js';
import { TABLE } from './nft-script.js';

/** The live table: each map's or set's elements (canonical text, see canonicalElement), and its chains. */
export interface LiveTable {
  elements: Map<string, Set<string>>;
  chains: Set<string>;
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
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, { name?: string; elem?: unknown[] } | undefined>> };
  const out: LiveTable = { elements: new Map(), chains: new Set() };
  for (const item of doc.nftables ?? []) {
    const s = item.map ?? item.set;
    if (s?.name !== undefined) out.elements.set(s.name, new Set((s.elem ?? []).map((e) => canonicalElement(elementText(e)))));
    if (item.chain?.name !== undefined) out.chains.add(item.chain.name);
  }
  return out;
}

/**
 * One element of nft's JSON as nft's own script syntax: a concatenation
 * "a . b", a map element "key : value", a prefix "addr/len", a range "a-b".
 * Anything else comes out as its JSON, which then matches nothing expected.
 */
function elementText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  if (Array.isArray(e) && e.length === 2) return `${elementText(e[0])} : ${elementText(e[1])}`;
  const o = e as { concat?: unknown[]; prefix?: { addr: unknown; len: unknown }; range?: unknown[]; elem?: { val?: unknown } } | null;
  if (o?.concat) return o.concat.map(elementText).join(' . ');
  if (o?.prefix) return `${elementText(o.prefix.addr)}/${elementText(o.prefix.len)}`;
  if (o?.range?.length === 2) return `${elementText(o.range[0])}-${elementText(o.range[1])}`;
  if (o?.elem && 'val' in o.elem) return elementText(o.elem.val); // an element with a counter or comment
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

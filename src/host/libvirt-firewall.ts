import { realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Runner } from './run.js';
import { mustRun } from './run.js';

/**
 * libvirt rejects new connections into a NAT network's bridge unless they
 * are replies. A DNAT'd connection is new, so it needs an accept placed in
 * libvirt's own rules, ahead of its reject (a reject in any table is final):
 *  - iptables backend (libvirt < 10.4, Debian 12): filter FORWARD, before the LIBVIRT_FW* jumps;
 *  - nftables backend (libvirt >= 10.4): chain guest_input of table ip/ip6 libvirt_network.
 * The accept is one generic rule matching the conntrack mark virtwire sets
 * on connections it DNATs, so it admits exactly virtwire's forwards.
 */
import type { AcceptTarget } from '../model/host.js';

export type { AcceptTarget };

export function targetName(t: AcceptTarget): string {
  return t.backend === 'nftables' ? `nft ${t.family === 4 ? 'ip' : 'ip6'} libvirt_network guest_input` : `${t.family === 4 ? 'iptables' : 'ip6tables'} filter FORWARD`;
}

export function sameTarget(a: AcceptTarget, b: AcceptTarget): boolean {
  return a.backend === b.backend && a.family === b.family;
}

function hexMark(mark: number): string {
  return `0x${mark.toString(16).padStart(8, '0')}`;
}

/** The comment that identifies virtwire's accept (and the mark it was made for). */
export function acceptComment(mark: number): string {
  return `virtwire:mark=${hexMark(mark)}`;
}

const OURS = /virtwire:mark=0x[0-9a-f]{8}/;

/** A libvirt firewall chain found live, with its listing: what it says of virtwire's accept, read once. */
export interface TargetProbe {
  target: AcceptTarget;
  /** nft's JSON listing of guest_input, or `iptables -S` of the filter table. */
  listing: string;
}

/** The command that lists a target's rules; it succeeds only while the chain exists. */
function listCommand(t: AcceptTarget): string[] {
  return t.backend === 'nftables'
    ? ['nft', '-a', '-j', 'list', 'chain', nftFamily(t), 'libvirt_network', 'guest_input']
    : [iptablesTool(t), '-w', '-S'];
}

const ALL_TARGETS: readonly AcceptTarget[] = [
  { backend: 'nftables', family: 4 }, { backend: 'nftables', family: 6 },
  { backend: 'iptables', family: 4 }, { backend: 'iptables', family: 6 },
];

const PROBE_MARK = '@@virtwire-probe';

/**
 * The four listings in one shell, each followed by a line with its index and
 * exit status: one process for Node to start instead of four (starting one
 * from a big Node process costs ~2–3 ms of its time). A fixed script: no
 * value from anywhere goes into it.
 */
const PROBE_SCRIPT = ALL_TARGETS.map((t, i) => `${listCommand(t).join(' ')} 2>/dev/null; printf '\\n${PROBE_MARK} ${i} %s\\n' "$?"`).join('\n');

/**
 * Which libvirt firewall chains exist right now, each with its rules: one
 * read per chain. Detected from the live rules, never from which binaries
 * exist (iptables: libvirt's LIBVIRT_FWI chain is there).
 */
export async function probeTargets(run: Runner): Promise<TargetProbe[]> {
  const r = await run(['sh', '-c', PROBE_SCRIPT], { timeoutMs: 30_000 });
  const out: TargetProbe[] = [];
  let listing: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = new RegExp(`^${PROBE_MARK} (\\d) (\\d+)$`).exec(line);
    if (!m) { listing.push(line); continue; }
    const target = ALL_TARGETS[Number(m[1])];
    const text = `${listing.join('\n').trim()}\n`;
    listing = [];
    if (!target || m[2] !== '0') continue;
    if (target.backend === 'iptables' && !/^-N LIBVIRT_FWI$/m.test(text)) continue;
    out.push({ target, listing: text });
  }
  return out;
}

/** Which libvirt firewall chains exist right now. */
export async function detectTargets(run: Runner): Promise<AcceptTarget[]> {
  return (await probeTargets(run)).map((p) => p.target);
}

// ---- the quick look through the watcher's nft session -----------------------

/**
 * What lists nft tables and chains with no process: the watcher's session
 * (host/nft-session.ts), whose nft runs with -a: each chain and rule line
 * ends in its handle (`# handle N`).
 */
export interface NftLister {
  list(command: string): Promise<{ ok: boolean; output: string }>;
}

/** Where the hooks' PATH finds iptables and ip6tables (host/run.ts). */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * Which iptables the hooks' PATH runs: 'nft' (iptables-nft, whose rules nft
 * lists too), 'absent' (none: no iptables backend can be in use, as
 * probeTargets also finds), 'other' (iptables-legacy, which nft cannot see).
 */
export function xtablesVariant(tool: 'iptables' | 'ip6tables', dirs: readonly string[] = SBIN_DIRS): 'nft' | 'absent' | 'other' {
  for (const dir of dirs) {
    let real: string;
    try { real = realpathSync(join(dir, tool)); } catch { continue; }
    return basename(real) === 'xtables-nft-multi' ? 'nft' : 'other';
  }
  return 'absent';
}

/** A rule line of nft's text listing: its text, and its handle where the listing carries handles (nft -a). */
export interface ListedRule { text: string; handle?: number }

const LISTED_HANDLE = / # handle (\d+)$/;

/**
 * The rules of CHAIN in nft's text listing of its table or chain, in order
 * (the chain's own declarations left out); undefined when the chain is not in
 * the listing.
 */
export function chainRuleLines(listing: string, chain: string): ListedRule[] | undefined {
  const lines = listing.split('\n');
  const start = lines.findIndex((l) => l.replace(LISTED_HANDLE, '') === `\tchain ${chain} {`);
  if (start < 0) return undefined;
  const rules: ListedRule[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!line.startsWith('\t\t')) break; // "\t}": the chain's end
    const handle = LISTED_HANDLE.exec(line);
    const text = line.replace(LISTED_HANDLE, '').trim();
    if (text && !/^(?:type|policy|comment|devices) /.test(text)) rules.push(handle ? { text, handle: Number(handle[1]) } : { text });
  }
  return rules;
}

/**
 * iptables-nft's form of iptablesAcceptSpec in nft's listing: the mark it is
 * for. nft does not show the comment match, so a rule is known by its match
 * alone — one that accepts exactly what virtwire's does counts as it.
 */
const IPTABLES_ACCEPT_AS_NFT = /^ct mark (?:and|&) 0x([0-9a-f]+) == 0x([0-9a-f]+) ct status dnat .*\baccept\b/;

function iptablesNftAcceptMark(rule: string): number | undefined {
  const m = IPTABLES_ACCEPT_AS_NFT.exec(rule);
  return m && m[1] === m[2] ? Number.parseInt(m[1] as string, 16) : undefined;
}

/**
 * Whether a rule, as nft prints it, is virtwire's accept: the nftables one
 * by its comment, the iptables one by its match (iptables-nft's comment
 * does not show).
 */
export function isVirtwireAcceptRule(rule: string): boolean {
  return nftAcceptMark(rule) !== undefined || iptablesNftAcceptMark(rule) !== undefined;
}

/** Whether RULES hold virtwire's accept for MARK alone and first; `markOf` reads the mark a rule is virtwire's accept for. */
function firstAndAlone(rules: readonly string[], mark: number, markOf: (rule: string) => number | undefined): boolean {
  return markOf(rules[0] ?? '') === mark && rules.filter((r) => markOf(r) !== undefined).length === 1;
}

const NFT_ACCEPT_COMMENT = /comment "virtwire:mark=0x([0-9a-f]{8})"$/;

/** The mark a guest_input rule is virtwire's accept for (by its comment, as readAccept tells). */
function nftAcceptMark(rule: string): number | undefined {
  const m = NFT_ACCEPT_COMMENT.exec(rule);
  return m ? Number.parseInt(m[1] as string, 16) : undefined;
}

/** A guest_input rule as nftAcceptScript reads it: its handle and its comment (nft prints a rule's comment last). */
function nftRuleOf(rule: ListedRule): NftRule | undefined {
  if (rule.handle === undefined) return undefined;
  const comment = /\bcomment "([^"]*)"$/.exec(rule.text)?.[1];
  return comment === undefined ? { handle: rule.handle } : { handle: rule.handle, comment };
}

/**
 * Whether every libvirt firewall chain present already has virtwire's accept
 * for MARK alone and first, read through the watcher's nft session: no
 * process, where probeTargets starts five. Returns the targets present when
 * so (what setAccept would leave as it is); undefined otherwise. Read only:
 * placeAcceptsThroughSession is what a start runs.
 */
export async function acceptsInPlace(nft: NftLister, mark: number, variant = xtablesVariant): Promise<AcceptTarget[] | undefined> {
  const seen = await lookThroughSession(nft, mark, variant);
  return seen && seen.scripts.length === 0 ? seen.targets : undefined;
}

/** What runs an nft script as one transaction with no process: the watcher's session (host/nft-session.ts). */
export interface NftScripter extends NftLister {
  run(script: string): Promise<{ ok: boolean; errors: string }>;
}

/**
 * virtwire's accept first and alone in every libvirt firewall chain present,
 * through the watcher's nft session, with no process (probeTargets and
 * setAccept start five or more; they took 17–25 ms of a start here). The
 * nftables chains (libvirt >= 10.4) are read with their rule handles and put
 * right by the script setAccept would run — the accept inserted where
 * missing, moved first where libvirt's rules came back ahead of it (libvirt
 * rebuilds them on a reload of the daemon or the network), one of another
 * mark deleted — all in one transaction: a rule gone in between (a handle
 * nft no longer knows) fails the whole of it. The iptables-nft chains are
 * only looked at: virtwire's accept there is an iptables rule (a comment
 * match, which nft cannot write). Returns the targets present and those it
 * changed; undefined when anything is left (an iptables accept to place,
 * legacy iptables, which nft does not see, an error), which the caller then
 * reads and places with processes.
 */
export async function placeAcceptsThroughSession(nft: NftScripter, mark: number, variant = xtablesVariant): Promise<{ targets: AcceptTarget[]; placed: AcceptTarget[] } | undefined> {
  const seen = await lookThroughSession(nft, mark, variant);
  if (!seen) return undefined;
  if (seen.scripts.length > 0) {
    const r = await nft.run(seen.scripts.map((s) => s.script).join('')).catch(() => undefined);
    if (!r?.ok) return undefined;
  }
  return { targets: seen.targets, placed: seen.scripts.map((s) => s.target) };
}

/**
 * The libvirt firewall chains present, in probeTargets's order (host.json
 * records them so), and for each nftables one whose accept is not in place,
 * the script that puts it right; undefined when an iptables chain needs
 * setAccept (or anything cannot be told through the session).
 */
async function lookThroughSession(nft: NftLister, mark: number, variant: typeof xtablesVariant): Promise<{ targets: AcceptTarget[]; scripts: Array<{ target: AcceptTarget; script: string }> } | undefined> {
  const targets: AcceptTarget[] = [];
  const scripts: Array<{ target: AcceptTarget; script: string }> = [];
  for (const family of [4, 6] as const) {
    const guestInput = await listed(nft, `list chain ${family === 4 ? 'ip' : 'ip6'} libvirt_network guest_input`);
    if (guestInput === undefined) return undefined;
    if (guestInput === false) continue;
    const rules = chainRuleLines(guestInput, 'guest_input')?.map(nftRuleOf);
    if (!rules || rules.some((r) => r === undefined)) return undefined;
    const target: AcceptTarget = { backend: 'nftables', family };
    const script = nftAcceptScript(target, rules as NftRule[], mark);
    if (script) scripts.push({ target, script });
    targets.push(target);
  }
  for (const family of [4, 6] as const) {
    const kind = variant(family === 4 ? 'iptables' : 'ip6tables');
    if (kind === 'other') return undefined;
    if (kind === 'absent') continue;
    const filter = await listed(nft, `list table ${family === 4 ? 'ip' : 'ip6'} filter`);
    if (filter === undefined) return undefined;
    // No filter table, or no LIBVIRT_FWI in it: libvirt's iptables rules are not there (probeTargets's test).
    if (filter === false || chainRuleLines(filter, 'LIBVIRT_FWI') === undefined) continue;
    const forward = chainRuleLines(filter, 'FORWARD')?.map((r) => r.text);
    if (!forward || !firstAndAlone(forward, mark, iptablesNftAcceptMark)) return undefined;
    targets.push({ backend: 'iptables', family });
  }
  return { targets, scripts };
}

/** A listing through the session: its text, false when nft says the table or chain is not there, undefined on anything else. */
async function listed(nft: NftLister, command: string): Promise<string | false | undefined> {
  const r = await nft.list(command).catch(() => undefined);
  if (!r) return undefined;
  if (r.ok) return r.output;
  return /Error: No such file or directory/.test(r.output) ? false : undefined;
}

// ---- nftables backend -------------------------------------------------------

interface NftRule { handle: number; comment?: string }

function nftFamily(t: AcceptTarget): 'ip' | 'ip6' {
  return t.family === 4 ? 'ip' : 'ip6';
}

export function parseNftChainRules(json: string): NftRule[] {
  const doc = JSON.parse(json) as { nftables?: Array<{ rule?: { handle: number; comment?: string } }> };
  return (doc.nftables ?? []).flatMap((e) => (e.rule ? [{ handle: e.rule.handle, comment: e.rule.comment }] : []));
}

/** Script that puts exactly one accept at the top of guest_input, in one transaction; '' if it is already so. */
export function nftAcceptScript(t: AcceptTarget, rules: NftRule[], mark: number | null): string {
  const fam = nftFamily(t);
  const ours = rules.filter((r) => r.comment !== undefined && OURS.test(r.comment));
  const want = mark === null ? undefined : acceptComment(mark);
  if (want && ours.length === 1 && rules[0]?.comment === want) return '';
  if (!want && ours.length === 0) return '';
  const lines = ours.map((r) => `delete rule ${fam} libvirt_network guest_input handle ${r.handle}`);
  if (want) {
    const m = hexMark(mark as number);
    lines.push(`insert rule ${fam} libvirt_network guest_input ct mark & ${m} == ${m} ct status dnat counter accept comment "${want}"`);
  }
  return `${lines.join('\n')}\n`;
}

// ---- iptables backend -------------------------------------------------------

export function iptablesAcceptSpec(mark: number): string[] {
  const m = hexMark(mark);
  return ['-m', 'connmark', '--mark', `${m}/${m}`, '-m', 'conntrack', '--ctstate', 'DNAT', '-m', 'comment', '--comment', acceptComment(mark), '-j', 'ACCEPT'];
}

/** iptables-restore --noflush input that leaves exactly one accept first in FORWARD; '' if already so. */
export function iptablesAcceptScript(listing: string, mark: number | null): string {
  // iptables -S prints the comment in quotes; compare without them.
  const rules = listing.split('\n').filter((l) => l.startsWith('-A FORWARD ')).map((l) => l.replace(/"/g, ''));
  const ours = rules.filter((l) => OURS.test(l));
  const want = mark === null ? undefined : `-A FORWARD ${iptablesAcceptSpec(mark).join(' ')}`;
  if (want && ours.length === 1 && rules[0] === want) return '';
  if (!want && ours.length === 0) return '';
  const lines = ['*filter', ...ours.map((l) => l.replace(/^-A /, '-D '))];
  if (want) lines.push(`-I FORWARD 1 ${iptablesAcceptSpec(mark as number).join(' ')}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** What a target's rules say of virtwire's accept: the script that would put it right ('' = in place), and whether a rule for `mark` is there at all. */
interface AcceptReading { script: string; present: boolean }

/** Reads a target's rules (or takes the listing already read); undefined when its chain is gone (a stopped network: nothing to hold the accept). */
async function readAccept(run: Runner, t: AcceptTarget, mark: number | null, listing?: string): Promise<AcceptReading | undefined> {
  const want = mark === null ? undefined : acceptComment(mark);
  let text = listing;
  if (text === undefined) {
    const r = await run(listCommand(t));
    if (r.exitCode !== 0) {
      if (t.backend === 'nftables' || mark === null) return undefined;
      throw new Error(`${iptablesTool(t)} -S failed: ${r.stderr.trim()}`);
    }
    text = r.stdout;
  }
  if (t.backend === 'nftables') {
    const rules = parseNftChainRules(text);
    return { script: nftAcceptScript(t, rules, mark), present: rules.some((x) => want !== undefined && x.comment === want) };
  }
  return { script: iptablesAcceptScript(text, mark), present: want !== undefined && text.includes(want) };
}

function iptablesTool(t: AcceptTarget): 'iptables' | 'ip6tables' {
  return t.family === 4 ? 'iptables' : 'ip6tables';
}

/**
 * Makes the accept be (mark) or not be (null) the first rule of the target,
 * atomically. Returns true if anything changed. `listing`: the target's
 * rules as probeTargets just read them (else they are read here).
 */
export async function setAccept(run: Runner, t: AcceptTarget, mark: number | null, listing?: string): Promise<boolean> {
  const a = await readAccept(run, t, mark, listing);
  if (!a?.script) return false;
  await mustRun(run, t.backend === 'nftables' ? ['nft', '-f', '-'] : [`${iptablesTool(t)}-restore`, '-w', '--noflush'], a.script);
  return true;
}

/**
 * Whether virtwire's accept for `mark` is where setAccept puts it: 'in place'
 * (alone and first), 'missing', or 'misplaced' (not first, doubled, or next
 * to one for another mark); 'no chain' when the chain is gone. Reads only.
 */
export async function acceptState(run: Runner, t: AcceptTarget, mark: number): Promise<'in place' | 'missing' | 'misplaced' | 'no chain'> {
  const a = await readAccept(run, t, mark);
  return !a ? 'no chain' : a.script === '' ? 'in place' : a.present ? 'misplaced' : 'missing';
}

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

/** Which libvirt firewall chains exist right now: detected from the live rules, never from which binaries exist. */
export async function detectTargets(run: Runner): Promise<AcceptTarget[]> {
  const probes: Array<[AcceptTarget, string[]]> = [
    [{ backend: 'nftables', family: 4 }, ['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input']],
    [{ backend: 'nftables', family: 6 }, ['nft', 'list', 'chain', 'ip6', 'libvirt_network', 'guest_input']],
    [{ backend: 'iptables', family: 4 }, ['iptables', '-w', '-n', '-L', 'LIBVIRT_FWI']],
    [{ backend: 'iptables', family: 6 }, ['ip6tables', '-w', '-n', '-L', 'LIBVIRT_FWI']],
  ];
  const results = await Promise.all(probes.map(([, argv]) => run(argv, { timeoutMs: 15_000 })));
  return probes.filter((_, i) => results[i]?.exitCode === 0).map(([t]) => t);
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

/** Reads a target's rules; undefined when its chain is gone (a stopped network: nothing to hold the accept). */
async function readAccept(run: Runner, t: AcceptTarget, mark: number | null): Promise<AcceptReading | undefined> {
  const want = mark === null ? undefined : acceptComment(mark);
  if (t.backend === 'nftables') {
    const r = await run(['nft', '-a', '-j', 'list', 'chain', nftFamily(t), 'libvirt_network', 'guest_input']);
    if (r.exitCode !== 0) return undefined;
    const rules = parseNftChainRules(r.stdout);
    return { script: nftAcceptScript(t, rules, mark), present: rules.some((x) => want !== undefined && x.comment === want) };
  }
  const tool = iptablesTool(t);
  const r = await run([tool, '-w', '-S', 'FORWARD']);
  if (r.exitCode !== 0) {
    if (mark === null) return undefined;
    throw new Error(`${tool} -S FORWARD failed: ${r.stderr.trim()}`);
  }
  return { script: iptablesAcceptScript(r.stdout, mark), present: want !== undefined && r.stdout.includes(want) };
}

function iptablesTool(t: AcceptTarget): 'iptables' | 'ip6tables' {
  return t.family === 4 ? 'iptables' : 'ip6tables';
}

/**
 * Makes the accept be (mark) or not be (null) the first rule of the target,
 * atomically. Returns true if anything changed.
 */
export async function setAccept(run: Runner, t: AcceptTarget, mark: number | null): Promise<boolean> {
  const a = await readAccept(run, t, mark);
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

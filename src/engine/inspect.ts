// The host measured against the ledger, VM by VM, reading only: each
// applied forward an element of virtwire's nft maps, its hairpin pair and
// the table's chains in place, virtwire's accept first in libvirt's
// firewall. What `virtwire status` shows, and what the coming watcher will
// check. No libvirt here: the caller says which VMs run.
import type { Runner } from '../host/run.js';
import { HAIRPIN_SET, MEMBERS, TABLE, forwardMapOf, hairpinElements, tableChains } from '../host/nft-script.js';
import { canonicalElement, readLiveTable, type LiveTable } from '../host/nft-live.js';
import { acceptState, detectTargets, targetName, type AcceptTarget } from '../host/libvirt-firewall.js';
import { entryForwards, entryLinks, type CorruptEntry, type Ledger, type VmEntry } from '../state/ledger.js';
import { linkMismatch, readLiveLink, type LiveLink } from '../host/link-live.js';
import { describeLink } from '../model/host.js';
import { entryIsLive } from '../state/liveness.js';
import { loadConfig, DEFAULT_CONFIG } from '../policy/config.js';
import { describeForward } from '../plan/describe.js';
import type { ResolvedForward } from '../model/forward.js';
import { formatIp, parseIp } from '../model/addr.js';
import { quoted, shellWord } from '../errors.js';

/** The ledger and the live host, read once for any number of VMs. */
export interface HostView {
  entries: VmEntry[];
  corrupt: CorruptEntry[];
  /** undefined: there is no `inet virtwire` table. */
  table: LiveTable | undefined;
  /** Each libvirt firewall chain present, and how virtwire's accept stands in it. */
  accepts: Array<{ target: AcceptTarget; state: Awaited<ReturnType<typeof acceptState>> }>;
  /** The conntrack mark the accepts must carry: the one converge applied (host.json), else virtwire.yaml's. */
  mark: number;
  /** The host links the entries name, as the kernel has them (undefined: missing). */
  links: Map<string, LiveLink | undefined>;
}

export async function readHostView(run: Runner, ledger: Ledger, configFile: string): Promise<HostView> {
  const { entries, corrupt } = ledger.readVms();
  const mark = ledger.getHost().mark ?? configuredMark(configFile);
  const table = await readLiveTable(run);
  const accepts = await Promise.all((await detectTargets(run)).map(async (target) => ({ target, state: await acceptState(run, target, mark) })));
  const links = new Map<string, LiveLink | undefined>();
  for (const name of new Set(entries.flatMap(entryLinks).map((l) => l.name))) links.set(name, await readLiveLink(run, name));
  return { entries, corrupt, table, accepts, mark, links };
}

function configuredMark(configFile: string): number {
  try {
    return loadConfig(configFile).firewall.mark;
  } catch {
    return DEFAULT_CONFIG.firewall.mark; // a broken virtwire.yaml is for reconcile and apply to report
  }
}

/** `not matching`: see problems, one line each naming the VM (and NIC) and the fix; `not running` may have problems too (leftovers). */
export type HostState = 'ok' | 'not matching' | 'not running';

export interface HostStatus {
  state: HostState;
  problems: string[];
}

/** What the caller knows of a VM from libvirt and the templates. */
export interface VmFacts {
  uuid: string;
  name: string;
  /** Running or paused: QEMU holds its addresses. */
  running: boolean;
  /** The forwards the templates give it now (how many). */
  wanted: number;
}

const RECONCILE = 'run "virtwire reconcile"';

/** How the host stands for one VM against its ledger entry. */
export function vmHostStatus(view: HostView, vm: VmFacts): HostStatus {
  const who = `VM ${quoted(vm.name)}`;
  const entry = view.entries.find((e) => e.uuid === vm.uuid);
  if (!vm.running) {
    // A stop whose hook did not run leaves its forwards on the host, aimed at an address another VM may get.
    const left = entry && !entryIsLive(entry, new Set()) ? entryForwards(entry).length : 0;
    return { state: 'not running', problems: left ? [`${who}: does not run, but the ledger still holds its ${left} forward(s) (its stop hook did not run); ${RECONCILE} removes them`] : [] };
  }
  const apply = `"virtwire apply ${shellWord(vm.name, 'VM')}"`;
  const corrupt = view.corrupt.find((c) => c.uuid === vm.uuid);
  const problems: string[] = [];
  if (!entry && corrupt) {
    problems.push(`${who}: its ledger file ${corrupt.file} is unreadable (${corrupt.reason}); ${RECONCILE} rebuilds it from the running VM`);
  } else if (!entry) {
    if (vm.wanted > 0) problems.push(`${who}: runs with no ledger entry although the templates give it ${vm.wanted} forward(s) (started before virtwire was installed, or without its hooks); restart it or run ${apply}`);
  } else if (entry.state === 'reserved') {
    problems.push(`${who}: its forwards are reserved, not applied (its start is under way, or its start hook was interrupted); restart it or run ${apply}`);
  } else {
    problems.push(...entryProblems(view, entry, who));
  }
  return { state: problems.length ? 'not matching' : 'ok', problems };
}

/** One applied entry against the live table and firewall. */
function entryProblems(view: HostView, entry: VmEntry, who: string): string[] {
  const forwards = entryForwards(entry);
  const links = entryLinks(entry).flatMap((l) => {
    const live = view.links.get(l.name);
    if (!live) return [`${who}: its ${describeLink(l)} is missing; ${RECONCILE} creates it again`];
    const bad = linkMismatch(l, live);
    return bad ? [`${who}: its ${describeLink(l)} is not what it should be: ${bad}; rename or remove that link, then ${RECONCILE}`] : [];
  });
  if (forwards.length === 0) return links;
  if (!view.table) return [...links, `${who}: the nft table inet ${TABLE} is missing, so none of its ${forwards.length} forward(s) is applied; ${RECONCILE}`];
  if (!view.table) return [`${who}: the nft table inet ${TABLE} is missing, so none of its ${forwards.length} forward(s) is applied; ${RECONCILE}`];
  const mine = new Set(forwards.map(guestKey));
  return [
    ...links,
    ...chainProblems(view.table, who),
    ...elementProblems(view.table, forwards, who),
    ...acceptProblems(view, forwards, who),
    ...extraElements(view).filter((x) => x.guest !== undefined && mine.has(x.guest))
      .map((x) => `${who}: nft ${x.kind} ${x.set} holds ${x.element}, which its ledger entry does not have; ${RECONCILE}`),
  ];
}

/** The table's chains, each with the rules virtwire renders in it. */
function chainProblems(table: LiveTable, who: string): string[] {
  const out: string[] = [];
  for (const [chain, rules] of tableChains()) {
    const live = table.chains.get(chain);
    if (live === undefined) out.push(`${who}: nft chain ${chain} is missing from table inet ${TABLE}, so its forwards do not work; ${RECONCILE}`);
    else if (live !== rules) out.push(`${who}: nft chain ${chain} of table inet ${TABLE} holds ${live} rule(s), virtwire puts ${rules}; ${RECONCILE}`);
  }
  return out;
}

/** Each forward's elements in its family's map, and the VM's hairpin pairs. */
function elementProblems(table: LiveTable, forwards: readonly ResolvedForward[], who: string): string[] {
  const out: string[] = [];
  for (const f of forwards) {
    const map = forwardMapOf(f);
    const want = map.elements([f]).map(canonicalElement);
    const have = table.elements.get(map.name);
    const missing = want.filter((e) => !have?.has(e));
    if (missing.length === 0) continue;
    const count = missing.length === want.length ? '' : ` (${missing.length} of its ${want.length} elements)`;
    out.push(`${who} NIC ${f.nic}: forward ${describeForward(f)} is missing from nft map ${map.name}${count}; ${RECONCILE}`);
  }
  for (const family of families(forwards)) {
    const have = table.elements.get(HAIRPIN_SET[family]);
    for (const e of hairpinElements(forwards, family).map(canonicalElement)) {
      if (!have?.has(e)) out.push(`${who}: hairpin pair ${e} is missing from nft set ${HAIRPIN_SET[family]} (neighbour guests get no reply through its host ports); ${RECONCILE}`);
    }
  }
  return out;
}

/** virtwire's accept in each libvirt firewall chain of a family the VM's forwards use. */
function acceptProblems(view: HostView, forwards: readonly ResolvedForward[], who: string): string[] {
  const used = families(forwards);
  return view.accepts
    .filter(({ target, state }) => used.includes(target.family) && (state === 'missing' || state === 'misplaced'))
    .map(({ target, state }) => `${who}: virtwire's accept ${state === 'missing' ? 'is missing from' : 'is not alone and first in'} ${targetName(target)}, so libvirt's firewall can reject the connections its forwards bring; ${RECONCILE}`);
}

function families(forwards: readonly ResolvedForward[]): Array<4 | 6> {
  return [...new Set(forwards.map((f) => f.family))].sort();
}

/**
 * Elements of the live table that no applied entry accounts for and that
 * go to no applied VM's guest address (those are reported with that VM):
 * host-wide leftovers, one line each.
 */
export function strayElements(view: HostView): string[] {
  const owned = new Set(view.entries.filter((e) => e.state === 'applied').flatMap((e) => entryForwards(e).map(guestKey)));
  return extraElements(view)
    .filter((x) => x.guest === undefined || !owned.has(x.guest))
    .map((x) => `nft ${x.kind} ${x.set} holds ${x.element}, which no ledger entry has (left behind, or added by hand); ${RECONCILE}`);
}

interface ExtraElement { kind: 'map' | 'set'; set: string; element: string; guest?: string }

/** Live elements of virtwire's maps and sets that the applied entries do not give. */
function extraElements(view: HostView): ExtraElement[] {
  if (!view.table) return [];
  const forwards = view.entries.filter((e) => e.state === 'applied').flatMap(entryForwards);
  const out: ExtraElement[] = [];
  for (const member of MEMBERS) {
    const want = new Set(member.elements(forwards).map(canonicalElement));
    for (const e of view.table.elements.get(member.name) ?? []) {
      if (!want.has(e)) out.push({ kind: member.kind, set: member.name, element: e, guest: member.guestOf(e) });
    }
  }
  return out;
}

/** A forward's guest address as the live elements spell it (canonical text). */
function guestKey(f: ResolvedForward): string {
  const ip = parseIp(f.guestAddr);
  return typeof ip === 'string' ? f.guestAddr : formatIp(ip);
}

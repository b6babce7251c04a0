import type { Runner } from '../host/run.js';
import { mustRun } from '../host/run.js';
import { renderTable, renderAdditions, renderDeleteTable, renderTeardown, countElements, tableLayout, TABLE, type ElementCounts } from '../host/nft-script.js';
import type { ResolvedForward } from '../model/forward.js';
import { placeAcceptsThroughSession, detectTargets, probeTargets, setAccept, sameTarget, targetName, type AcceptTarget } from '../host/libvirt-firewall.js';
import { LEDGER_SCHEMA, entryForwards, entryHasStartWork, entryLinks, entryVfs, type Ledger, type VmEntry } from '../state/ledger.js';
import { convergeLinks } from './links.js';
import { convergeVfs } from './vfs.js';
import { entryIsLive } from '../state/liveness.js';
import { quoted } from '../errors.js';
import type { NftSession } from '../host/nft-session.js';

export interface HostDeps {
  run: Runner;
  ledger: Ledger;
  mark: number;
  /** UUIDs libvirt runs now: entries of VMs that are gone (a crash skipped their release) are dropped first. */
  running?: ReadonlySet<string>;
  /**
   * An entry to apply as if it were already recorded as applied: `start`
   * records it only once the host has it, so a hook killed in between leaves
   * an entry that is still "reserved" and nothing applied that is not tracked.
   */
  include?: VmEntry;
  /** The watcher's long-lived nft: the table's scripts go through it (no process to start, no RCU wait at its exit). */
  nft?: NftSession;
}

/**
 * Makes the host match the ledger: the whole `inet virtwire` table in one
 * nft transaction, and virtwire's accept first in every libvirt firewall
 * chain present. With no forwards left, removes both. Idempotent, so every
 * crash point converges at the next call. The caller holds the ledger lock
 * and has dealt with corrupt entries first (engine/reserve.ts rebuildCorrupt).
 * Returns what it did, for the log.
 */
export async function converge(deps: HostDeps): Promise<string[]> {
  const { run, ledger, mark, include } = deps;
  const done: string[] = [];
  let droppedAny = false;
  let entries = ledger.listVms().filter((e) => e.uuid !== include?.uuid);
  if (deps.running) {
    const running = deps.running;
    for (const e of entries.filter((x) => !entryIsLive(x, running))) {
      ledger.removeVm(e.uuid);
      done.push(`dropped the entry of ${quoted(e.name)}: the VM no longer runs`);
      droppedAny = true;
    }
    entries = entries.filter((x) => entryIsLive(x, running));
  }
  const applied = [...entries.filter((e) => e.state === 'applied'), ...(include ? [include] : [])];
  const forwards = applied.flatMap(entryForwards);
  const counts = countElements(applied.map(entryForwards));
  // Before the table gets the elements: a hook killed right after nft leaves a teardown that removes them.
  writeTeardowns(ledger, [...entries, ...(include ? [include] : [])], applied, counts);
  if (forwards.length > 0) {
    const host = ledger.getHost();
    const layout = tableLayout(mark);
    // The table holds exactly the other entries' elements (none dropped, none half-applied, this VM's
    // not there yet) and is of this layout: this VM's may simply be added. Anything else: written whole.
    const othersAsRecorded = include !== undefined && !droppedAny && entries.every((e) => e.state === 'applied')
      && ledger.getVm(include.uuid)?.state !== 'applied' && host.table && host.layout === layout;
    const additions = othersAsRecorded ? renderAdditions(entryForwards(include as VmEntry), counts) : undefined;
    // The table and libvirt's chains at once: they are independent, and each may take several
    // processes' time (a whole write, which deletes the old table, also waits out an RCU grace
    // period when its nft exits: host/nft-session.ts).
    const [written, accepts] = await Promise.all([writeTable(deps, forwards, additions), placeAccepts(deps)]);
    done.push(written, ...accepts.notes);
    ledger.putHost({ ...ledger.getHost(), schema: LEDGER_SCHEMA, table: true, mark, layout, accepts: accepts.targets, updatedAt: new Date().toISOString() });
  } else {
    // The live ruleset decides, not host.json: a hook killed after nft and before
    // recording it must not leave the table behind.
    done.push(...(await removeFromHost(deps, await detectTargets(run), true)));
  }
  // Links of reserved entries too: prepare makes them before QEMU runs, and the entry is still "reserved" then.
  done.push(...(await convergeLinks(run, ledger, [...entries, ...(include ? [include] : [])].flatMap(entryLinks))));
  done.push(...(await convergeVfs(run, ledger, [...entries, ...(include ? [include] : [])].flatMap(entryVfs))));
  dropStaleTeardowns(ledger, include?.uuid);
  return done;
}

/**
 * The table made to hold `forwards`: `additions` (one VM's elements, the
 * others' already there) when given, else — or when nft refuses them (the
 * table flushed or changed under us) — written whole. Returns the note.
 */
async function writeTable(deps: HostDeps, forwards: readonly ResolvedForward[], additions: string | undefined): Promise<string> {
  if (additions === '') return `nft table inet virtwire: ${forwards.length} forward(s), nothing to add`;
  if (additions !== undefined && (await nftScript(deps, additions)).ok) return `nft table inet virtwire: ${forwards.length} forward(s), this VM's added`;
  await mustNftScript(deps, renderTable(forwards, deps.mark));
  return `nft table inet virtwire: ${forwards.length} forward(s)${additions === undefined ? '' : ' (written whole: nft refused adding this VM\'s alone)'}`;
}

/**
 * virtwire's accept first in every libvirt firewall chain present. With the
 * watcher's session, a start whose accepts are all in place (the usual one)
 * only looks, and one whose nftables chains have none yet has them inserted,
 * with no process (placeAcceptsThroughSession); anything else is read and
 * placed with processes. Returns the chains present and what was done.
 */
async function placeAccepts(deps: Pick<HostDeps, 'run' | 'mark' | 'nft'>): Promise<{ targets: AcceptTarget[]; notes: string[] }> {
  const quick = deps.nft ? await placeAcceptsThroughSession(deps.nft, deps.mark) : undefined;
  if (quick) return { targets: quick.targets, notes: quick.placed.map((t) => `accept placed first in ${targetName(t)}`) };
  const probes = await probeTargets(deps.run);
  const notes: string[] = [];
  for (const p of probes) if (await setAccept(deps.run, p.target, deps.mark, p.listing)) notes.push(`accept placed first in ${targetName(p.target)}`);
  return { targets: probes.map((p) => p.target), notes };
}

/**
 * Every VM entry gets the teardown script of what the table holds for it
 * (header only for a reserved entry): the qemu hook shim runs it at
 * stopped/release with no Node. A VM whose teardown cannot be exact gets
 * none, and its entry alone sends the shim to Node.
 */
function writeTeardowns(ledger: Ledger, kept: readonly VmEntry[], applied: readonly VmEntry[], counts: ElementCounts): void {
  // A VM with host links, VFs or drop-ins goes to Node at its release (links are counted across VMs; VFs are reset; release drop-ins run).
  for (const e of kept) {
    ledger.putTeardown(e.uuid, entryLinks(e).length || entryVfs(e).length || e.nics.some((n) => n.dropin) ? undefined : renderTeardown(e.uuid, applied.includes(e) ? entryForwards(e) : [], counts));
    ledger.putStartMarker(e.uuid, entryHasStartWork(e));
  }
}

/** A teardown whose VM has no entry is stale: run later, it would delete keys another VM may hold by then. */
function dropStaleTeardowns(ledger: Ledger, keep: string | undefined): void {
  for (const uuid of ledger.teardownUuids()) if (uuid !== keep && !ledger.hasVm(uuid)) ledger.putTeardown(uuid, undefined);
  for (const uuid of ledger.startMarkerUuids()) if (uuid !== keep && !ledger.hasVm(uuid)) ledger.putStartMarker(uuid, false);
}

/**
 * Removes everything virtwire put on the host, whatever the ledger and
 * virtwire.yaml say (either may be broken, stale or gone): every VM entry,
 * the `inet virtwire` table if it exists, and every rule carrying
 * virtwire's comment (any mark) in every libvirt firewall chain present.
 * Needs no configuration. The caller holds the ledger lock.
 */
export async function purgeHost(run: Runner, ledger: Ledger): Promise<string[]> {
  const done = ledger.listVms().map((e) => { ledger.removeVm(e.uuid); return `dropped ${quoted(e.name)}`; });
  dropStaleTeardowns(ledger, undefined);
  done.push(...(await convergeLinks(run, ledger, [])), ...(await convergeVfs(run, ledger, [])));
  return [...done, ...(await removeFromHost({ run, ledger }, await detectTargets(run), true))];
}

/**
 * An nft script run as one transaction: through the watcher's long-lived nft
 * when there is one (no process to start; host/nft-session.ts), else `nft -f -`.
 */
async function nftScript(deps: Pick<HostDeps, 'run' | 'nft'>, script: string): Promise<{ ok: boolean; errors: string }> {
  if (deps.nft) return deps.nft.run(script);
  const r = await deps.run(['nft', '-f', '-'], { input: script, timeoutMs: 15_000 });
  return { ok: r.exitCode === 0, errors: r.exitCode === 0 ? '' : r.stderr.trim() || `exit ${r.exitCode}` };
}

/** nftScript, throwing with nft's own first lines when it fails. */
async function mustNftScript(deps: Pick<HostDeps, 'run' | 'nft'>, script: string): Promise<void> {
  if (!deps.nft) {
    await mustRun(deps.run, ['nft', '-f', '-'], script);
    return;
  }
  const r = await deps.nft.run(script);
  if (!r.ok) throw new Error(`nft -i (the watcher's) failed: ${r.errors.split('\n').slice(0, 3).join(' | ')}`);
}

/**
 * The table and the accepts, gone. `always`: look at the live ruleset (purge);
 * otherwise trust the ledger's record of the table (a hook with nothing to
 * remove then runs no nft command).
 */
async function removeFromHost(deps: Pick<HostDeps, 'run' | 'ledger' | 'nft'>, present: AcceptTarget[], always: boolean): Promise<string[]> {
  const { run, ledger } = deps;
  const done: string[] = [];
  const before = ledger.getHost();
  const hasTable = always
    ? (await run(['nft', 'list', 'table', 'inet', TABLE], { timeoutMs: 15_000 })).exitCode === 0
    : before.table || before.accepts.length > 0;
  if (hasTable) {
    await mustNftScript(deps, renderDeleteTable());
    done.push(`nft table inet ${TABLE} removed`);
  }
  // setAccept(…, null) deletes every rule matching virtwire's comment, whatever its mark.
  for (const t of [...present, ...before.accepts.filter((a) => !present.some((b) => sameTarget(a, b)))]) {
    if (await setAccept(run, t, null)) done.push(`accept removed from ${targetName(t)}`);
  }
  ledger.putHost({ ...ledger.getHost(), schema: LEDGER_SCHEMA, table: false, mark: null, accepts: [], updatedAt: new Date().toISOString() });
  return done;
}

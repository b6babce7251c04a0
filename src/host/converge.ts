import type { Runner } from './run.js';
import { mustRun } from './run.js';
import { renderTable, renderDeleteTable } from './nft-script.js';
import { detectTargets, setAccept, sameTarget, targetName, type AcceptTarget } from './libvirt-firewall.js';
import { LEDGER_SCHEMA, type Ledger, type VmEntry } from '../state/ledger.js';
import { entryIsLive } from '../state/liveness.js';
import { quoted } from '../errors.js';

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
  let entries = ledger.listVms().filter((e) => e.uuid !== include?.uuid);
  if (deps.running) {
    const running = deps.running;
    for (const e of entries.filter((x) => !entryIsLive(x, running))) {
      ledger.removeVm(e.uuid);
      done.push(`dropped the entry of ${quoted(e.name)}: the VM no longer runs`);
    }
    entries = entries.filter((x) => entryIsLive(x, running));
  }
  const applied = [...entries.filter((e) => e.state === 'applied'), ...(include ? [include] : [])];
  const forwards = applied.flatMap((e) => e.forwards);
  const before = ledger.getHost();
  const targets: AcceptTarget[] = await detectTargets(run);
  if (forwards.length > 0) {
    await mustRun(run, ['nft', '-f', '-'], renderTable(forwards, mark));
    done.push(`nft table inet virtwire: ${forwards.length} forward(s)`);
    for (const t of targets) if (await setAccept(run, t, mark)) done.push(`accept placed first in ${targetName(t)}`);
    ledger.putHost({ schema: LEDGER_SCHEMA, table: true, mark, accepts: targets, updatedAt: new Date().toISOString() });
  } else {
    // Deleted whatever host.json says: a crash may have left the table unrecorded.
    const r = await run(['nft', '-f', '-'], { input: renderDeleteTable() });
    if (r.exitCode !== 0) throw new Error(`nft: could not delete table inet virtwire: ${r.stderr.trim()}`);
    if (before.table) done.push('nft table inet virtwire removed');
    for (const t of [...targets, ...before.accepts.filter((a) => !targets.some((b) => sameTarget(a, b)))]) {
      if (await setAccept(run, t, null)) done.push(`accept removed from ${targetName(t)}`);
    }
    ledger.putHost({ schema: LEDGER_SCHEMA, table: false, mark: null, accepts: [], updatedAt: new Date().toISOString() });
  }
  return done;
}

import { withLock } from '../state/lock.js';
import { converge } from '../engine/converge.js';
import { runningDomains } from '../host/libvirt-status.js';
import { rebuildCorrupt } from '../engine/reserve.js';
import { markForCleanup, type HookContext } from '../engine/context.js';
import { loadConfig } from '../policy/config.js';
import { errorMessage } from '../errors.js';

/**
 * `virtwire reconcile`: the host state made to match the ledger again (after
 * `nft flush ruleset`, a firewall reload, a crash). Entries of VMs that no
 * longer run are dropped; a corrupt entry of a running VM is rebuilt from
 * the live XML in libvirt's status file. Returns the notes and whether any
 * corrupt entry is left that could not be rebuilt.
 */
export async function reconcile(ctx: HookContext): Promise<{ notes: string[]; unresolved: string[] }> {
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate(); // under the lock: one rotating process at a time
    const notes: string[] = [];
    const running = runningDomains(ctx.paths.libvirtRunDir, (m) => notes.push(m));
    const runningUuids = ctx.runningUuids();
    const rebuilt = rebuildCorrupt(ctx, () => running, runningUuids);
    notes.push(...rebuilt.notes);
    const unresolved = rebuilt.unresolved.map((u) => u.message);
    // A broken virtwire.yaml does not stop the restore (the mark in use is kept) but is an error to fix.
    const config = configProblem(ctx.paths.configFile);
    if (config) unresolved.push(config);
    notes.push(...(await converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx), running: runningUuids })));
    return { notes, unresolved };
  });
}

function configProblem(file: string): string | undefined {
  try {
    loadConfig(file);
    return undefined;
  } catch (err) {
    return errorMessage(err);
  }
}

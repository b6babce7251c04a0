import { withLock } from '../state/lock.js';
import { converge } from '../host/converge.js';
import { runningDomains } from '../host/libvirt-status.js';
import { rebuildEntry } from '../hooks/qemu-handler.js';
import { markForCleanup, type HookContext } from '../hooks/context.js';
import { errorMessage, quoted } from '../errors.js';

/**
 * `virtwire reconcile`: the host state made to match the ledger again (after
 * `nft flush ruleset`, a firewall reload, a crash). Entries of VMs that no
 * longer run are dropped; a corrupt entry of a running VM is rebuilt from
 * the live XML in libvirt's status file. Returns the notes and whether any
 * corrupt entry is left that could not be rebuilt.
 */
export async function reconcile(ctx: HookContext): Promise<{ notes: string[]; unresolved: string[] }> {
  return withLock(ctx.ledger.lockFile, async () => {
    const notes: string[] = [];
    const unresolved: string[] = [];
    const corrupt = ctx.ledger.setAsideCorrupt();
    const running = runningDomains(ctx.paths.libvirtRunDir, (m) => notes.push(m));
    const runningUuids = ctx.runningUuids();
    for (const c of corrupt) {
      const vm = running.find((r) => r.domain.uuid === c.uuid);
      if (!vm) {
        unresolved.push(`${c.file}: unreadable (${c.reason}) and no running VM has UUID ${c.uuid}; remove the file once you have looked at it`);
        continue;
      }
      if (ctx.ledger.hasVm(c.uuid)) { ctx.ledger.dropCorrupt(c.uuid); continue; }
      try {
        notes.push(rebuildEntry(ctx, vm.domain, runningUuids));
      } catch (err) {
        unresolved.push(`${c.file}: could not rebuild the entry of running VM ${quoted(vm.domain.name)}: ${errorMessage(err)}`);
      }
    }
    notes.push(...(await converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx), running: runningUuids })));
    return { notes, unresolved };
  });
}

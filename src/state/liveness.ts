import type { VmEntry } from './ledger.js';

/**
 * An entry younger than this belongs to a VM still starting: between
 * prepare and the moment libvirt writes its status file, the VM is
 * not yet "running" in libvirt's files.
 */
export const STARTING_GRACE_MS = 5 * 60 * 1000;

/**
 * Whether an entry's VM still runs: its UUID is among the domains libvirt
 * runs (see host/libvirt-status.ts; never decided by name), or it was
 * written moments ago by a start in progress.
 */
export function entryIsLive(entry: VmEntry, runningUuids: ReadonlySet<string>, now = Date.now()): boolean {
  if (runningUuids.has(entry.uuid)) return true;
  const age = now - Date.parse(entry.updatedAt);
  return age >= 0 && age < STARTING_GRACE_MS;
}

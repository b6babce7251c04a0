import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Ledger, VmEntry } from './ledger.js';

/** A reserved entry younger than this belongs to a VM still starting (prepare → start). */
const RESERVATION_GRACE_MS = 5 * 60 * 1000;

/**
 * Whether libvirt still runs the VM, from its status file
 * (/run/libvirt/qemu/NAME.xml, <domstatus pid=…>) — files only, so hooks can use it.
 */
export function vmIsRunning(libvirtRunDir: string, entry: VmEntry, now = Date.now()): boolean {
  if (entry.state === 'reserved' && now - Date.parse(entry.updatedAt) < RESERVATION_GRACE_MS) return true;
  const status = join(libvirtRunDir, 'qemu', `${entry.name}.xml`);
  let text: string;
  try {
    text = readFileSync(status, 'utf8');
  } catch {
    return false;
  }
  if (!text.includes(entry.uuid)) return false;
  const pid = /<domstatus[^>]*\bpid=['"](\d+)['"]/.exec(text)?.[1];
  return pid === undefined || existsSync(`/proc/${pid}`);
}

/** Drops ledger entries of VMs that are gone (a crash skipped their stopped/release hooks). Returns their names. */
export function pruneStale(ledger: Ledger, libvirtRunDir: string, keepUuid?: string): string[] {
  const gone: string[] = [];
  for (const e of ledger.listVms()) {
    if (e.uuid === keepUuid || vmIsRunning(libvirtRunDir, e)) continue;
    ledger.removeVm(e.uuid);
    gone.push(e.name);
  }
  return gone;
}

// Drop-in executables of the bindings a VM's NICs use (host/dropins.ts):
// which exist and may run (trust checked here, at prepare and again right
// before each run), and running them at qemu start and when the VM stops.
import { lstatSync } from 'node:fs';
import type { Runner } from '../host/run.js';
import { DROPIN_HOOKS, dropinFile, runDropin, type DropinHook } from '../host/dropins.js';
import { assertTrustedExecutable } from '../policy/trust.js';
import { UserError, errorMessage, quoted } from '../errors.js';
import type { NicEntry } from '../state/ledger.js';

/** The drop-ins a binding has, each checked; an untrusted one throws its one-line UserError, and nothing runs. */
export function findDropins(hooksDir: string, binding: string): DropinHook[] {
  return DROPIN_HOOKS.filter((hook) => {
    const file = dropinFile(hooksDir, binding, hook);
    try { lstatSync(file); } catch { return false; }
    assertTrustedExecutable(file);
    return true;
  });
}

/**
 * Runs a NIC's drop-in for `hook`, checked again first. `tap`: the NIC's tap
 * at start, when it has one. Throws a UserError naming the VM, NIC and file
 * when it cannot run or exits non-zero.
 */
export async function runNicDropin(run: Runner, hooksDir: string, vm: string, nic: NicEntry, hook: DropinHook, tap?: string): Promise<string> {
  const file = dropinFile(hooksDir, nic.binding, hook);
  const who = `VM ${quoted(vm)} NIC ${nic.mac}`;
  try {
    assertTrustedExecutable(file);
  } catch (err) {
    throw new UserError(`${who}: ${errorMessage(err)}`);
  }
  const env = { ...(nic.dropin?.env ?? {}), VIRTWIRE_HOOK: hook, ...(tap ? { VIRTWIRE_TAP: tap } : {}) };
  const r = await runDropin(run, file, env);
  if (r.exitCode !== 0) {
    const said = r.stderr.trim().split('\n').filter(Boolean).slice(-1)[0];
    throw new UserError(`${who}: drop-in ${file} failed (exit ${r.exitCode})${said ? `: ${said}` : ''}`);
  }
  return `${hook} drop-in ${file} ran for NIC ${nic.mac}`;
}

// Per-binding drop-in executables, the plugin interface for admins who do
// not write TypeScript: /etc/virtwire/hooks.d/BINDING/start runs at qemu
// start (before QEMU; a failure refuses the start) and …/release when the VM
// stops, once per NIC of that binding, with the NIC's settings in the
// environment. Run only when the file and every directory up to / are
// root's and not group/world-writable (checked at prepare and again right
// before running): otherwise one clear line, and nothing runs.
// (The trust check itself is the engine's: engine/dropins.ts.)
import { join } from 'node:path';
import type { Runner, RunResult } from './run.js';

export const DROPIN_HOOKS = ['start', 'release'] as const;
export type DropinHook = (typeof DROPIN_HOOKS)[number];
const BINDING_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const TIMEOUT_MS = 30_000;

export function dropinFile(hooksDir: string, binding: string, hook: DropinHook): string {
  if (!BINDING_NAME.test(binding)) throw new Error(`not a binding name: ${JSON.stringify(binding)}`);
  return join(hooksDir, binding, hook);
}

/**
 * The environment a NIC's drop-ins get: who (VM, NIC, binding, template),
 * the binding's settings as JSON, and each scalar setting on its own as
 * VIRTWIRE_SETTING_<PATH> (`bridge: {name: br0}` → VIRTWIRE_SETTING_NAME=br0;
 * nested keys joined with "_", upper case).
 */
export function dropinEnv(nic: { vm: string; uuid: string; mac: string; binding: string; template: string; settings: unknown }): Record<string, string> {
  const env: Record<string, string> = {
    VIRTWIRE_VM: nic.vm, VIRTWIRE_UUID: nic.uuid, VIRTWIRE_MAC: nic.mac,
    VIRTWIRE_BINDING: nic.binding, VIRTWIRE_TEMPLATE: nic.template, VIRTWIRE_SETTINGS: JSON.stringify(nic.settings ?? {}),
  };
  const walk = (v: unknown, path: string[]): void => {
    if (v === null || v === undefined) return;
    if (typeof v === 'object') {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, [...path, k]);
      return;
    }
    const name = `VIRTWIRE_SETTING_${path.join('_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9_]/g, '_').toUpperCase()}`;
    env[name] = String(v);
  };
  walk(nic.settings, []);
  return env;
}

/** Runs one drop-in: argv is only its path (no shell), the environment only virtwire's. The caller has checked it. */
export async function runDropin(run: Runner, file: string, env: Record<string, string>): Promise<RunResult> {
  return run([file], { env, timeoutMs: TIMEOUT_MS });
}

// SR-IOV VFs VMs hold, made to match the ledger: every VF an entry holds is
// recorded in host.json (before its settings are applied at qemu start), and
// every recorded VF no entry holds any more is reset to a known state — the
// same whether the VM stopped cleanly, crashed or was never started.
import type { Runner } from '../host/run.js';
import { vfResetCommands } from '../host/sriov.js';
import type { VfSettings } from '../model/host.js';
import type { Ledger } from '../state/ledger.js';

const keyOf = (v: VfSettings): string => `${v.pf}/${v.index}`;

export async function convergeVfs(run: Runner, ledger: Ledger, wanted: readonly VfSettings[]): Promise<string[]> {
  const want = new Map(wanted.map((v) => [keyOf(v), v]));
  const host = ledger.getHost();
  const held: Record<string, VfSettings> = { ...(host.vfs ?? {}) };
  const added = [...want].filter(([k]) => !(k in held));
  const gone = Object.entries(held).filter(([k]) => !want.has(k));
  if (added.length === 0 && gone.length === 0) return [];
  for (const [k, v] of added) held[k] = v;
  const record = (): void => ledger.putHost({ ...ledger.getHost(), vfs: { ...held }, updatedAt: new Date().toISOString() });
  record();
  const done: string[] = [];
  for (const [k, v] of gone) {
    // Each setting on its own: a driver that refuses one still gets the rest. Never fails (release must not).
    const refused: string[] = [];
    for (const argv of vfResetCommands(v)) {
      const r = await run(argv, { timeoutMs: 15_000 });
      if (r.exitCode !== 0) refused.push(`${argv.slice(7).join(' ')} (${r.stderr.trim().split('\n')[0] || `exit ${r.exitCode}`})`);
    }
    delete held[k];
    record();
    done.push(`reset VF ${v.index} of ${v.pf} (${v.pci})${refused.length ? `; the driver refused: ${refused.join(', ')}` : ''}`);
  }
  return done;
}

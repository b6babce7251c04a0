import type { Runner } from './run.js';
import { mustRun } from './run.js';
import { renderTable, renderDeleteTable } from './nft-script.js';
import { detectTargets, setAccept, sameTarget, targetName, type AcceptTarget } from './libvirt-firewall.js';
import { LEDGER_SCHEMA, type Ledger } from '../state/ledger.js';

export interface HostDeps {
  run: Runner;
  ledger: Ledger;
  mark: number;
}

/**
 * Makes the host match the ledger: the whole `inet virtwire` table in one
 * nft transaction, and virtwire's accept first in every libvirt firewall
 * chain present. With no forwards left, removes both. Idempotent. The
 * caller holds the ledger lock. Returns what it did, for the log.
 */
export async function converge(deps: HostDeps): Promise<string[]> {
  const { run, ledger, mark } = deps;
  const done: string[] = [];
  const forwards = ledger.listVms().filter((e) => e.state === 'applied').flatMap((e) => e.forwards);
  const before = ledger.getHost();
  const present = await detectTargets(run);
  // Recorded targets whose chain is gone took our rule with them; keep only live ones.
  const targets: AcceptTarget[] = [...present];
  if (forwards.length > 0) {
    await mustRun(run, ['nft', '-f', '-'], renderTable(forwards, mark));
    done.push(`nft table inet virtwire: ${forwards.length} forward(s)`);
    for (const t of targets) if (await setAccept(run, t, mark)) done.push(`accept placed first in ${targetName(t)}`);
    ledger.putHost({ schema: LEDGER_SCHEMA, table: true, mark, accepts: targets, updatedAt: new Date().toISOString() });
  } else {
    if (before.table || before.accepts.length > 0) {
      await mustRun(run, ['nft', '-f', '-'], renderDeleteTable());
      done.push('nft table inet virtwire removed');
    }
    for (const t of [...targets, ...before.accepts.filter((a) => !targets.some((b) => sameTarget(a, b)))]) {
      if (await setAccept(run, t, null)) done.push(`accept removed from ${targetName(t)}`);
    }
    ledger.putHost({ schema: LEDGER_SCHEMA, table: false, mark: null, accepts: [], updatedAt: new Date().toISOString() });
  }
  return done;
}

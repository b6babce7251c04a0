// The host links bindings need (macvtap's VLAN sub-interfaces and host
// shims) made to match the ledger: each one some VM's entry names exists
// and is up, each one virtwire created that no entry names any more is
// removed. A link that was there before virtwire looked is used, never
// removed; one that is not what its name promises is refused, never touched.
import type { Runner } from '../host/run.js';
import { createLink, deleteLink, linkMismatch, readLiveLink, settleLink } from '../host/link-live.js';
import { describeLink, sameLink, type LinkObject } from '../model/host.js';
import type { HeldLink, Ledger } from '../state/ledger.js';
import { UserError, errorMessage } from '../errors.js';

/** Sub-interfaces before the shims that may sit on them; removal in the reverse order. */
const ORDER: Record<LinkObject['kind'], number> = { vlan: 0, shim: 1 };

export async function convergeLinks(run: Runner, ledger: Ledger, wantedLinks: readonly LinkObject[]): Promise<string[]> {
  const done: string[] = [];
  const wanted = new Map<string, LinkObject>();
  for (const l of wantedLinks) if (!wanted.has(l.name)) wanted.set(l.name, l);
  const held: Record<string, HeldLink> = { ...(ledger.getHost().links ?? {}) };
  const record = (): void => ledger.putHost({ ...ledger.getHost(), links: { ...held }, updatedAt: new Date().toISOString() });
  for (const l of [...wanted.values()].sort((a, b) => ORDER[a.kind] - ORDER[b.kind])) {
    const live = await readLiveLink(run, l.name);
    const mine = held[l.name];
    if (!live) {
      // Recorded first: a hook killed after `ip link add` still removes what it made.
      held[l.name] = { link: l, created: true };
      record();
      // What the admin must fix (a kernel without 8021q, a missing uplink): one line, not an internal error.
      await createLink(run, l).catch((err: unknown) => { throw new UserError(errorMessage(err)); });
      done.push(`created ${describeLink(l)}`);
      continue;
    }
    const bad = linkMismatch(l, live);
    if (bad) throw new UserError(`cannot use ${describeLink(l)}: the host's ${l.name} exists, but ${bad}; rename or remove that link, or change the template`);
    if (!mine || !sameLink(mine.link, l)) {
      held[l.name] = { link: l, created: mine?.created ?? false };
      record();
    }
    done.push(...(await settleLink(run, l, live)));
  }
  const unwanted = Object.entries(held).filter(([name]) => !wanted.has(name))
    .sort(([, a], [, b]) => ORDER[b.link.kind] - ORDER[a.link.kind]);
  for (const [name, h] of unwanted) {
    if (h.created && (await readLiveLink(run, name))) {
      await deleteLink(run, name);
      done.push(`removed ${describeLink(h.link)}: no VM needs it`);
    }
    delete held[name];
    record();
  }
  return done;
}

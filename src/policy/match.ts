import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { Template } from './template.js';
import type { TemplateSet } from './load.js';
import { globMatches } from '../model/glob.js';
import { TEMPLATE_NAME } from '../model/ids.js';
import { formatProblem } from './yaml-doc.js';
import { UserError, quoted } from '../errors.js';

/**
 * Whether binding `binding` can wire `nic` (the bindings know; policy does
 * not import them, the engine passes this in).
 */
export type NicTaker = (binding: string, nic: DomainNic) => boolean;

/**
 * The network a NIC is matched by (`match.networks`): the one it was on when
 * a binding moved it (the record's `from`), else the one it is on.
 */
export function matchNetwork(nic: DomainNic): string | undefined {
  return nic.from ?? nic.network;
}

/** Which template wires each NIC, or undefined. Throws on a priority tie. */
export function templatesForNics(domain: DomainInfo, set: TemplateSet, takes: NicTaker): Map<DomainNic, Template> {
  const vm = quoted(domain.name);
  for (const wanted of domain.metadata.templates) {
    if (!TEMPLATE_NAME.test(wanted)) throw new UserError(`VM ${vm}: its metadata opts in to template ${quoted(wanted)}, which is not a valid template name; fix the domain's <metadata>`);
    const t = set.templates.find((x) => x.name === wanted);
    if (!t && !set.broken.some((b) => b.name === wanted)) {
      throw new UserError(`VM ${vm}: its metadata opts in to template ${quoted(wanted)}, but there is no such template; add ${wanted}.yaml to the templates directory or fix the domain's <metadata>`);
    }
    if (t && !t.match.optIn) {
      throw new UserError(`VM ${vm}: its metadata opts in to template "${wanted}", which does not allow opt-in; set "match: {optIn: true}" in ${t.file} or remove the opt-in`);
    }
  }
  const applies = (t: { name: string; domains?: string[]; optIn?: boolean }): boolean =>
    (t.domains ?? []).some((g) => globMatches(g, domain.name)) || (t.optIn === true && domain.metadata.templates.includes(t.name));
  const anyBinding = [...new Set(set.templates.map((t) => t.binding))];
  const mayWire = domain.nics.some((n) => matchNetwork(n) !== undefined || anyBinding.some((b) => takes(b, n)));
  // A broken file that might concern this VM must not be silently skipped: the admin meant it to apply.
  for (const b of set.broken) {
    const mayConcern = b.domains === undefined || applies(b) || domain.metadata.templates.includes(b.name);
    if (mayConcern && mayWire) {
      const first = b.problems[0];
      throw new UserError(`VM ${vm}: template ${b.file} is invalid (${first ? formatProblem(first) : 'unreadable'}); fix it — "virtwire templates check" lists every problem`);
    }
  }
  const out = new Map<DomainNic, Template>();
  for (const nic of domain.nics) {
    const net = matchNetwork(nic);
    const candidates = set.templates.filter((t) => applies({ name: t.name, domains: t.match.domains, optIn: t.match.optIn })
      && (!t.match.networks || (net !== undefined && t.match.networks.includes(net))) && takes(t.binding, nic));
    if (candidates.length === 0) continue;
    const top = Math.max(...candidates.map((t) => t.priority));
    const best = candidates.filter((t) => t.priority === top);
    if (best.length > 1) {
      throw new UserError(`VM ${vm} NIC ${nic.mac}: templates ${best.map((t) => t.file).join(' and ')} both match with priority ${top}; give one a higher priority`);
    }
    out.set(nic, best[0] as Template);
  }
  return out;
}

// The decisions `virtwire apply` records in a domain's <metadata>, made from
// the same plan the hooks act on; and how a recorded set differs from now.
import type { VmPlan } from '../plan/types.js';
import type { DomainInfo } from '../xml/domain.js';
import { bindingNamed } from '../bindings/registry.js';
import { forwardText, recordDifferences, recordedForward, type RecordedForward, type RecordedNic } from '../model/record.js';

/** One record per wired NIC, forwards in a stable order (so an unchanged plan records byte-identical XML). */
export function recordOf(plan: VmPlan): RecordedNic[] {
  return plan.nics.map((n) => ({
    mac: n.mac,
    template: n.template,
    binding: n.binding,
    bindingVersion: bindingNamed(n.binding).version,
    ...(n.network === undefined ? {} : { network: n.network }),
    ...(n.from === undefined ? {} : { from: n.from }),
    ...(n.attached === undefined ? {} : { attached: n.attached }),
    forwards: byText(plan.forwards.filter((f) => f.nic === n.mac).map(recordedForward)),
  }));
}

/** Forwards sorted by their text, each text made once (a 400-forward sort compares ~3,500 times). */
function byText(forwards: RecordedForward[]): RecordedForward[] {
  return forwards.map((f) => ({ f, key: forwardText(f) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(({ f }) => f);
}

/**
 * How the domain's recorded decisions differ from `plan` (the templates now):
 * empty when they agree or the domain was never applied (nothing recorded).
 */
export function staleRecord(domain: DomainInfo, plan: VmPlan): string[] {
  return domain.metadata.record ? recordDifferences(domain.metadata.record, recordOf(plan)) : [];
}

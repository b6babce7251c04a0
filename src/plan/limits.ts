import type { ResolvedForward } from '../model/forward.js';
import type { Limits } from '../policy/config.js';
import { formatRange, rangeWidth } from '../model/ports.js';
import { UserError, quoted } from '../errors.js';

const WHERE = '/etc/virtwire/virtwire.yaml';

/** nft map elements a forward becomes: host ports × sources (any source counts as one). */
export function elementCount(f: Pick<ResolvedForward, 'host' | 'from'>): number {
  return rangeWidth(f.host) * Math.max(1, f.from.length);
}

export function totalElements(forwards: readonly ResolvedForward[]): number {
  return forwards.reduce((n, f) => n + elementCount(f), 0);
}

/** Per-forward and per-VM bounds: pure, checked before the lock is taken. */
export function checkVmLimits(vmName: string, forwards: readonly ResolvedForward[], limits: Limits): void {
  for (const f of forwards) {
    const n = elementCount(f);
    if (n > limits.elementsPerForward) {
      throw new UserError(`VM ${quoted(vmName)}: forward ${f.proto} ${formatRange(f.host)} (${f.origin}) needs ${n} nft elements (${rangeWidth(f.host)} port(s) × ${Math.max(1, f.from.length)} source(s)), over limits.elementsPerForward = ${limits.elementsPerForward}; narrow the forward or raise the limit in ${WHERE}`);
    }
  }
  const total = totalElements(forwards);
  if (total > limits.elementsPerVm) {
    throw new UserError(`VM ${quoted(vmName)}: its forwards need ${total} nft elements, over limits.elementsPerVm = ${limits.elementsPerVm}; remove forwards or raise the limit in ${WHERE}`);
  }
}

/** The host-wide bound, given what the other VMs hold. */
export function checkHostLimit(vmName: string, forwards: readonly ResolvedForward[], othersElements: number, limits: Limits): void {
  const total = othersElements + totalElements(forwards);
  if (total > limits.elementsPerHost) {
    throw new UserError(`VM ${quoted(vmName)}: its forwards would bring the host to ${total} nft elements, over limits.elementsPerHost = ${limits.elementsPerHost} (other VMs hold ${othersElements}); stop a VM, remove forwards, or raise the limit in ${WHERE}`);
  }
}

// What every binding that moves a NIC somewhere shares: which NICs it can
// take, and the messages of its define-time host checks.
import type { DomainNic } from '../../xml/domain.js';
import type { Binding } from '../types.js';

/**
 * <interface> types a rewriting binding takes over: what virt-manager and
 * virt-install create (network, bridge, direct, user). Not hostdev or
 * vhostuser: those carry devices a template line cannot safely replace.
 */
const TAKEN_TYPES = new Set(['network', 'bridge', 'direct', 'user']);

export function takesOrdinaryNic(nic: DomainNic): boolean {
  return TAKEN_TYPES.has(nic.type);
}

/** The parts of Binding that a binding with no host plan and no forwards answers the same way. */
export const NO_HOST_WORK: Pick<Binding, 'hostPlan' | 'warnings'> = {
  hostPlan: () => ({ forwards: [] }),
  warnings: () => [],
};

/** libvirt's encoded version as text: 11000000 → "11.0.0". */
export function versionText(v: number): string {
  return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1_000) % 1_000}.${v % 1_000}`;
}

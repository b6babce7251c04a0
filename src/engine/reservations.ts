// Define-time wiring, first part: the DHCP host reservations a VM's NICs need.
// Pure: domain, templates and networks in, the reservations to add out (the
// CLI reads libvirt and writes them). Each binding decides for its own NICs.
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { Template } from '../policy/template.js';
import type { TemplateSet } from '../policy/load.js';
import { templatesForNics } from '../policy/match.js';
import { BINDINGS, bindingTakes } from '../bindings/registry.js';
import type { Binding, NetworkView, Reservation } from '../bindings/types.js';

export type { NetworkView, Reservation };
export { withHost } from '../plan/allocate.js';

export interface ReservationInput {
  domain: DomainInfo;
  templates: TemplateSet;
  /** The network a NIC is attached to, by name (its current XML and leases); undefined if there is none. */
  network: (name: string) => NetworkView | undefined;
  now: number;
}

/** The reservations this VM's NICs still need, from every binding that wires one. Throws UserError. */
export function plannedReservations(input: ReservationInput): Reservation[] {
  return askEachBinding(input.domain, input.templates, (b, wired) => b.reservations?.({ ...input, wired }) ?? []);
}

/** What each binding that wires one of the domain's NICs answers, given the NICs it wires. */
export function askEachBinding<T>(domain: DomainInfo, templates: TemplateSet, ask: (b: Binding, wired: Map<DomainNic, Template>) => T[]): T[] {
  const wired = templatesForNics(domain, templates, bindingTakes);
  return [...BINDINGS.values()].flatMap((b) => {
    const mine = new Map([...wired].filter(([, t]) => t.binding === b.name));
    return mine.size ? ask(b, mine) : [];
  });
}

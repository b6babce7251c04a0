// Define-time wiring, first part: the DHCP host reservations a VM's NICs need
// before their forwards can work. Pure: domain, templates and networks in,
// the reservations to add out (the CLI reads libvirt and writes them).
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { NetworkInfo } from '../xml/network.js';
import type { Lease } from '../host/libvirt-status.js';
import type { TemplateSet } from '../policy/load.js';
import { templatesForNics } from '../policy/match.js';
import { natSettings } from '../bindings/nat/settings.js';
import { natNetworkRefusal } from '../bindings/nat/plan.js';
import { allocateIpv4, dhcpIpv4 } from '../plan/allocate.js';
import { UserError, quoted } from '../errors.js';

export interface NetworkView {
  info: NetworkInfo;
  leases: readonly Lease[];
}

export interface Reservation {
  nic: DomainNic;
  network: string;
  mac: string;
  ip: string;
}

export interface ReservationInput {
  domain: DomainInfo;
  templates: TemplateSet;
  /** The network a NIC is attached to, by name (its current XML and leases); undefined if there is none. */
  network: (name: string) => NetworkView | undefined;
  now: number;
}

/**
 * The reservations this VM's NICs still need: every NIC a nat template
 * wires, unless the template sets an IPv4 `address:` or the NIC is reserved
 * already. Two NICs on one network get two addresses. Throws UserError.
 */
export function plannedReservations(input: ReservationInput): Reservation[] {
  const { domain } = input;
  const planned = new Map<string, NetworkInfo>();
  const out: Reservation[] = [];
  for (const [nic, t] of templatesForNics(domain, input.templates)) {
    if (t.binding !== 'nat' || natSettings(t).address[4] !== undefined) continue;
    const name = nic.network as string;
    const view = input.network(name);
    const where = `VM ${quoted(domain.name)} NIC ${nic.mac}`;
    if (!view) throw new UserError(`${where}: network ${quoted(name)} does not exist; define it, or attach the NIC to another network`);
    const refusal = natNetworkRefusal(view.info);
    if (refusal) throw new UserError(`${where}: ${refusal}; attach the NIC to a NAT network, or keep template ${t.file} off this network with match.networks`);
    const info = planned.get(name) ?? view.info;
    const a = allocateIpv4({ network: info, leases: view.leases, mac: nic.mac, now: input.now });
    if (a.kind === 'reserved') continue;
    out.push({ nic, network: name, mac: nic.mac, ip: a.ip });
    planned.set(name, withHost(info, nic.mac, a.ip));
  }
  return out;
}

/** The network as it will be once `mac` has `ip` reserved. */
export function withHost(net: NetworkInfo, mac: string, ip: string): NetworkInfo {
  const target = dhcpIpv4(net);
  return { ...net, ips: net.ips.map((x) => (x === target ? { ...x, hosts: [...x.hosts, { mac, ip }] } : x)) };
}

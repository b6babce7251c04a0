// binding nat at define time: the DHCP host reservations each NIC it wires
// needs before its forwards can work — IPv4, and IPv6 where the network has
// a DHCPv6 range — unless the template sets that family's address:.
import { natSettings } from './settings.js';
import { natNetworkRefusal } from './plan.js';
import { allocateIpv4, allocateIpv6, dhcpIpv6, withHost } from '../../plan/allocate.js';
import type { NetworkInfo } from '../../xml/network.js';
import { duidLL } from '../../model/dhcp6.js';
import { UserError, quoted } from '../../errors.js';
import type { DefineTimeInput, Reservation } from '../types.js';

/**
 * Two NICs on one network get two IPv4 addresses. IPv6: one reservation per
 * VM and network, for the first NIC wired there — libvirt keys it by name=,
 * the domain's name, unique within an <ip>. Throws UserError naming the VM and NIC.
 */
export function natReservations(input: DefineTimeInput): Reservation[] {
  const { domain } = input;
  const planned = new Map<string, NetworkInfo>();
  const v6Asked = new Set<string>();
  const vmMacs = domain.nics.map((n) => n.mac);
  const out: Reservation[] = [];
  for (const [nic, t] of input.wired) {
    const fixed = natSettings(t).address;
    if (fixed[4] !== undefined && fixed[6] !== undefined) continue;
    const name = nic.network as string;
    const view = input.network(name);
    const where = `VM ${quoted(domain.name)} NIC ${nic.mac}`;
    if (!view) throw new UserError(`${where}: network ${quoted(name)} does not exist; define it, or attach the NIC to another network`);
    const refusal = natNetworkRefusal(view.info);
    if (refusal) throw new UserError(`${where}: ${refusal}; attach the NIC to a NAT network, or keep template ${t.file} off this network with match.networks`);
    let info = planned.get(name) ?? view.info;
    const add = (r: Reservation) => { out.push(r); info = withHost(info, r); };
    if (fixed[4] === undefined) {
      const a = allocateIpv4({ network: info, leases: view.leases, mac: nic.mac, now: input.now });
      if (a.kind === 'new') add({ nic, network: name, family: 4, mac: nic.mac, ip: a.ip });
    }
    if (fixed[6] === undefined && !v6Asked.has(name)) {
      v6Asked.add(name);
      const a = allocateIpv6({ network: info, leases: view.leases, mac: nic.mac, now: input.now, name: domain.name, vmMacs });
      if (a?.kind === 'new') add({ nic, network: name, family: 6, mac: nic.mac, ip: a.ip, id: duidLL(nic.mac), name: domain.name, parentIndex: dhcpIpv6(info)?.index });
    }
    planned.set(name, info);
  }
  return out;
}

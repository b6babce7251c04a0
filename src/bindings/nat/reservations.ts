// binding nat at define time: the DHCP host reservation each NIC it wires
// needs before its forwards can work (unless the template sets address:).
import { natSettings } from './settings.js';
import { natNetworkRefusal } from './plan.js';
import { allocateIpv4, withHost } from '../../plan/allocate.js';
import type { NetworkInfo } from '../../xml/network.js';
import { UserError, quoted } from '../../errors.js';
import type { DefineTimeInput, Reservation } from '../types.js';

/** Two NICs on one network get two addresses. Throws UserError naming the VM and NIC. */
export function natReservations(input: DefineTimeInput): Reservation[] {
  const { domain } = input;
  const planned = new Map<string, NetworkInfo>();
  const out: Reservation[] = [];
  for (const [nic, t] of input.wired) {
    if (natSettings(t).address[4] !== undefined) continue;
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

import type { Binding } from '../types.js';
import { planNat, natNetworkRefusal } from './plan.js';
import { natReservations } from './reservations.js';
import { natPortRequests, natFixedHostPorts } from './auto.js';
import { NAT_KEYS, newNatSettings, readNatKey, finishNatSettings, type NatSettings } from './settings.js';
import { canonicalIp, ipFamily } from '../../model/addr.js';

export const nat: Binding = {
  name: 'nat',
  version: 1,
  settingsKeys: NAT_KEYS,
  newSettings: newNatSettings,
  readSettingsKey: (y, key, value, into) => readNatKey(y, key, value, into as NatSettings),
  finishSettings: (y, s) => finishNatSettings(y, s as NatSettings),
  // NAT forwards go to a NIC on a libvirt NAT network; the NIC stays as its owner attached it.
  takesNic: (nic) => nic.type === 'network' && nic.network !== undefined,
  hostPlan: (input) => ({ forwards: planNat(input) }),
  networkRefusal: natNetworkRefusal,
  reservations: natReservations,
  portRequests: natPortRequests,
  fixedHostPorts: natFixedHostPorts,
  summary: (s) => {
    const { forwards, autoPorts } = s as NatSettings;
    return `${forwards.length} forward(s)${autoPorts.length ? `, ${autoPorts.length} with host ports from forwards.autoPorts` : ''}`;
  },
  warnings: (s, hostAddresses) => {
    const local = new Set(hostAddresses.map((a) => (ipFamily(a) ? canonicalIp(a) : a)));
    const { forwards, autoPorts } = s as NatSettings;
    const all = [...forwards, ...autoPorts.flatMap((a) => a.forwards.map((f) => f.spec))];
    return all.filter((f) => f.listen && !local.has(f.listen)).map((f) => ({
      where: f.origin,
      message: `listen ${f.listen} is not an address of this host now; the forward matches nothing until it is`,
    }));
  },
};

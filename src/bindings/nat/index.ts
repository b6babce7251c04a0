import type { Binding } from '../types.js';
import { planNat, natNetworkRefusal } from './plan.js';
import { natReservations } from './reservations.js';
import { NAT_KEYS, newNatSettings, readNatKey, finishNatSettings, type NatSettings } from './settings.js';
import { canonicalIp, ipFamily } from '../../model/addr.js';

export const nat: Binding = {
  name: 'nat',
  version: 1,
  settingsKeys: NAT_KEYS,
  newSettings: newNatSettings,
  readSettingsKey: (y, key, value, into) => readNatKey(y, key, value, into as NatSettings),
  finishSettings: (y, s) => finishNatSettings(y, s as NatSettings),
  hostPlan: (input) => ({ forwards: planNat(input) }),
  networkRefusal: natNetworkRefusal,
  reservations: natReservations,
  summary: (s) => `${(s as NatSettings).forwards.length} forward(s)`,
  warnings: (s, hostAddresses) => {
    const local = new Set(hostAddresses.map((a) => (ipFamily(a) ? canonicalIp(a) : a)));
    return (s as NatSettings).forwards.filter((f) => f.listen && !local.has(f.listen)).map((f) => ({
      where: f.origin,
      message: `listen ${f.listen} is not an address of this host now; the forward matches nothing until it is`,
    }));
  },
};

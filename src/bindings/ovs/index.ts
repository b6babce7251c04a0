// binding ovs: the NIC on an Open vSwitch bridge (<interface type='bridge'>
// with <virtualport type='openvswitch'>), optionally on a VLAN, with a stable
// interfaceid (OVS's external-ids:iface-id, what controllers key ports by).
import type { Binding } from '../types.js';
import type { XElement } from '../../xml/document.js';
import { readVlan, describeVlan, vlanElement, type VlanSpec } from '../common/vlan.js';
import { readMapping, readIfName, requireKey } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { NO_HOST_WORK, takesOrdinaryNic } from '../common/rewrites.js';
import { UUID } from '../../model/ids.js';

export interface OvsSettings {
  bridge?: string;
  vlan?: VlanSpec;
}

const OVS_KEYS = ['bridge'] as const;

/**
 * The NIC's interfaceid: the one it has (libvirt generates one when a domain
 * is defined without it; keeping it keeps the port's identity), else one
 * made of the domain's UUID and the NIC's MAC — stable across applies, and
 * it shows in `ovs-vsctl list interface` which NIC it is.
 */
export function interfaceId(iface: XElement, domainUuid: string): string {
  const has = iface.elements('virtualport')[0]?.elements('parameters')[0]?.getAttribute('interfaceid')?.toLowerCase();
  if (has && UUID.test(has)) return has;
  const mac = (iface.elements('mac')[0]?.getAttribute('address') ?? '').toLowerCase().replace(/:/g, '');
  return `${domainUuid.slice(0, 24)}${mac.padStart(12, '0').slice(-12)}`;
}

function attached(s: OvsSettings): string {
  return `Open vSwitch bridge ${s.bridge}${s.vlan ? `, ${describeVlan(s.vlan)}` : ''}`;
}

export const ovs: Binding = {
  name: 'ovs',
  version: 1,
  settingsKeys: ['ovs', 'vlan'],
  newSettings: (): OvsSettings => ({}),
  readSettingsKey: (y, key, value, into) => {
    const s = into as OvsSettings;
    if (key === 'vlan') { s.vlan = readVlan(y, value); return; }
    const clean = readMapping(y, value, 'ovs', OVS_KEYS, (_k, v) => { s.bridge = readIfName(y, v, 'ovs.bridge'); });
    if (clean && s.bridge === undefined) y.report(value, 'ovs.bridge is required: ovs: {bridge: ovsbr0}');
  },
  finishSettings: (y) => requireKey(y, 'ovs', 'binding ovs needs the Open vSwitch bridge: ovs: {bridge: ovsbr0}'),
  takesNic: takesOrdinaryNic,
  rewriteInterface: (iface, settings, env) => {
    const s = settings as OvsSettings;
    attachInterface(iface, {
      type: 'bridge',
      source: [['bridge', s.bridge as string]],
      virtualport: { name: 'virtualport', attrs: { type: 'openvswitch' }, children: [{ name: 'parameters', attrs: { interfaceid: interfaceId(iface, env.domainUuid) } }] },
      vlan: s.vlan && vlanElement(s.vlan),
    });
  },
  attachment: (settings) => attached(settings as OvsSettings),
  hostRefusal: (settings, host) => {
    const name = (settings as OvsSettings).bridge as string;
    const bridges = host.ovsBridges();
    if (typeof bridges === 'string') return `Open vSwitch is not available (${bridges}); install it and start ovs-vswitchd`;
    if (bridges.has(name)) return undefined;
    return `Open vSwitch has no bridge ${name} (it has: ${[...bridges].sort().join(', ') || 'none'}); create it with "ovs-vsctl add-br ${name}" or fix ovs.bridge`;
  },
  summary: (settings) => attached(settings as OvsSettings),
  ...NO_HOST_WORK,
};


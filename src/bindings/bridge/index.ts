// binding bridge: the NIC on a named host Linux bridge (<interface type='bridge'>),
// optionally on a VLAN (access or trunk).
import type { Binding } from '../types.js';
import { readVlan, describeVlan, vlanElement, type VlanSpec } from '../common/vlan.js';
import { readMapping, readIfName, requireKey } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { takesOrdinaryNic } from '../common/rewrites.js';

export interface BridgeSettings {
  /** The host bridge. */
  name?: string;
  vlan?: VlanSpec;
}

const BRIDGE_KEYS = ['name'] as const;
/** From 11.0.0 libvirt sets a <vlan> on a plain Linux bridge's tap itself (before: Open vSwitch only). */
export const LINUX_BRIDGE_VLAN_SINCE = 11_000_000;

/**
 * Why a VLAN on this bridge would not isolate anything (it does not filter
 * VLANs), with the fix; undefined when it filters. Checked at define time
 * and again at qemu prepare.
 */
export function vlanFilteringRefusal(bridgeName: string, filtering: boolean | undefined): string | undefined {
  if (filtering === true) return undefined;
  if (filtering === undefined) return `bridge ${bridgeName} cannot filter VLANs: this kernel was built without bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), so a VLAN on it would not isolate anything; use a kernel with it, or Open vSwitch (binding: ovs)`;
  return `bridge ${bridgeName} does not filter VLANs (vlan_filtering is 0), so a VLAN on it would not isolate anything: enable it with "ip link set ${bridgeName} type bridge vlan_filtering 1" and in the host's network configuration (virtwire never changes host-wide settings)`;
}

function attached(s: BridgeSettings): string {
  return `bridge ${s.name}${s.vlan ? `, ${describeVlan(s.vlan)}` : ''}`;
}

export const bridge: Binding = {
  name: 'bridge',
  version: 1,
  settingsKeys: ['bridge', 'vlan'],
  newSettings: (): BridgeSettings => ({}),
  readSettingsKey: (y, key, value, into) => {
    const s = into as BridgeSettings;
    if (key === 'vlan') { s.vlan = readVlan(y, value); return; }
    const clean = readMapping(y, value, 'bridge', BRIDGE_KEYS, (_k, v) => { s.name = readIfName(y, v, 'bridge.name'); });
    if (clean && s.name === undefined) y.report(value, 'bridge.name is required: bridge: {name: br0}');
  },
  finishSettings: (y) => requireKey(y, 'bridge', 'binding bridge needs the host bridge: bridge: {name: br0}'),
  takesNic: takesOrdinaryNic,
  rewriteInterface: (iface, settings, env) => {
    const s = settings as BridgeSettings;
    attachInterface(iface, {
      type: 'bridge',
      source: [['bridge', s.name as string]],
      vlan: s.vlan && env.libvirtVersion >= LINUX_BRIDGE_VLAN_SINCE ? vlanElement(s.vlan) : undefined,
    });
  },
  attachment: (settings) => attached(settings as BridgeSettings),
  hostRefusal: (settings, host) => {
    const s = settings as BridgeSettings;
    const name = s.name as string;
    const link = host.link(name);
    const ovs = host.ovsBridges();
    if (!link) return `the host has no bridge ${name}; create it (e.g. in /etc/network/interfaces) or fix bridge.name`;
    if (!link.bridge) {
      return typeof ovs !== 'string' && ovs.has(name)
        ? `${name} is an Open vSwitch bridge, not a Linux bridge; use binding: ovs with ovs: {bridge: ${name}}`
        : `${name} is not a Linux bridge; name a bridge in bridge.name`;
    }
    if (!s.vlan) return undefined;
    return vlanFilteringRefusal(name, link.vlanFiltering);
  },
  summary: (settings) => attached(settings as BridgeSettings),
  // Where the definition has no <vlan> (libvirt before 11.0 cannot take one on a Linux
  // bridge), the hook sets the VLAN on the tap at qemu start.
  hostPlan: ({ wired }) => ({
    forwards: [],
    tapVlans: [...wired].flatMap(([nic, t]) => {
      const s = t.settings as BridgeSettings;
      return s.vlan && !nic.vlan ? [{ nic: nic.mac, tapVlan: { bridge: s.name as string, vlan: s.vlan } }] : [];
    }),
  }),
  warnings: () => [],
};

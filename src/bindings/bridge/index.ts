// binding bridge: the NIC on a named host Linux bridge (<interface type='bridge'>),
// optionally on a VLAN (access or trunk).
import type { Binding } from '../types.js';
import { readVlan, describeVlan, vlanElement, type VlanSpec } from '../common/vlan.js';
import { readMapping, readIfName, requireKey } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { NO_HOST_WORK, takesOrdinaryNic, versionText } from '../common/rewrites.js';

export interface BridgeSettings {
  /** The host bridge. */
  name?: string;
  vlan?: VlanSpec;
}

const BRIDGE_KEYS = ['name'] as const;
/** From 11.0.0 libvirt sets a <vlan> on a plain Linux bridge's tap itself (before: Open vSwitch only). */
export const LINUX_BRIDGE_VLAN_SINCE = 11_000_000;

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
    const before = y.problems.length;
    readMapping(y, value, 'bridge', BRIDGE_KEYS, (_k, v) => { s.name = readIfName(y, v, 'bridge.name'); });
    if (s.name === undefined && y.problems.length === before) y.report(value, 'bridge.name is required: bridge: {name: br0}');
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
  hostRefusal: (settings, host, env) => {
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
    if (!link.vlanFiltering) {
      return `bridge ${name} does not filter VLANs (vlan_filtering is 0), so a VLAN on it would not isolate anything: enable it with "ip link set ${name} type bridge vlan_filtering 1" and in the host's network configuration (virtwire never changes host-wide settings)`;
    }
    if (env.libvirtVersion < LINUX_BRIDGE_VLAN_SINCE) {
      return `libvirt ${versionText(env.libvirtVersion)} cannot put a NIC on a VLAN of a Linux bridge (libvirt 11.0 can), and this version of virtwire does not yet set it from the hook; use Open vSwitch (binding: ovs) or leave out vlan`;
    }
    return undefined;
  },
  summary: (settings) => attached(settings as BridgeSettings),
  ...NO_HOST_WORK,
};

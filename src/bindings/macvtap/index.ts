// binding macvtap: the NIC straight on a host uplink (<interface type='direct'>)
// in mode bridge, vepa, private or passthrough; on a VLAN through the
// uplink's sub-interface UPLINK.VID; with an optional host shim, a macvlan
// in bridge mode with an address, so the host reaches its macvtap guests
// (which the uplink itself never can) without moving its own address.
import type { Binding } from '../types.js';
import { readVlan, type VlanSpec } from '../common/vlan.js';
import { readMapping, readIfName, readHostAddress, requireKey, type HostAddress } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { takesOrdinaryNic } from '../common/rewrites.js';
import type { LinkObject } from '../../model/host.js';
import { IFNAME } from '../../model/ids.js';
import { quote } from '../../model/show.js';

export const MACVTAP_MODES = ['bridge', 'vepa', 'private', 'passthrough'] as const;
export type MacvtapMode = (typeof MACVTAP_MODES)[number];

export interface MacvtapSettings {
  uplink?: string;
  mode: MacvtapMode;
  /** Access VLAN: the NIC goes on UPLINK.VID. */
  vlan?: number;
  hostShim?: { address: HostAddress };
}

const MACVTAP_KEYS = ['uplink', 'mode', 'hostShim'] as const;
const SHIM_KEYS = ['address'] as const;

/** The link the macvtap goes on: the uplink, or its VLAN sub-interface. */
export function macvtapLink(s: MacvtapSettings): string {
  return s.vlan === undefined ? (s.uplink as string) : `${s.uplink}.${s.vlan}`;
}

/**
 * The host shim's name: "vws" and 8 hex digits of a hash of its lower link
 * and address, so one template's shim has one name on every host and two
 * shims never share one (IFNAMSIZ leaves no room for the address itself).
 */
export function shimName(lower: string, address: HostAddress): string {
  let h = 0x811c9dc5; // FNV-1a, 32 bits: no crypto module in the hooks for this
  for (const c of `${lower}\0${address.address}/${address.prefix}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `vws${h.toString(16).padStart(8, '0')}`;
}

/** The links a NIC of these settings needs on the host: the VLAN sub-interface, then the shim on it. */
export function macvtapLinks(s: MacvtapSettings): LinkObject[] {
  const links: LinkObject[] = [];
  if (s.vlan !== undefined) links.push({ kind: 'vlan', name: macvtapLink(s), lower: s.uplink as string, vid: s.vlan });
  if (s.hostShim) {
    const { address, prefix } = s.hostShim.address;
    links.push({ kind: 'shim', name: shimName(macvtapLink(s), s.hostShim.address), lower: macvtapLink(s), address, prefix });
  }
  return links;
}

function attached(s: MacvtapSettings): string {
  const shim = s.hostShim ? `, host shim ${s.hostShim.address.address}/${s.hostShim.address.prefix}` : '';
  return `macvtap ${s.mode} on ${macvtapLink(s)}${s.vlan === undefined ? '' : ` (VLAN ${s.vlan})`}${shim}`;
}

export const macvtap: Binding = {
  name: 'macvtap',
  version: 1,
  settingsKeys: ['macvtap', 'vlan'],
  newSettings: (): MacvtapSettings => ({ mode: 'bridge' }),
  readSettingsKey: (y, key, value, into) => {
    const s = into as MacvtapSettings;
    if (key === 'vlan') {
      const v: VlanSpec | undefined = readVlan(y, value);
      if (v && 'access' in v) s.vlan = v.access;
      else if (v) y.report(value, `macvtap carries one VLAN (through the sub-interface UPLINK.VID), not a trunk; write vlan: N`);
      return;
    }
    const clean = readMapping(y, value, 'macvtap', MACVTAP_KEYS, (k, v) => {
      if (k === 'uplink') s.uplink = readIfName(y, v, 'macvtap.uplink');
      else if (k === 'mode') {
        const m = y.scalar(v);
        if (typeof m === 'string' && (MACVTAP_MODES as readonly string[]).includes(m)) s.mode = m as MacvtapMode;
        else y.report(v, `macvtap.mode must be one of ${MACVTAP_MODES.join(', ')}; found ${y.kindOf(v)}`);
      } else {
        const shimClean = readMapping(y, v, 'macvtap.hostShim', SHIM_KEYS, (_k, a) => {
          const address = readHostAddress(y, a, 'macvtap.hostShim.address');
          if (address) s.hostShim = { address };
        });
        if (shimClean && !s.hostShim) y.report(v, 'macvtap.hostShim.address is required: hostShim: {address: 198.51.100.5/24}');
      }
    });
    if (clean && s.uplink === undefined) y.report(value, 'macvtap.uplink is required: macvtap: {uplink: eth1, mode: bridge}');
  },
  finishSettings: (y, settings) => {
    requireKey(y, 'macvtap', 'binding macvtap needs its uplink: macvtap: {uplink: eth1, mode: bridge}');
    const s = settings as MacvtapSettings;
    // Only bridge-mode macvlans on one link talk to each other inside the host.
    if (s.hostShim && s.mode !== 'bridge') {
      y.report(y.root, `macvtap.hostShim needs mode bridge: in mode ${s.mode} the host's shim cannot reach the guests (${s.mode === 'vepa' ? 'VEPA sends that traffic to the switch, which would have to hairpin it back' : s.mode === 'private' ? 'private mode forbids it' : 'passthrough gives the whole uplink to one guest'})`);
    }
    if (s.uplink !== undefined && s.vlan !== undefined && !IFNAME.test(macvtapLink(s))) {
      y.report(y.root, `macvtap: the VLAN sub-interface name ${quote(macvtapLink(s))} is longer than Linux allows (15 characters); use a shorter uplink name (an altname does not help: sub-interfaces need a real name)`);
    }
  },
  takesNic: takesOrdinaryNic,
  rewriteInterface: (iface, settings) => {
    const s = settings as MacvtapSettings;
    attachInterface(iface, { type: 'direct', source: [['dev', macvtapLink(s)], ['mode', s.mode]] });
  },
  attachment: (settings) => attached(settings as MacvtapSettings),
  hostRefusal: (settings, host) => {
    const s = settings as MacvtapSettings;
    const uplink = s.uplink as string;
    const link = host.link(uplink);
    if (!link) return `the host has no link ${uplink}; fix macvtap.uplink`;
    if (link.bridge) return `${uplink} is a Linux bridge; macvtap goes on a physical uplink (or a bond or VLAN link), a bridge takes binding: bridge`;
    if (link.bridgePort) return `${uplink} is a port of a Linux bridge, where a macvtap cannot go (the kernel refuses it); use binding: bridge on that bridge, or another uplink`;
    return undefined;
  },
  summary: (settings) => attached(settings as MacvtapSettings),
  hostPlan: ({ wired }) => ({
    forwards: [],
    links: [...wired].flatMap(([nic, t]) => macvtapLinks(t.settings as MacvtapSettings).map((link) => ({ nic: nic.mac, link }))),
  }),
  warnings: () => [],
};

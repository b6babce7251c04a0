// binding isolated: the NIC on a libvirt network with no <forward> (guests
// reach each other, and the host only where the network has an address;
// nothing beyond). The network is defined from the template when missing;
// <port isolated='yes'/> keeps guests on it from reaching each other too.
import type { Binding, NetworkDefinition } from '../types.js';
import type { NetworkInfo } from '../../xml/network.js';
import { readMapping, readBool, readNetworkName, readHostAddress, requireKey, type HostAddress } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { NO_HOST_WORK, takesOrdinaryNic } from '../common/rewrites.js';
import { bigIntToIp, ipToBigInt, subnetOf } from '../../model/addr.js';
import { encodeAttribute } from '../../xml/escape.js';
import { quote } from '../../model/show.js';

export interface IsolatedSettings {
  network?: string;
  /** The host's address on the network when virtwire defines it (with DHCP for the guests); none: a network without IP. */
  address?: HostAddress;
  /** <port isolated='yes'/>: guests on the network cannot reach each other either. */
  portIsolation: boolean;
}

const ISOLATED_KEYS = ['network', 'address', 'portIsolation'] as const;

function attached(s: IsolatedSettings): string {
  return `isolated network ${s.network}${s.portIsolation ? ', port isolated' : ''}`;
}

/**
 * The network virtwire defines when it is missing: no <forward>, a bridge
 * libvirt names, and with `address` that address and a DHCP range over the
 * upper half of the subnet (the lower half is left for static guests).
 */
export function isolatedNetworkXml(s: IsolatedSettings): string {
  const name = encodeAttribute(s.network as string);
  const lines = ['<network>', `  <name>${name}</name>`, "  <bridge stp='on' delay='0'/>"];
  if (s.address) {
    const subnet = subnetOf(s.address.address, s.address.prefix);
    const mid = subnet.first + (subnet.last - subnet.first + 1n) / 2n;
    const self = ipToBigInt(s.address.address);
    const start = self === mid ? mid + 1n : mid;
    const end = subnet.last - 1n === self ? subnet.last - 2n : subnet.last - 1n;
    const mask = bigIntToIp(((1n << 32n) - 1n) ^ ((1n << BigInt(32 - s.address.prefix)) - 1n), 4);
    lines.push(`  <ip address='${s.address.address}' netmask='${mask}'>`, '    <dhcp>', `      <range start='${bigIntToIp(start, 4)}' end='${bigIntToIp(end, 4)}'/>`, '    </dhcp>', '  </ip>');
  }
  lines.push('</network>', '');
  return lines.join('\n');
}

export const isolated: Binding = {
  name: 'isolated',
  version: 1,
  settingsKeys: ['isolated'],
  newSettings: (): IsolatedSettings => ({ portIsolation: false }),
  readSettingsKey: (y, _key, value, into) => {
    const s = into as IsolatedSettings;
    const clean = readMapping(y, value, 'isolated', ISOLATED_KEYS, (k, v) => {
      if (k === 'network') s.network = readNetworkName(y, v, 'isolated.network');
      else if (k === 'address') {
        const a = readHostAddress(y, v, 'isolated.address', [4]);
        // A /30 leaves one address beside the host's: too few for a DHCP range that avoids it.
        if (a && a.prefix > 29) y.report(v, `isolated.address: /${a.prefix} leaves no room for the guests' DHCP range; use /29 or shorter`);
        else s.address = a;
      }
      else s.portIsolation = readBool(y, v, 'isolated.portIsolation') ?? false;
    });
    if (clean && s.network === undefined) y.report(value, 'isolated.network is required: isolated: {network: lab-iso}');
  },
  finishSettings: (y) => requireKey(y, 'isolated', 'binding isolated needs its network: isolated: {network: lab-iso}'),
  takesNic: takesOrdinaryNic,
  rewriteInterface: (iface, settings) => {
    const s = settings as IsolatedSettings;
    attachInterface(iface, { type: 'network', source: [['network', s.network as string]], isolated: s.portIsolation });
  },
  attachment: (settings) => attached(settings as IsolatedSettings),
  attachedNetwork: (settings) => (settings as IsolatedSettings).network,
  networks: (settings, template): NetworkDefinition[] => {
    const s = settings as IsolatedSettings;
    return [{
      name: s.network as string,
      xml: isolatedNetworkXml(s),
      origin: template.file,
      refusal: (existing: NetworkInfo) => existing.forwardMode === 'isolated'
        ? undefined
        : `network ${quote(existing.name)} forwards (mode ${existing.forwardMode}), so it is not isolated; name another network in isolated.network, or remove its <forward>`,
    }];
  },
  summary: (settings) => attached(settings as IsolatedSettings),
  ...NO_HOST_WORK,
};

// binding sriov: the NIC becomes an SR-IOV virtual function handed to the
// guest (<interface type='hostdev' managed='yes'> with the VF's PCI address,
// and <vlan>), allocated at define time from a PF's VFs that no other
// defined domain uses; or, with `network:`, a libvirt hostdev network that
// allocates it at start. Trust, spoof checking and rate, which no libvirt
// XML carries, are set at qemu start and reset at release.
import type { Binding } from '../types.js';
import type { XElement } from '../../xml/document.js';
import type { VfSettings } from '../../model/host.js';
import { PCI_ADDRESS } from '../../model/host.js';
import { readVlan, vlanElement } from '../common/vlan.js';
import { readMapping, readIfName, readBool, readNetworkName, requireKey } from '../common/settings.js';
import { attachInterface } from '../common/attach.js';
import { takesOrdinaryNic } from '../common/rewrites.js';
import { UserError, quoted } from '../../errors.js';

export interface SriovSettings {
  pf?: string;
  /** A libvirt hostdev network (<forward mode='hostdev'> pool) instead of a PF. */
  network?: string;
  trust?: boolean;
  spoofchk?: boolean;
  maxTxRateMbps?: number;
  /** One VLAN: libvirt sets it on the VF (a VF carries no trunk). */
  vlan?: number;
}

const SRIOV_KEYS = ['pf', 'network', 'trust', 'spoofchk', 'maxTxRateMbps'] as const;
/** The fastest VF rate a template may ask for (400 Gb/s). */
const MAX_RATE_MBPS = 400_000;

/** <source><address type='pci' …/></source>'s address for "0000:03:10.1". */
function pciAddressAttrs(pci: string): Array<[string, string]> {
  const m = PCI_ADDRESS.exec(pci);
  if (!m) throw new Error(`not a PCI address: ${JSON.stringify(pci)}`);
  return [['type', 'pci'], ['domain', `0x${m[1]}`], ['bus', `0x${m[2]}`], ['slot', `0x${m[3]}`], ['function', `0x${m[4]}`]];
}

/** The VF's PCI address a hostdev <interface> names, if any. */
function currentPci(iface: XElement): string | undefined {
  if (iface.getAttribute('type') !== 'hostdev') return undefined;
  const a = iface.elements('source')[0]?.elements('address')[0];
  if (a?.getAttribute('type') !== 'pci') return undefined;
  const hex = (n: string, w: number): string => parseInt(a.getAttribute(n) ?? 'x', 16).toString(16).padStart(w, '0');
  const pci = `${hex('domain', 4)}:${hex('bus', 2)}:${hex('slot', 2)}.${hex('function', 1)}`;
  return PCI_ADDRESS.test(pci) ? pci : undefined;
}

/**
 * The NIC as a VF of the PF: type hostdev, managed (libvirt binds it to
 * vfio-pci and back), its PCI address, its VLAN. What a hostdev NIC cannot
 * have (<model>: the VF is the device; another attachment's elements) goes;
 * <mac>, <address>, <boot>, <rom>, a <target> libvirt names… stay.
 */
function rewriteVf(iface: XElement, pci: string, vlan: number | undefined): void {
  if (iface.getAttribute('type') !== 'hostdev') iface.setAttribute('type', 'hostdev');
  if (iface.getAttribute('managed') !== 'yes') iface.setAttribute('managed', 'yes');
  for (const name of ['model', 'backend', 'portForward', 'virtualport', 'port', 'ip', 'route', 'driver', 'bandwidth', 'filterref', 'link', 'mtu', 'coalesce', 'tune']) {
    for (const el of iface.elements(name)) el.remove();
  }
  const source = { name: 'source', children: [{ name: 'address', attrs: pciAddressAttrs(pci) }] };
  const current = iface.elements('source')[0];
  if (current) current.replaceWith(source);
  else {
    const mac = iface.elements('mac')[0];
    iface.insertElement(source, mac ? { after: mac } : {});
  }
  const vlanEl = iface.elements('vlan')[0];
  if (vlan === undefined) vlanEl?.remove();
  else iface.upsertElement('vlan', vlanElement({ access: vlan }), { after: iface.elements('source')[0] as XElement });
}

function attached(s: SriovSettings): string {
  const opts = [
    ...(s.trust === undefined ? [] : [`trust ${s.trust ? 'on' : 'off'}`]),
    ...(s.spoofchk === undefined ? [] : [`spoofchk ${s.spoofchk ? 'on' : 'off'}`]),
    ...(s.maxTxRateMbps === undefined ? [] : [`max ${s.maxTxRateMbps} Mb/s`]),
  ];
  const where = s.network !== undefined ? `a VF from hostdev network ${s.network}` : `a VF of ${s.pf}`;
  return `${where}${s.vlan === undefined ? '' : `, VLAN ${s.vlan}`}${opts.length ? `, ${opts.join(', ')}` : ''}`;
}

/** A template's trust on a PF the admin did not list in sriov.trustPfs: refused, with the fix. */
function trustRefusal(s: SriovSettings, trustPfs: readonly string[] | undefined): string | undefined {
  if (s.trust !== true || s.pf === undefined || trustPfs?.includes(s.pf)) return undefined;
  return `trust: true on ${s.pf}, which virtwire.yaml does not allow (a trusted VF can change its own MAC and see more traffic): list it under sriov: {trustPfs: [${s.pf}]} in /etc/virtwire/virtwire.yaml, or remove trust`;
}

export const sriov: Binding = {
  name: 'sriov',
  version: 1,
  settingsKeys: ['sriov', 'vlan'],
  newSettings: (): SriovSettings => ({}),
  readSettingsKey: (y, key, value, into) => {
    const s = into as SriovSettings;
    if (key === 'vlan') {
      const v = readVlan(y, value);
      if (v && 'access' in v) s.vlan = v.access;
      else if (v) y.report(value, 'an SR-IOV VF carries one VLAN (libvirt sets it on the VF), not a trunk; write vlan: N');
      return;
    }
    const clean = readMapping(y, value, 'sriov', SRIOV_KEYS, (k, v) => {
      if (k === 'pf') s.pf = readIfName(y, v, 'sriov.pf');
      else if (k === 'network') s.network = readNetworkName(y, v, 'sriov.network');
      else if (k === 'maxTxRateMbps') {
        const n = y.scalar(v);
        if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_RATE_MBPS) s.maxTxRateMbps = n;
        else y.report(v, `sriov.maxTxRateMbps must be a whole number of Mb/s from 1 to ${MAX_RATE_MBPS}, found ${y.kindOf(v)}`);
      } else {
        const b = readBool(y, v, `sriov.${k}`);
        if (b !== undefined) s[k as 'trust' | 'spoofchk'] = b;
      }
    });
    if (!clean) return;
    if ((s.pf === undefined) === (s.network === undefined)) {
      y.report(value, 'sriov needs exactly one of pf (a PF whose VFs virtwire allocates: sriov: {pf: enp3s0f0}) and network (a libvirt hostdev network that allocates them)');
    } else if (s.network !== undefined && (s.trust !== undefined || s.spoofchk !== undefined || s.maxTxRateMbps !== undefined)) {
      y.report(value, 'trust, spoofchk and maxTxRateMbps need pf: with a hostdev network libvirt picks the VF at start, after virtwire could set them');
    }
  },
  finishSettings: (y) => requireKey(y, 'sriov', 'binding sriov needs its PF or hostdev network: sriov: {pf: enp3s0f0}'),
  vhostRefusal: 'an SR-IOV VF is the guest\'s own device; vhost-net plays no part',
  // A hostdev NIC too: a VF this binding allocated is one, and it is re-allocated from it.
  takesNic: (nic) => takesOrdinaryNic(nic) || nic.type === 'hostdev',
  rewriteInterface: (iface, settings, env) => {
    const s = settings as SriovSettings;
    if (s.network !== undefined) {
      attachInterface(iface, { type: 'network', source: [['network', s.network]], vlan: s.vlan === undefined ? undefined : vlanElement({ access: s.vlan }) });
      return;
    }
    if (!env.allocateVf) throw new Error('sriov: no VF allocator at define time');
    rewriteVf(iface, env.allocateVf(s.pf as string, currentPci(iface)).pci, s.vlan);
  },
  attachment: (settings) => attached(settings as SriovSettings),
  attachedNetwork: (settings) => (settings as SriovSettings).network,
  hostRefusal: (settings, host, env) => {
    const s = settings as SriovSettings;
    if (s.pf === undefined) return undefined;
    const inv = host.sriov(s.pf);
    if (typeof inv === 'string') return inv;
    return trustRefusal(s, env.trustPfs);
  },
  hostPlan: ({ domain, wired, config, pfVfs }) => ({
    forwards: [],
    vfs: [...wired].flatMap(([nic, t]) => {
      const s = t.settings as SriovSettings;
      if (s.pf === undefined || nic.type !== 'hostdev' || nic.pci === undefined) return [];
      const who = `VM ${quoted(domain.name)} NIC ${nic.mac}`;
      const why = trustRefusal(s, config.sriov.trustPfs);
      if (why) throw new UserError(`${who}: ${why}`);
      const inv = pfVfs?.(s.pf);
      if (inv === undefined) return [];
      if (typeof inv === 'string') throw new UserError(`${who}: ${inv}`);
      const vf = inv.vfs.find((v) => v.pci === nic.pci);
      if (!vf) throw new UserError(`${who}: its PCI device ${nic.pci} is not an enabled VF of ${s.pf} (template ${t.file}); run "virtwire apply" to give it one`);
      const settings: VfSettings = { pf: s.pf, index: vf.index, pci: vf.pci,
        ...(s.trust === undefined ? {} : { trust: s.trust }), ...(s.spoofchk === undefined ? {} : { spoofchk: s.spoofchk }),
        ...(s.maxTxRateMbps === undefined ? {} : { maxTxRateMbps: s.maxTxRateMbps }) };
      return [{ nic: nic.mac, vf: settings }];
    }),
  }),
  summary: (settings) => attached(settings as SriovSettings),
  warnings: () => [],
};

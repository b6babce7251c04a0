// Shapes of host state, shared by the drivers that read or change it (host/)
// and the planning that reasons about it (plan/).

/** A libvirt firewall chain that holds virtwire's accept: which backend, which family. */
export type AcceptTarget = { backend: 'iptables' | 'nftables'; family: 4 | 6 };

import type { VlanSpec } from './vlan.js';

/** A socket the host itself listens on (TCP LISTEN, or a bound UDP socket). */
export interface HostSocket {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  address: string;
  port: number;
}

/** A network link of the host, as sysfs shows it. */
export interface HostLink {
  /** A Linux bridge (sysfs has its bridge/ directory). */
  bridge: boolean;
  /** For a Linux bridge: whether it filters VLANs (bridge/vlan_filtering is 1); absent when the kernel cannot. */
  vlanFiltering?: boolean;
  /** It is a port of a Linux bridge (sysfs has its brport/ directory). */
  bridgePort: boolean;
}

/** The host's links and Open vSwitch bridges, read once per define-time run (host/links.ts). */
export interface HostFacts {
  link(name: string): HostLink | undefined;
  /** The Open vSwitch bridges (`ovs-vsctl list-br`), or why they cannot be listed (Open vSwitch not installed or not running). */
  ovsBridges(): ReadonlySet<string> | string;
  /** The interface backends the daemon's domain capabilities offer ([] when it lists none); undefined when not asked. */
  netBackends(): readonly string[] | undefined;
  /** An SR-IOV PF's VFs (sysfs), or why it has none to give (with the fix). */
  sriov(pf: string): PfInventory | string;
}

/**
 * A network link a binding needs on the host while its VMs run, which
 * virtwire creates when missing (and then owns, and removes when no VM
 * needs it any more): a VLAN sub-interface of an uplink, or a macvlan
 * "host shim" with an address (macvtap).
 */
export type LinkObject =
  | { kind: 'vlan'; name: string; lower: string; vid: number }
  | { kind: 'shim'; name: string; lower: string; address: string; prefix: number };

/** One line for logs and messages: "VLAN sub-interface eth1.100", "host shim vws-1a2b3c4d 198.51.100.5/24 on eth1". */
export function describeLink(l: LinkObject): string {
  return l.kind === 'vlan' ? `VLAN sub-interface ${l.name} (VLAN ${l.vid} of ${l.lower})` : `host shim ${l.name} ${l.address}/${l.prefix} on ${l.lower}`;
}

/** Whether two specs are the same link (a name shared by two VMs must mean one thing). */
export function sameLink(a: LinkObject, b: LinkObject): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A VLAN set on a NIC's tap in its Linux bridge at qemu start (bridge binding, libvirt before 11.0). */
export interface TapVlan {
  bridge: string;
  vlan: VlanSpec;
}

/** A virtual function of an SR-IOV physical function: its index under the PF and its PCI address ("0000:03:10.1"). */
export interface PciVf {
  index: number;
  pci: string;
}

/** A PF's VFs as sysfs shows them: how many it can have, and the enabled ones. */
export interface PfInventory {
  pf: string;
  totalVfs: number;
  vfs: PciVf[];
}

/** A VF a VM's NIC holds, with the settings its template gives (set at qemu start, reset at release). */
export interface VfSettings {
  pf: string;
  index: number;
  pci: string;
  trust?: boolean;
  spoofchk?: boolean;
  maxTxRateMbps?: number;
}

/** "0000:03:10.1" → libvirt's <address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/>, and back. */
export const PCI_ADDRESS = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

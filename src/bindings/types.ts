// The binding interface: how a guest NIC is connected (KubeVirt's word).
// A binding turns the NICs it wires into a host plan; it never runs a
// command (drivers in host/ do, driven by the engine).
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { NetworkInfo } from '../xml/network.js';
import type { Template, BindingSettingsReader } from '../policy/template.js';
import type { GlobalConfig } from '../policy/config.js';
import type { ResolvedForward } from '../model/forward.js';
import type { Lease } from '../host/libvirt-status.js';
import type { PortRange } from '../model/ports.js';
import type { XElement } from '../xml/document.js';
import type { HostFacts, LinkObject, PciVf, PfInventory, TapVlan, VfSettings } from '../model/host.js';

export type { HostFacts, HostLink } from '../model/host.js';

/** A network as define-time planning sees it: its current XML and DHCP leases. */
export interface NetworkView {
  info: NetworkInfo;
  leases: readonly Lease[];
}

/**
 * A DHCP host reservation a NIC needs in its libvirt network: IPv4 keyed by
 * the NIC's MAC (<host mac ip>); IPv6 keyed by a DHCPv6 client id and a name
 * (<host id name ip>: libvirt's IPv6 <host> has no MAC).
 */
export interface Reservation {
  nic: DomainNic;
  network: string;
  family: 4 | 6;
  /** The NIC's MAC. */
  mac: string;
  ip: string;
  /** IPv6: the client's DUID, which dnsmasq hands the address to. */
  id?: string;
  /** IPv6: the host name, by which virtwire's hooks find the VM's reservation (the domain's name). */
  name?: string;
  /** IPv6: which <ip> of the network holds it (net-update --parent-index); IPv4 goes to libvirt's default, the IPv4 <ip> with DHCP. */
  parentIndex?: number;
}

export interface DefineTimeInput {
  domain: DomainInfo;
  /** The NICs this binding wires, with the template that won each. */
  wired: ReadonlyMap<DomainNic, Template>;
  network: (name: string) => NetworkView | undefined;
  /** Seconds since the epoch (lease expiry). */
  now: number;
}

/** A run of host ports a NIC needs allocated from forwards.autoPorts at define time. */
export interface PortRequest {
  nic: DomainNic;
  /** Stable for the NIC across applies: the allocation is kept under it (`auto:tcp:80`, `block`). */
  key: string;
  width: number;
  /** Where it was asked for (file:line:column). */
  origin: string;
  /** For messages: the protocols its forwards use. */
  protos: readonly string[];
}

export interface BindingPlanInput {
  domain: DomainInfo;
  /** The NICs this binding wires, with the template that won each. Possibly none. */
  wired: ReadonlyMap<DomainNic, Template>;
  config: GlobalConfig;
  /** Live network by name (libvirt's status file); undefined if the network is not active. */
  network: (name: string) => NetworkInfo | undefined;
  /** The host's own addresses. */
  hostAddresses: () => readonly string[];
  /**
   * A NIC has no address to forward to yet (no reservation, no template
   * address): true leaves its forwards out for now (the watcher is about to
   * reserve one and apply them live), false or absent refuses with `why`.
   */
  deferMissingAddress?: (nic: DomainNic, why: string) => boolean;
  /** The host ports allocated to this domain's NIC under `key` (the allocation store), if any. */
  allocated: (mac: string, key: string) => PortRange | undefined;
  /** An SR-IOV PF's VFs (sysfs), or why it has none; absent where nothing reads sysfs. */
  pfVfs?: (pf: string) => PfInventory | string;
}

/** What the host must hold for a binding's NICs while the VM runs. */
export interface HostPlan {
  forwards: ResolvedForward[];
  /** Links its NICs need (created at qemu prepare, before QEMU runs), by NIC MAC. */
  links?: Array<{ nic: string; link: LinkObject }>;
  /**
   * VLANs virtwire sets on NICs' taps at qemu start (the tap exists and is in
   * its bridge, QEMU does not run yet), where libvirt does not (a plain Linux
   * bridge before libvirt 11.0: the definition has no <vlan>).
   */
  tapVlans?: Array<{ nic: string; tapVlan: TapVlan }>;
  /** VFs its NICs hold, with the settings qemu start gives them (and release takes back). */
  vfs?: Array<{ nic: string; vf: VfSettings }>;
}

/** What define-time rewriting and its checks know of the daemon and the host. */
export interface RewriteEnv {
  /** The running libvirt's version as libvirt encodes it: major × 1,000,000 + minor × 1,000 + micro. */
  libvirtVersion: number;
  domainUuid: string;
  /**
   * A free VF of `pf` for this NIC (sriov): `current`, the VF it has, when
   * that one is still free; else the lowest free one. Throws UserError when
   * none is. Absent where nothing may be allocated.
   */
  allocateVf?: (pf: string, current: string | undefined) => PciVf;
  /** virtwire.yaml's sriov.trustPfs: the PFs whose VFs templates may trust. */
  trustPfs?: readonly string[];
}

/** A libvirt network a binding's NICs need, defined by `virtwire apply` when missing. */
export interface NetworkDefinition {
  name: string;
  /** The network XML to define when it is missing (none: it must exist). */
  xml?: string;
  /** Why an existing network with this name does not fit, or undefined. */
  refusal(existing: NetworkInfo): string | undefined;
  /** The template that asks for it (file), for messages. */
  origin: string;
}

export interface Binding extends BindingSettingsReader {
  /** The `binding:` value of a template. */
  readonly name: string;
  /** Recorded with every ledger NIC entry, so cleanup after an upgrade knows what it is undoing. */
  readonly version: number;
  /**
   * Whether a NIC of this kind (its <interface type>, its network) can be
   * wired by this binding. A NIC a binding rewrote keeps being matched by the
   * network it was on before (DomainNic.network falls back to the record's `from`).
   */
  takesNic(nic: DomainNic): boolean;
  /**
   * Define time, pure and idempotent: makes the domain's <interface> what the
   * binding attaches it to. Bindings that leave the attachment as the owner
   * wrote it (nat) have none.
   */
  rewriteInterface?(iface: XElement, settings: unknown, env: RewriteEnv): void;
  /** The libvirt network rewriteInterface puts the NIC on, if any (isolated, sriov's hostdev network). */
  attachedNetwork?(settings: unknown): string | undefined;
  /** One line on what a NIC is attached to, for the record and `virtwire status` ("bridge br0, VLAN 100"). */
  attachment?(settings: unknown): string;
  /** Define time: why the host cannot take this template's NICs now (no such bridge or uplink…), with the fix; undefined: it can. */
  hostRefusal?(settings: unknown, host: HostFacts, env: RewriteEnv): string | undefined;
  /** Define time: the libvirt networks its NICs go on that virtwire defines when missing. */
  networks?(settings: unknown, template: Template): NetworkDefinition[];
  /** Pure: the host plan for the NICs this binding wires. Throws UserError with the fix. */
  hostPlan(input: BindingPlanInput): HostPlan;
  /**
   * Why this binding cannot serve a NIC on this (live) network, or undefined.
   * Checked at planning, and again by the network hook when a network
   * (re)starts: NICs it no longer fits lose what the binding gave them.
   */
  networkRefusal?(net: NetworkInfo): string | undefined;
  /** Define time: the DHCP host reservations the NICs it wires still need (bindings without addresses have none). */
  reservations?(input: DefineTimeInput): Reservation[];
  /** Define time: the host ports the NICs it wires need allocated from forwards.autoPorts. */
  portRequests?(input: Pick<DefineTimeInput, 'domain' | 'wired'>): PortRequest[];
  /** Host ports a template asks for by number: never handed out by the allocator. */
  fixedHostPorts?(settings: unknown): PortRange[];
  /** A few words on a template's settings for `virtwire templates check` ("2 forward(s)"). */
  summary(settings: unknown): string;
  /** Things in valid settings an admin should look at (for `templates check`), with where they are written. */
  warnings(settings: unknown, hostAddresses: readonly string[]): Array<{ where: string; message: string }>;
}

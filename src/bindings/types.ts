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
}

/** What the host must hold for a binding's NICs while the VM runs. */
export interface HostPlan {
  forwards: ResolvedForward[];
}

export interface Binding extends BindingSettingsReader {
  /** The `binding:` value of a template. */
  readonly name: string;
  /** Recorded with every ledger NIC entry, so cleanup after an upgrade knows what it is undoing. */
  readonly version: number;
  /** Pure: the host plan for the NICs this binding wires. Throws UserError with the fix. */
  hostPlan(input: BindingPlanInput): HostPlan;
  /**
   * Why this binding cannot serve a NIC on this (live) network, or undefined.
   * Checked at planning, and again by the network hook when a network
   * (re)starts: NICs it no longer fits lose what the binding gave them.
   */
  networkRefusal(net: NetworkInfo): string | undefined;
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

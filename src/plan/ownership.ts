import type { DomainInfo } from '../xml/domain.js';
import { reservedAddress, type NetworkInfo } from '../xml/network.js';
import type { ResolvedForward } from '../model/forward.js';
import { UserError, quoted } from '../errors.js';

/** Another VM's claim on a MAC or an address, as seen in libvirt's files or virtwire's ledger. */
export interface OtherVmView {
  uuid: string;
  name: string;
  /** MACs of its NICs (live XML from libvirt's status file); empty when only the ledger knows it. */
  macs: readonly string[];
  /** Guest addresses it holds: its NICs' reservations and its own forwards' targets. */
  addresses: ReadonlyMap<string, string>;
}

export interface Lease { ip: string; mac?: string; expiry: number }

/**
 * The addresses a running domain holds on the networks it is attached to:
 * each NIC's DHCP reservations (IPv4 by MAC, IPv6 by the domain's name, as
 * libvirt matches them), with how it holds them.
 */
export function reservedAddressesOf(domain: DomainInfo, network: (name: string) => NetworkInfo | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const nic of domain.nics) {
    const net = nic.network ? network(nic.network) : undefined;
    if (!net) continue;
    for (const family of [4, 6] as const) {
      const r = reservedAddress(net, family, nic.mac, domain.name);
      if (r) out.set(r.ip, `its DHCP reservation on network ${quoted(net.name)}`);
    }
  }
  return out;
}

/**
 * A forward must reach only this VM. Refuses, at prepare, a forward whose
 * NIC's MAC appears twice in the domain or on another running VM, whose
 * guest address two of this VM's NICs resolve to, or whose guest address
 * another running VM holds (its reservation, its forwards, or a live DHCP
 * lease to one of its MACs). Without this, a domain that copies a running
 * VM's MAC (or is named after its IPv6 reservation) gets a host port into it.
 */
export function checkOwnership(
  domain: DomainInfo,
  forwards: readonly ResolvedForward[],
  others: readonly OtherVmView[],
  leases: (network: string) => readonly Lease[],
  now = Date.now() / 1000,
): void {
  const vm = quoted(domain.name);
  const nicMacs = new Set(forwards.map((f) => f.nic));
  for (const mac of nicMacs) {
    const same = domain.nics.filter((n) => n.mac === mac);
    if (same.length > 1) {
      throw new UserError(`VM ${vm}: MAC ${mac} appears on ${same.length} of its NICs (#${same.map((n) => n.index + 1).join(' and #')}); a forward must reach exactly one NIC — give each NIC its own MAC (virsh edit)`);
    }
    const other = others.find((o) => o.macs.includes(mac));
    if (other) {
      throw new UserError(`VM ${vm} NIC ${mac}: running VM ${quoted(other.name)} has a NIC with the same MAC; a forward may only reach this VM's own NIC — give this NIC its own MAC (virsh edit)`);
    }
  }
  const addressNic = new Map<string, string>();
  for (const f of forwards) {
    const firstNic = addressNic.get(f.guestAddr);
    if (firstNic !== undefined && firstNic !== f.nic) {
      throw new UserError(`VM ${vm}: NICs ${firstNic} and ${f.nic} both resolve to guest address ${f.guestAddr}; give each NIC its own address`);
    }
    addressNic.set(f.guestAddr, f.nic);
  }
  const ourMacs = new Set(domain.nics.map((n) => n.mac));
  for (const f of forwards) {
    const where = `VM ${vm} NIC ${f.nic}`;
    for (const o of others) {
      const how = o.addresses.get(f.guestAddr);
      if (how) {
        throw new UserError(`${where}: guest address ${f.guestAddr} belongs to running VM ${quoted(o.name)} (${how}); a forward may only reach this VM's own address — fix the DHCP reservation or the template's address:`);
      }
    }
    const lease = leases(f.network).find((l) => l.ip === f.guestAddr && l.mac !== undefined && !ourMacs.has(l.mac) && (l.expiry === 0 || l.expiry > now));
    const holder = lease && others.find((o) => o.macs.includes(lease.mac as string));
    if (lease && holder) {
      throw new UserError(`${where}: guest address ${f.guestAddr} is leased to ${lease.mac}, a NIC of running VM ${quoted(holder.name)}; a forward may only reach this VM's own address — fix the DHCP reservation or the template's address:`);
    }
  }
}

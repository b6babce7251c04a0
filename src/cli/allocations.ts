// What `virtwire apply`, `plan` and `gc` do with the allocation store: a VM's
// host ports from forwards.autoPorts (decided under the reservation lock
// with its DHCP reservations, written with them), and the release of what
// virtwire gave domains libvirt no longer defines.
import type { LibvirtClient } from '../libvirt/client.js';
import type { DomainInfo } from '../xml/domain.js';
import { parseNetwork } from '../xml/network.js';
import { dhcpIpv4, dhcpIpv6 } from '../plan/allocate.js';
import type { TemplateSet } from '../policy/load.js';
import { loadConfig, type GlobalConfig } from '../policy/config.js';
import { planPorts, portChangeText, type PortPlan } from '../engine/allocations.js';
import type { Reservation } from '../engine/reservations.js';
import { AllocationStore, emptyAllocations, own, type Allocations, type MadeReservation } from '../state/allocations.js';
import { Ledger, entryForwards } from '../state/ledger.js';
import { withLock } from '../state/lock.js';
import { formatRange, type PortRange } from '../model/ports.js';
import { errorMessage, quoted } from '../errors.js';
import type { Paths } from '../paths.js';

const warnLine = (line: string): void => { process.stderr.write(`virtwire: ${line}\n`); };

/**
 * The allocation store as one holder of the reservation lock last read or
 * wrote it: the VMs of one `apply` run that share a hold of the lock read
 * the file once, not once per VM (nobody else writes it meanwhile).
 */
export interface HeldStore {
  data?: Allocations;
}

/**
 * One VM's host ports at define time. apply: decide() under the reservation
 * lock from a fresh read of the store, then commit() once its reservations
 * are made. plan (`preview`): the store is read once and never written; each
 * VM's decision is kept in memory, so the next VM's plan sees it.
 */
export class PortStep {
  private readonly store: AllocationStore;
  private data: Allocations | undefined;
  private domain: DomainInfo | undefined;
  private plan: PortPlan | undefined;

  constructor(
    private readonly paths: Paths,
    private readonly templates: TemplateSet,
    private readonly opts: { preview?: boolean; warn?: (line: string) => void; held?: HeldStore; config?: GlobalConfig } = {},
  ) {
    this.store = new AllocationStore(paths.stateDir);
  }

  /** This VM's ports, from the store and the other VMs' forwards applied now. Passes `needs.reservations` through. Throws UserError. */
  decide(needs: { domain: DomainInfo; reservations: Reservation[] }): Reservation[] {
    if (!this.opts.preview || !this.data) this.data = this.opts.held?.data ?? this.readStore();
    const { domain } = needs;
    this.domain = domain;
    this.plan = planPorts({
      domain, templates: this.templates, config: () => this.opts.config ?? loadConfig(this.paths.configFile), configFile: this.paths.configFile,
      store: this.data, applied: appliedPorts(this.paths, domain.uuid),
    });
    if (this.opts.preview) this.data = withVm(this.data, domain, this.plan, []);
    return needs.reservations;
  }

  /** The store from its file: a writer sets an unreadable one aside (and says so), a preview reads around it. */
  private readStore(): Allocations {
    const warn = this.opts.warn ?? warnLine;
    if (this.opts.preview) {
      const r = this.store.read();
      if (r.kind === 'corrupt') warn(`${this.store.file} is unreadable (${r.reason}); apply will set it aside and allocate afresh`);
      return r.kind === 'ok' ? r.data : emptyAllocations();
    }
    const r = this.store.readForUpdate();
    if (r.setAside) warn(r.setAside);
    this.hold(r.data);
    return r.data;
  }

  /** The ports this VM's NIC holds under `key` once applied. */
  readonly allocated = (mac: string, key: string): PortRange | undefined => this.plan?.nics[mac]?.find((a) => a.key === key)?.ports;

  get changed(): boolean {
    return (this.plan?.added.length ?? 0) + (this.plan?.dropped.length ?? 0) > 0;
  }

  /**
   * Under the lock, once `done` (the reservations apply made) are in libvirt:
   * records them and the ports. Returns how to undo that (a later step of
   * the same apply failed), or nothing when nothing was written.
   */
  commit(done: readonly Reservation[]): (() => void) | undefined {
    const { data, domain, plan } = this;
    if (!data || !domain || !plan || this.opts.preview) throw new Error('PortStep.commit before decide (or in preview)');
    const before = own(data.vms, domain.uuid);
    if (!this.changed && done.length === 0 && (!before || before.name === domain.name)) return undefined;
    const after = withVm(data, domain, plan, done);
    this.store.write(after);
    this.hold(after);
    return () => { this.store.write(data); this.hold(data); };
  }

  private hold(data: Allocations): void {
    if (this.opts.held) this.opts.held.data = data;
  }

  /** For the VM's line: what changed ("allocated host ports …"). */
  text(): string[] {
    return this.plan ? portChangeText(this.plan, this.opts.preview === true) : [];
  }
}

/** The store with this VM's entry as the plan leaves it (none when it holds nothing). */
function withVm(data: Allocations, domain: DomainInfo, plan: PortPlan, done: readonly Reservation[]): Allocations {
  const before = own(data.vms, domain.uuid);
  const reservations: MadeReservation[] = [...(before?.reservations ?? []), ...done.map((r): MadeReservation => (
    r.family === 6 ? { network: r.network, mac: r.mac, ip: r.ip, id: r.id, name: r.name } : { network: r.network, mac: r.mac, ip: r.ip }))];
  const vms = { ...data.vms };
  delete vms[domain.uuid];
  if (Object.keys(plan.nics).length || reservations.length) {
    vms[domain.uuid] = { name: domain.name, nics: plan.nics, reservations, updatedAt: new Date().toISOString() };
  }
  return { ...data, vms };
}

/** Host ports of forwards applied (or reserved) now for other VMs: the ledger. */
function appliedPorts(paths: Paths, self: string): PortRange[] {
  return new Ledger(paths.runDir).listVms().filter((e) => e.uuid !== self).flatMap((e) => entryForwards(e).map((f) => f.host));
}

/** The libvirt calls a release makes (a fake stands in for it in tests). */
export type ReleaseClient = Pick<LibvirtClient, 'listDomainUuids' | 'listNetworks' | 'networkXml' | 'updateDhcpHost'>;

/**
 * Under the reservation lock: for every domain in the store that libvirt no
 * longer defines, deletes the DHCP host reservations virtwire made for it
 * (only where that very <host mac ip> is still there, live and config) and
 * forgets its host ports. One line per domain; returns false if one failed
 * (it stays in the store, to be retried).
 */
export async function releaseGone(client: ReleaseClient, paths: Paths, out: (s: string) => void): Promise<boolean> {
  const store = new AllocationStore(paths.stateDir);
  return withLock(new Ledger(paths.runDir).reserveLockFile, async () => {
    const { data, setAside } = store.readForUpdate();
    if (setAside) warnLine(setAside);
    const defined = new Set(await client.listDomainUuids());
    const networks = await client.listNetworks();
    let ok = true;
    for (const [uuid, vm] of Object.entries(data.vms)) {
      if (defined.has(uuid)) continue;
      const what = `VM ${quoted(vm.name)} (${uuid}, no longer defined)`;
      const left: MadeReservation[] = [];
      const released: string[] = [];
      for (const r of vm.reservations) {
        try {
          const net = networks.find((n) => n.name === r.network);
          if (net && await deleteIfPresent(client, net, r)) released.push(`reservation ${r.ip} of NIC ${r.mac} on network ${quoted(r.network)}`);
        } catch (err) {
          left.push(r);
          out(`${what}: error: could not delete reservation ${r.ip} of NIC ${r.mac} on network ${quoted(r.network)}: ${errorMessage(err)}\n`);
          ok = false;
        }
      }
      const ports = Object.entries(vm.nics).flatMap(([mac, list]) => list.map((a) => `host ports ${formatRange(a.ports)} of NIC ${mac}`));
      const vms = { ...data.vms };
      if (left.length) vms[uuid] = { ...vm, nics: {}, reservations: left };
      else delete vms[uuid];
      data.vms = vms;
      store.write(data);
      out(`${what}: released ${[...ports, ...released].join(', ') || 'nothing left to release'}\n`);
    }
    return ok;
  });
}

/**
 * Deletes `r` from the network's live and persistent XML where it is there
 * exactly (IPv4: mac and ip; IPv6: id, name and ip); true if it was anywhere.
 */
async function deleteIfPresent(client: ReleaseClient, net: { uuid: string; active: boolean; persistent: boolean }, r: MadeReservation): Promise<boolean> {
  const v6 = r.id !== undefined;
  const find = async (inactive: boolean) => {
    const info = parseNetwork(await client.networkXml(net.uuid, { inactive }));
    const ip = v6 ? dhcpIpv6(info) : dhcpIpv4(info);
    const there = ip?.hosts.some((h) => (v6 ? h.id === r.id && h.name === r.name : h.mac === r.mac) && h.ip === r.ip) ?? false;
    return { there, parentIndex: ip?.index };
  };
  const live = net.active ? await find(false) : { there: false, parentIndex: undefined };
  const config = net.persistent ? await find(true) : { there: false, parentIndex: undefined };
  if (!live.there && !config.there) return false;
  const host = v6 ? { id: r.id, name: r.name, ip: r.ip } : { mac: r.mac, ip: r.ip };
  await client.updateDhcpHost(net.uuid, 'delete', host, { live: live.there, config: config.there, parentIndex: v6 ? (live.parentIndex ?? config.parentIndex) : undefined });
  return true;
}

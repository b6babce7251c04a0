// What `virtwire plan` and `virtwire apply` share: which domains, what each
// needs (engine/reservations.ts), read from libvirt through the client.
import { LibvirtClient, type Domain, type Network } from '../libvirt/client.js';
import { parseDomain, type DomainInfo } from '../xml/domain.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import { readLeases } from '../host/libvirt-status.js';
import { loadTemplates, type TemplateSet } from '../policy/load.js';
import { BINDINGS } from '../bindings/registry.js';
import { plannedReservations, withHost, type NetworkView, type Reservation } from '../engine/reservations.js';
import { UserError, quoted } from '../errors.js';
import type { Paths } from '../paths.js';
import { withLock } from '../state/lock.js';

export const DEFAULT_URI = 'qemu:///system';

/** Options both commands take. */
export const SELECT_OPTIONS = {
  all: { type: 'boolean' },
  connect: { type: 'string' },
} as const;

export const SELECT_HELP = {
  all: 'Every domain libvirt knows (running or not).',
  connect: `libvirt connection URI (default ${DEFAULT_URI}).`,
} as const;

/** A VM asked for: found in libvirt, or the one-line reason it was not. */
export type Selected = { name: string; domain: Domain } | { name: string; error: string };

/** The domains named (byte-exact) or, with --all, every domain; an unknown name is an error line, not a stop. */
export async function selectDomains(client: LibvirtClient, names: readonly string[], all: boolean): Promise<Selected[]> {
  if (all === (names.length > 0)) throw new UserError('name the VMs to act on, or give --all (not both)');
  const domains = await client.listDomains();
  if (all) return domains.map((d) => ({ name: d.name, domain: d }));
  return names.map((name) => {
    const domain = domains.find((d) => d.name === name);
    return domain ? { name, domain } : { name, error: `no domain named ${quoted(name)} in libvirt; check "virsh list --all"` };
  });
}

/** Reads networks by name from libvirt (their current XML — live when active — and leases), once each. */
export class NetworkReader {
  private list: Promise<Network[]> | undefined;
  private readonly views = new Map<string, NetworkView & { uuid: string; active: boolean; persistent: boolean; xml: string }>();

  constructor(private readonly client: LibvirtClient, private readonly paths: Paths) {}

  /**
   * Counts a planned reservation as made (plan --all: the next VM's plan
   * sees it, as apply's would). Only for a network read() has read.
   */
  note(r: Reservation): void {
    const v = this.views.get(r.network);
    if (v) this.views.set(r.network, { ...v, info: withHost(v.info, r.mac, r.ip) });
  }

  /** A network read() has read already. */
  peek(name: string): NetworkInfo | undefined {
    return this.views.get(name)?.info;
  }

  async read(name: string): Promise<(NetworkView & { uuid: string; active: boolean; persistent: boolean; xml: string }) | undefined> {
    const cached = this.views.get(name);
    if (cached) return cached;
    this.list ??= this.client.listNetworks();
    const net = (await this.list).find((n) => n.name === name);
    if (!net) return undefined;
    const xml = await this.client.networkXml(net.uuid);
    const info = parseNetwork(xml);
    const view = { info, leases: readLeases(this.paths.libvirtLibDir, info.bridge), uuid: net.uuid, active: net.active, persistent: net.persistent, xml };
    this.views.set(name, view);
    return view;
  }
}

/** A domain's persistent definition and the reservations it needs, given fresh network views. */
export async function domainNeeds(
  client: LibvirtClient,
  networks: NetworkReader,
  templates: TemplateSet,
  d: Domain,
): Promise<{ domain: DomainInfo; reservations: Reservation[] }> {
  const domain = parseDomain(await client.domainXml(d.uuid, { inactive: true }), `domain ${quoted(d.name)}`);
  const views = new Map<string, NetworkView | undefined>();
  for (const nic of domain.nics) if (nic.network && !views.has(nic.network)) views.set(nic.network, await networks.read(nic.network));
  const reservations = plannedReservations({ domain, templates, network: (n) => views.get(n), now: Math.floor(Date.now() / 1000) });
  return { domain, reservations };
}

export function templatesOf(paths: Paths): TemplateSet {
  return loadTemplates(paths.templatesDir, BINDINGS);
}

/**
 * The one step apply takes under the reservation lock: decide from a fresh
 * read (`needs`), then write each reservation (`add`) and record what was
 * done (`commit`: the allocation store) before the lock goes, so a
 * concurrent apply's decision sees it.
 */
export function reserveLocked(
  lockFile: string,
  needs: () => Promise<Reservation[]>,
  add: (r: Reservation) => Promise<void>,
  remove?: (r: Reservation) => Promise<void>,
  commit?: (done: Reservation[]) => void,
): Promise<Reservation[]> {
  return withLock(lockFile, async () => {
    const rs = await needs();
    const done: Reservation[] = [];
    try {
      for (const r of rs) { await add(r); done.push(r); }
      commit?.(done);
    } catch (err) {
      // All of a VM's reservations or none: take back the ones made before the failure.
      for (const r of done.reverse()) await remove?.(r).catch(() => undefined);
      throw err;
    }
    return rs;
  });
}

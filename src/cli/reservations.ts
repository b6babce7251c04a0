// What `virtwire plan` and `virtwire apply` share: which domains, what each
// needs (engine/reservations.ts), read from libvirt through the client.
import type { LibvirtClient, DhcpHost, Domain, Network } from '../libvirt/client.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import { readLeases } from '../host/libvirt-status.js';
import { loadTemplates, type TemplateSet } from '../policy/load.js';
import { BINDINGS } from '../bindings/registry.js';
import { loadPlugins } from '../bindings/plugins.js';
import { withHost, type NetworkView, type Reservation } from '../engine/reservations.js';
import { templatesCacheFile } from '../engine/reserve.js';
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
  connect: `libvirt connection URI on this host (default ${DEFAULT_URI}).`,
} as const;

/**
 * The connection URI to use: --connect, or the default. Only a daemon on
 * this host: virtwire changes this host's firewall, ledger and lease view
 * beside libvirt's state, so a remote URI (one naming a host, such as
 * qemu+ssh://kvm2/system) would split them across two machines.
 */
export function localUri(value: string | undefined): string {
  const uri = value ?? DEFAULT_URI;
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri)?.[1];
  if (authority === undefined) throw new UserError(`--connect ${quoted(uri)} is not a libvirt URI such as ${DEFAULT_URI}`);
  if (authority !== '') {
    throw new UserError(`--connect ${quoted(uri)} names a remote host; virtwire acts on the firewall and state of the host it runs on: run it there (ssh HOST virtwire …)`);
  }
  return uri;
}

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
    if (v) this.views.set(r.network, { ...v, info: withHost(v.info, r) });
  }

  /** A network read() has read already. */
  peek(name: string): NetworkInfo | undefined {
    return this.views.get(name)?.info;
  }

  /** The XML of a network read() has read already, as libvirt gave it. */
  xmlOf(name: string): string | undefined {
    return this.views.get(name)?.xml;
  }

  /** Reads the network again next time (it was started or defined meanwhile). */
  forgetNetwork(name: string): void {
    this.views.delete(name);
    this.list = undefined;
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

/** A reservation's <host>: IPv4 by MAC, IPv6 by DHCPv6 client id and name. */
export function hostOf(r: Reservation): DhcpHost {
  return r.family === 4 ? { mac: r.mac, ip: r.ip } : { id: r.id, name: r.name, ip: r.ip };
}

/** How apply's changed line names a reservation. */
export function reservationText(r: Reservation): string {
  const v6 = r.family === 6 ? ` (DHCPv6 client ${r.id}, name ${quoted(r.name ?? '')})` : '';
  return `reserved ${r.ip} for NIC ${r.mac} on network ${quoted(r.network)}${v6}`;
}

/** Adds or deletes a reservation in its network (read by `networks`): live when active, config when persistent. */
export async function updateReservation(client: LibvirtClient, networks: NetworkReader, r: Reservation, command: 'add' | 'delete'): Promise<void> {
  const net = await networks.read(r.network);
  if (!net) throw new UserError(`network ${quoted(r.network)} disappeared while virtwire reserved ${r.ip} in it; run virtwire apply again`);
  await client.updateDhcpHost(net.uuid, command, hostOf(r), { live: net.active, config: net.persistent, parentIndex: r.parentIndex });
}

/**
 * The templates, with the plugins' bindings. `throughHookCache`: read through
 * the parse cache the hooks read (engine/reserve.ts templatesCacheFile), so the
 * next start finds them parsed — the watcher, when it reloads them.
 */
export function templatesOf(paths: Paths, throughHookCache = false): TemplateSet {
  const plugins = loadPlugins(paths.pluginsDir);
  return loadTemplates(paths.templatesDir, BINDINGS, throughHookCache ? templatesCacheFile(paths, plugins.length > 0) : undefined);
}

/**
 * The one step apply takes under the reservation lock: decide from a fresh
 * read (`needs`), write each reservation (`add`), record what was done
 * (`commit`: the allocation store; it may return how to undo that), then
 * do what follows (`then`: a running VM's forwards, which read the store)
 * before the lock goes, so a concurrent apply's decision sees it all. A VM
 * gets all of it or none: a failure anywhere undoes the commit and takes
 * back the reservations made.
 */
export function reserveLocked(lockFile: string, ...steps: Parameters<typeof reserveSteps>): Promise<Reservation[]> {
  return withLock(lockFile, () => reserveSteps(...steps));
}

/** reserveLocked's steps, for a caller that holds the reservation lock already (apply of many VMs). */
export async function reserveSteps(
  needs: () => Promise<Reservation[]>,
  add: (r: Reservation) => Promise<void>,
  remove?: (r: Reservation) => Promise<void>,
  commit?: (done: Reservation[]) => void | (() => void),
  then?: (made: Reservation[]) => Promise<void>,
): Promise<Reservation[]> {
  const rs = await needs();
  const done: Reservation[] = [];
  let undo: (() => void) | undefined;
  try {
    for (const r of rs) { await add(r); done.push(r); }
    undo = commit?.(done) ?? undefined;
    await then?.(rs);
  } catch (err) {
    undo?.();
    for (const r of done.reverse()) await remove?.(r).catch(() => undefined);
    throw err;
  }
  return rs;
}

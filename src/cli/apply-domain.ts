// One domain through define-time wiring, as `virtwire apply` and the watcher
// do it: reservations and host ports under the reservation lock, a running
// VM's forwards moved live, the decisions recorded in its definition.
import type { LibvirtClient, Domain } from '../libvirt/client.js';
import { Ledger } from '../state/ledger.js';
import { withLock } from '../state/lock.js';
import { loadConfig, type GlobalConfig } from '../policy/config.js';
import { parseDomain } from '../xml/domain.js';
import type { HookContext } from '../engine/context.js';
import { rewireVm } from '../engine/lifecycle.js';
import type { Reservation } from '../engine/reservations.js';
import type { TemplateSet } from '../policy/load.js';
import { errorMessage, quoted } from '../errors.js';
import { NetworkReader, reservationText, reserveSteps, updateReservation } from './reservations.js';
import { attachmentChanges, wireDomain, type VmWiring } from './wire.js';
import { PortStep, type HeldStore } from './allocations.js';
import type { Paths } from '../paths.js';
import { DefineHost } from './define-host.js';
import { runCommand } from '../host/run.js';
import { ensureNetworks } from './networks.js';

/**
 * What the VMs applied during one hold of the reservation lock share: the
 * networks and the allocation store read once under the lock (each VM's
 * reservations and ports noted in them as it goes: nobody else reserves
 * while the lock is held), and virtwire.yaml.
 */
export class HeldReservations {
  networks: NetworkReader;
  store: HeldStore = {};
  /** The daemon's version and the host's links, for the NICs' attachments. */
  readonly host: DefineHost;
  private loaded: GlobalConfig | undefined;

  constructor(private readonly client: LibvirtClient, private readonly paths: Paths) {
    this.networks = new NetworkReader(client, paths);
    this.host = new DefineHost(client, runCommand);
  }

  /** virtwire.yaml, read at the first VM that needs it (a bad file is that VM's error, and the next one's). */
  get config(): GlobalConfig {
    return (this.loaded ??= loadConfig(this.paths.configFile));
  }

  /** After a VM failed: what was noted for it may not be in libvirt; read again. */
  forget(): void {
    this.networks = new NetworkReader(this.client, this.paths);
    this.store = {};
  }
}

/**
 * Runs `each` for items from `next` while holding the reservation lock, for
 * at most `holdMs` per hold (then lets others in and takes it again), so
 * many VMs pay for one lock and one read of the networks and the store, and
 * a concurrent apply or the watcher waits no longer than that. `each` must
 * not throw; `lockFailed` reports an item that could not get the lock.
 */
export async function underReservationLock<T>(
  client: LibvirtClient,
  paths: Paths,
  items: readonly T[],
  each: (item: T, held: HeldReservations) => Promise<void>,
  lockFailed: (item: T, err: unknown) => void,
  holdMs = 2000,
): Promise<void> {
  const lockFile = new Ledger(paths.runDir).reserveLockFile;
  let i = 0;
  while (i < items.length) {
    let locked = false;
    try {
      await withLock(lockFile, async () => {
        locked = true;
        const held = new HeldReservations(client, paths);
        const until = Date.now() + holdMs;
        do await each(items[i++] as T, held); while (i < items.length && Date.now() < until);
      });
    } catch (err) {
      if (locked) throw err;
      lockFailed(items[i] as T, err);
      i++;
    }
  }
}

/** applyDomain under its own hold of the reservation lock (the watcher, one VM). */
export async function applyDomain(client: LibvirtClient, paths: Paths, ctx: () => HookContext, templates: TemplateSet, d: Domain): Promise<string[]> {
  return withLock(new Ledger(paths.runDir).reserveLockFile, () => applyDomainHeld(client, paths, ctx, templates, d, new HeldReservations(client, paths)));
}

/**
 * One VM, all or nothing as far as it can be: reservations (taken back if a
 * later step fails), then the running VM's forwards (one table replace),
 * then the definition with the decisions recorded. Returns what changed.
 * The caller holds the reservation lock, and `held` was read under it.
 */
export async function applyDomainHeld(client: LibvirtClient, paths: Paths, ctx: () => HookContext, templates: TemplateSet, d: Domain, held: HeldReservations): Promise<string[]> {
  try {
    return await applyHeld(client, paths, ctx, templates, d, held);
  } catch (err) {
    held.forget();
    throw err;
  }
}

async function applyHeld(client: LibvirtClient, paths: Paths, ctx: () => HookContext, templates: TemplateSet, d: Domain, held: HeldReservations): Promise<string[]> {
  const { networks, config, host } = held;
  const changes: string[] = [];
  const dhcp = (r: Reservation, how: 'add' | 'delete'): Promise<void> => updateReservation(client, networks, r, how);
  const ports = new PortStep(paths, templates, { held: held.store, config });
  let first: VmWiring | undefined;
  const made = await reserveSteps(
    async () => (first = await wireDomain(client, networks, templates, config, d, { forDefine: d.persistent, host, ports })).reservations,
    (r) => dhcp(r, 'add'),
    (r) => dhcp(r, 'delete'),
    (done) => ports.commit(done),
    async (rs) => {
      changes.push(...rs.map(reservationText), ...ports.text());
      if (d.state !== 'running' && d.state !== 'paused') return;
      // A refusal here (a port another VM holds) changes nothing on the host and takes the reservations back.
      const { moved } = await rewireVm(ctx(), parseDomain(await client.domainXml(d.uuid), `domain ${quoted(d.name)}`));
      if (moved.length) changes.push(`forwards moved live: ${moved.join(', ')}`);
    },
  );
  if (!d.persistent) return changes; // a transient domain has no definition to record in
  // With the reservations in place, the wiring as it will be recorded: the domain re-read, the
  // networks with what this VM reserved noted. Nothing reserved, no port moved: that is the first read.
  const w = made.length === 0 && !ports.changed && first
    ? first
    : await wireDomain(client, networks, templates, config, d, { forDefine: true, host, ports: new PortStep(paths, templates, { preview: true, held: held.store, config }) });
  // The networks its NICs go on, before the definition that names them.
  changes.push(...await ensureNetworks(client, networks, paths, w.networks));
  if (w.xmlAfter !== w.xmlBefore) {
    const attached = attachmentChanges(w);
    try {
      await client.defineDomain(w.xmlAfter);
    } catch (err) {
      throw new Error(`${changes.length ? `${changes.join('; ')}; but ` : ''}defining it with its wiring${attached.length ? ` (${attached.join(', ')})` : ''} failed: ${errorMessage(err)}`);
    }
    const live = d.state === 'running' || d.state === 'paused';
    changes.push(...attached.map((a) => `${a}${live ? ' (from its next start: the running guest keeps its NIC)' : ''}`), 'recorded its wiring in the domain <metadata>');
  }
  return changes;
}

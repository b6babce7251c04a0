// One domain through define-time wiring, as `virtwire apply` and the watcher
// do it: reservations and host ports under the reservation lock, a running
// VM's forwards moved live, the decisions recorded in its definition.
import type { LibvirtClient, Domain } from '../libvirt/client.js';
import { Ledger } from '../state/ledger.js';
import { loadConfig } from '../policy/config.js';
import { parseDomain } from '../xml/domain.js';
import type { HookContext } from '../engine/context.js';
import { rewireVm } from '../engine/lifecycle.js';
import type { Reservation } from '../engine/reservations.js';
import type { TemplateSet } from '../policy/load.js';
import { errorMessage, quoted } from '../errors.js';
import { NetworkReader, reservationText, reserveLocked, updateReservation } from './reservations.js';
import { wireDomain } from './wire.js';
import { PortStep } from './allocations.js';
import type { Paths } from '../paths.js';

/**
 * One VM, all or nothing as far as it can be: reservations (taken back if a
 * later step fails), then the running VM's forwards (one table replace),
 * then the definition with the decisions recorded. Returns what changed.
 */
export async function applyDomain(client: LibvirtClient, paths: Paths, ctx: () => HookContext, templates: TemplateSet, d: Domain): Promise<string[]> {
  const config = loadConfig(paths.configFile);
  // Fresh network XML and leases under the lock: what another apply just reserved is seen.
  const networks = new NetworkReader(client, paths);
  const changes: string[] = [];
  const dhcp = (r: Reservation, how: 'add' | 'delete'): Promise<void> => updateReservation(client, networks, r, how);
  const ports = new PortStep(paths, templates);
  await reserveLocked(
    new Ledger(paths.runDir).reserveLockFile,
    async () => (await wireDomain(client, networks, templates, config, d, { forDefine: d.persistent, ports })).reservations,
    (r) => dhcp(r, 'add'),
    (r) => dhcp(r, 'delete'),
    (done) => ports.commit(done),
    async (made) => {
      changes.push(...made.map(reservationText), ...ports.text());
      if (d.state !== 'running' && d.state !== 'paused') return;
      // A refusal here (a port another VM holds) changes nothing on the host and takes the reservations back.
      const { moved } = await rewireVm(ctx(), parseDomain(await client.domainXml(d.uuid), `domain ${quoted(d.name)}`));
      if (moved.length) changes.push(`forwards moved live: ${moved.join(', ')}`);
    },
  );
  if (!d.persistent) return changes; // a transient domain has no definition to record in
  // With the reservations in place, the wiring as it will be recorded (re-read: libvirt holds the truth).
  const w = await wireDomain(client, new NetworkReader(client, paths), templates, config, d, { forDefine: true, ports: new PortStep(paths, templates, { preview: true }) });
  if (w.xmlAfter !== w.xmlBefore) {
    try {
      await client.defineDomain(w.xmlAfter);
    } catch (err) {
      throw new Error(`${changes.length ? `${changes.join('; ')}; but ` : ''}recording the wiring in its <metadata> failed: ${errorMessage(err)}`);
    }
    changes.push('recorded its wiring in the domain <metadata>');
  }
  return changes;
}

// The libvirt networks wired NICs need (isolated binding): defined, started
// and set to autostart by `virtwire apply` when missing, and recorded as
// virtwire's; removed by `virtwire gc` / `apply --all` once no domain names
// them. A network virtwire did not define is checked, never changed.
import type { LibvirtClient } from '../libvirt/client.js';
import type { NetworkDefinition } from '../bindings/types.js';
import type { NetworkReader } from './reservations.js';
import type { Paths } from '../paths.js';
import { OwnedNetworkStore } from '../state/owned-networks.js';
import { parseXmlDocument } from '../xml/document.js';
import { UserError, errorMessage, quoted } from '../errors.js';

/**
 * Makes every network in `needed` exist and run. Returns what it did, for
 * the VM's line. The caller holds the reservation lock (the store's writer lock).
 */
/** The network of that name as libvirt has it, refused (UserError) when it does not fit the template; undefined when there is none. */
async function fittingNetwork(networks: NetworkReader, def: NetworkDefinition): Promise<Awaited<ReturnType<NetworkReader['read']>>> {
  const existing = await networks.read(def.name);
  const why = existing && def.refusal(existing.info);
  if (why) throw new UserError(`template ${def.origin}: ${why}`);
  return existing;
}

export async function ensureNetworks(client: LibvirtClient, networks: NetworkReader, paths: Paths, needed: readonly NetworkDefinition[]): Promise<string[]> {
  const done: string[] = [];
  for (const def of needed) {
    const existing = await fittingNetwork(networks, def);
    if (existing) {
      if (!existing.active) {
        const owned = new OwnedNetworkStore(paths.stateDir).read()[existing.uuid];
        if (!owned) throw new UserError(`network ${quoted(def.name)} is not running, and virtwire did not define it; start it ("virsh net-start ${def.name}") and mark it to autostart`);
        await client.startNetwork(existing.uuid, { autostart: true });
        done.push(`started network ${quoted(def.name)}`);
        networks.forgetNetwork(def.name);
      }
      continue;
    }
    if (!def.xml) throw new UserError(`template ${def.origin}: there is no network ${quoted(def.name)}; define it`);
    const { uuid } = await client.defineNetwork(def.xml);
    const store = new OwnedNetworkStore(paths.stateDir);
    store.write({ ...store.read(), [uuid]: { name: def.name, template: def.origin, definedAt: new Date().toISOString() } });
    try {
      await client.startNetwork(uuid, { autostart: true });
    } catch (err) {
      throw new Error(`defined network ${quoted(def.name)}, but it does not start: ${errorMessage(err)}`);
    }
    networks.forgetNetwork(def.name);
    done.push(`defined and started network ${quoted(def.name)}`);
  }
  return done;
}

/** What ensureNetworks would do, changing nothing (plan); a network that does not fit throws, as apply would. */
export async function networksToDefine(networks: NetworkReader, needed: readonly NetworkDefinition[]): Promise<string[]> {
  const out: string[] = [];
  for (const def of needed) {
    const existing = await fittingNetwork(networks, def);
    if (existing) {
      if (!existing.active) out.push(`network ${quoted(def.name)} is not running: apply starts it if virtwire defined it, else refuses`);
    } else out.push(`would define, start and autostart network ${quoted(def.name)}:\n${(def.xml ?? '').trimEnd().split('\n').map((l) => `    ${l}`).join('\n')}`);
  }
  return out;
}

/** The networks a domain XML's <interface type='network'>s name. */
export function networksNamed(domainXml: string): string[] {
  return parseXmlDocument(domainXml).findAll('domain/devices/interface')
    .filter((i) => i.getAttribute('type') === 'network')
    .map((i) => i.elements('source')[0]?.getAttribute('network'))
    .filter((n): n is string => n !== undefined);
}

/**
 * Removes each network virtwire defined that no domain names any more
 * (persistent definitions and running domains' live XML alike). Returns
 * false if one could not be removed. The caller holds the reservation lock.
 */
export async function releaseUnusedNetworks(client: LibvirtClient, paths: Paths, out: (s: string) => void): Promise<boolean> {
  const store = new OwnedNetworkStore(paths.stateDir);
  let owned = store.read();
  if (Object.keys(owned).length === 0) return true;
  const inUse = new Set<string>();
  for (const d of await client.listDomains()) {
    if (d.persistent) for (const n of networksNamed(await client.domainXml(d.uuid, { inactive: true }))) inUse.add(n);
    if (d.state === 'running' || d.state === 'paused') for (const n of networksNamed(await client.domainXml(d.uuid))) inUse.add(n);
  }
  let ok = true;
  for (const [uuid, n] of Object.entries(owned)) {
    const net = await client.getNetwork(uuid);
    if (net && inUse.has(net.name)) continue;
    try {
      if (net) await client.removeNetwork(uuid);
      const { [uuid]: _gone, ...rest } = owned;
      owned = rest;
      store.write(owned);
      if (net) out(`network ${quoted(n.name)} (defined by virtwire for ${n.template}): removed, no domain uses it\n`);
    } catch (err) {
      ok = false;
      out(`network ${quoted(n.name)}: error: could not remove it: ${errorMessage(err)}\n`);
    }
  }
  return ok;
}

// The decisions a VM start needs, shared by the qemu hook (prepare), its
// rebuild on reconnect, and `virtwire reconcile`: one code path.
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { NetworkInfo } from '../xml/network.js';
import { join } from 'node:path';
import { loadTemplates } from '../policy/load.js';
import { loadConfig, type GlobalConfig } from '../policy/config.js';
import { resolveForwards } from './wiring.js';
import { checkVmLimits, checkHostLimit, totalElements } from '../plan/limits.js';
import { checkConflicts } from '../plan/conflicts.js';
import { checkOwnership, reservedAddressesOf, type Lease, type OtherVmView } from '../plan/ownership.js';
import type { VmPlan } from '../plan/types.js';
import type { HostSocket } from '../host/listening.js';
import type { RunningDomain } from '../host/libvirt-status.js';
import { LEDGER_SCHEMA, entryForwards, entryLinks, entryVfs, type Ledger, type VmEntry } from '../state/ledger.js';
import { describeLink, sameLink, type LinkObject, type TapVlan, type VfSettings } from '../model/host.js';
import { readPf } from '../host/sriov.js';
import { dropinEnv, type DropinHook } from '../host/dropins.js';
import { findDropins } from './dropins.js';
import { BINDINGS, bindingNamed } from '../bindings/registry.js';
import { loadPlugins } from '../bindings/plugins.js';
import { entryIsLive } from '../state/liveness.js';
import type { Paths } from '../paths.js';
import type { PortRange } from '../model/ports.js';
import { UserError, errorMessage, quoted } from '../errors.js';

/** What planning reads from the host (files only: hooks must never call libvirt). */
export interface PlanSources {
  paths: Paths;
  network: (name: string) => NetworkInfo | undefined;
  hostAddresses: () => readonly string[];
  /** Host ports allocated to a VM's NIC under a key (the allocation store). */
  allocated: (uuid: string, mac: string, key: string) => PortRange | undefined;
}

/** planVm at qemu prepare: NICs with no address yet are left pending while the watcher runs. */
export interface PlanOptions {
  watcherRuns?: () => boolean;
}

/**
 * Where hook runs keep parsed templates between runs (policy/parse-cache.ts);
 * none with plugins: the cache's key does not cover a plugin's code.
 */
export function templatesCacheFile(paths: Pick<Paths, 'runDir'>, withPlugins: boolean): string | undefined {
  return withPlugins ? undefined : join(paths.runDir, 'templates.cache.json');
}

/** Where hook runs keep the parsed virtwire.yaml between runs. */
export function configCacheFile(paths: Pick<Paths, 'runDir'>): string {
  return join(paths.runDir, 'config.cache.json');
}

/**
 * Templates + metadata → this VM's forwards, with the per-forward and
 * per-VM bounds checked. Pure apart from reading templates and config;
 * runs before the lock is taken. Returns undefined when nothing concerns
 * the VM (no template, no metadata): the caller has nothing to do.
 */
export function planVm(domain: DomainInfo, src: PlanSources, opts: PlanOptions = {}): { plan: VmPlan; config: GlobalConfig; pending: string[] } | undefined {
  const plugins = loadPlugins(src.paths.pluginsDir);
  const templates = loadTemplates(src.paths.templatesDir, BINDINGS, templatesCacheFile(src.paths, plugins.length > 0));
  const concerned = templates.templates.length + templates.broken.length > 0
    || domain.metadata.forwards.length + domain.metadata.templates.length > 0;
  if (!concerned) return undefined;
  const config = loadConfig(src.paths.configFile, configCacheFile(src.paths));
  const pending = new Set<string>();
  // A domain defined and started at once (virt-install, virt-manager's "Begin Installation") races
  // the watcher: with it running, a NIC not reserved yet starts without its forwards, which the
  // watcher applies live once it has reserved the address. Without it, the start is refused.
  const defer = opts.watcherRuns && ((nic: DomainNic): boolean => {
    if (!opts.watcherRuns?.()) return false;
    pending.add(nic.mac);
    return true;
  });
  const plan = resolveForwards({ domain, templates, config, network: src.network, hostAddresses: src.hostAddresses,
    pfVfs: (pf) => readPf(src.paths.sysDir, pf),
    allocated: (mac, key) => src.allocated(domain.uuid, mac, key), deferMissingAddress: defer || undefined,
  });
  checkVmLimits(domain.name, plan.forwards, config.limits);
  // Drop-ins of the NICs' bindings: found (and their trust checked: an untrusted one refuses here) per binding.
  const found = new Map<string, DropinHook[]>();
  for (const n of plan.nics) {
    let hooks = found.get(n.binding);
    if (!hooks) {
      try { hooks = findDropins(src.paths.hooksDir, n.binding); } catch (err) { throw new UserError(`VM ${quoted(domain.name)} NIC ${n.mac}: ${errorMessage(err)}`); }
      found.set(n.binding, hooks);
    }
    if (hooks.length === 0) continue;
    const t = templates.templates.find((x) => x.name === n.template);
    plan.dropins.push({ nic: n.mac, dropin: { hooks, env: dropinEnv({ vm: domain.name, uuid: domain.uuid, mac: n.mac, binding: n.binding, template: n.template, settings: t?.settings }) } });
  }
  return { plan, config, pending: [...pending] };
}

export interface ClaimSources {
  ledger: Ledger;
  network: (name: string) => NetworkInfo | undefined;
  /** Other domains libvirt runs (status files), for MACs and reservations. */
  running: readonly RunningDomain[];
  runningUuids: ReadonlySet<string>;
  leases: (network: string) => readonly Lease[];
  /** The host's listening sockets, read before the lock was taken (engine/lifecycle.ts). */
  hostSockets: readonly HostSocket[];
}

/** What rebuilding a lost entry needs: planning's sources and claim's. */
export interface EngineContext extends PlanSources {
  ledger: Ledger;
  leases: (network: string) => readonly Lease[];
  log: { info: (msg: string) => void };
}

/**
 * Sets corrupt ledger files aside and rebuilds the entries of running VMs
 * among them from their live XML (libvirt's status file, or the XML a hook
 * was handed), re-planned and re-checked like a start. Caller holds the
 * lock. `unresolved` lists what could not be rebuilt, with why.
 */
export function rebuildCorrupt(ctx: EngineContext, readRunning: () => readonly RunningDomain[], runningUuids: ReadonlySet<string>): { notes: string[]; unresolved: Array<{ uuid: string; running: boolean; message: string }> } {
  const notes: string[] = [];
  const unresolved: Array<{ uuid: string; running: boolean; message: string }> = [];
  const corrupt = ctx.ledger.setAsideCorrupt();
  const running = corrupt.length ? readRunning() : [];
  for (const c of corrupt) {
    if (ctx.ledger.hasVm(c.uuid)) { ctx.ledger.dropCorrupt(c.uuid); continue; } // rewritten since
    const vm = running.find((r) => r.domain.uuid === c.uuid);
    if (!vm) {
      unresolved.push({ uuid: c.uuid, running: false, message: `${c.file}: unreadable (${c.reason}) and no running VM has UUID ${c.uuid}; remove the file once you have looked at it` });
      continue;
    }
    try {
      const planned = planVm(vm.domain, ctx);
      if (planned && planned.plan.forwards.length > 0) {
        const entry = claim(vm.domain, planned.plan, planned.config, {
          ledger: ctx.ledger, network: ctx.network, running, runningUuids, leases: ctx.leases,
          // It already runs with these ports: the host's own sockets were checked at its start.
          hostSockets: [],
        }, 'applied');
        ctx.ledger.putVm(entry);
      }
      ctx.ledger.dropCorrupt(c.uuid);
      notes.push(`rebuilt the corrupt entry of ${quoted(vm.domain.name)}: ${planned?.plan.forwards.length ?? 0} forward(s)`);
    } catch (err) {
      unresolved.push({ uuid: c.uuid, running: true, message: `${c.file}: could not rebuild the entry of running VM ${quoted(vm.domain.name)}: ${errorMessage(err)}` });
    }
  }
  return { notes, unresolved };
}

/**
 * Under the lock: refuses a plan that would reach another VM, take a port
 * another VM or the host holds, or exceed the host-wide bound; otherwise
 * returns the entry to record. Entries of VMs that no longer run never
 * block a start (converge drops them). Reads only.
 */
export function claim(domain: DomainInfo, plan: VmPlan, config: GlobalConfig, src: ClaimSources, state: VmEntry['state']): VmEntry {
  // Entries of VMs that no longer run block nothing. They are left to converge, which drops them
  // together with their elements (a table that held them is written whole): dropped here, the
  // table would keep their elements, since a start only adds its own to what the ledger lists.
  const others = src.ledger.listVms().filter((e) => e.uuid !== domain.uuid && entryIsLive(e, src.runningUuids));
  checkOwnership(domain, plan.forwards, otherViews(domain.uuid, src.running, others, src.network), src.leases);
  checkConflicts(domain.name, plan.forwards, others.map((e) => ({ ...e, forwards: entryForwards(e) })), src.hostSockets);
  checkHostLimit(domain.name, plan.forwards, totalElements(others.flatMap(entryForwards)), config.limits);
  checkLinks(domain.name, plan.links.map((l) => l.link), others);
  checkVfs(domain.name, plan.vfs.map((v) => v.vf), others);
  const nics = plan.nics.map((n) => {
    const links = plan.links.filter((l) => l.nic === n.mac).map((l) => l.link);
    return {
      mac: n.mac, template: n.template, binding: n.binding, bindingVersion: bindingNamed(n.binding).version,
      ...(n.network === undefined ? {} : { network: n.network }), forwards: plan.forwards.filter((f) => f.nic === n.mac),
      ...(links.length ? { links } : {}),
      ...tapVlanOf(plan, n.mac),
      ...vfOf(plan, n.mac),
      ...dropinOf(plan, n.mac),
    };
  }).filter((n) => n.forwards.length > 0 || n.links !== undefined || n.tapVlan !== undefined || n.vf !== undefined || n.dropin !== undefined);
  return { schema: LEDGER_SCHEMA, uuid: domain.uuid, name: domain.name, state, nics, updatedAt: new Date().toISOString() };
}

function dropinOf(plan: VmPlan, mac: string): { dropin?: VmPlan['dropins'][number]['dropin'] } {
  const d = plan.dropins.find((x) => x.nic === mac)?.dropin;
  return d ? { dropin: d } : {};
}

function vfOf(plan: VmPlan, mac: string): { vf?: VfSettings } {
  const v = plan.vfs.find((x) => x.nic === mac)?.vf;
  return v ? { vf: v } : {};
}

/** A VF another running VM holds is not this one's to take (two definitions naming one VF). */
function checkVfs(vm: string, wanted: readonly VfSettings[], others: readonly VmEntry[]): void {
  for (const v of wanted) {
    const holder = others.find((e) => entryVfs(e).some((x) => x.pf === v.pf && x.index === v.index));
    if (holder) throw new UserError(`VM ${quoted(vm)}: VF ${v.index} of ${v.pf} (${v.pci}) is held by running VM ${quoted(holder.name)}; run "virtwire apply ${vm}" to give it another`);
  }
}

function tapVlanOf(plan: VmPlan, mac: string): { tapVlan?: TapVlan } {
  const t = plan.tapVlans.find((x) => x.nic === mac)?.tapVlan;
  return t ? { tapVlan: t } : {};
}

/** A link name another running VM holds must mean the same link (two templates that disagree on it). */
function checkLinks(vm: string, wanted: readonly LinkObject[], others: readonly VmEntry[]): void {
  for (const l of wanted) {
    for (const e of others) {
      const theirs = entryLinks(e).find((x) => x.name === l.name);
      if (theirs && !sameLink(theirs, l)) {
        throw new UserError(`VM ${quoted(vm)}: it needs ${describeLink(l)}, but VM ${quoted(e.name)} runs with ${describeLink(theirs)} under that name; make their templates agree`);
      }
    }
  }
}

/** Other VMs as libvirt's status files and the ledger know them, merged by UUID. */
function otherViews(self: string, running: readonly RunningDomain[], entries: readonly VmEntry[], network: (name: string) => NetworkInfo | undefined): OtherVmView[] {
  const views = new Map<string, { uuid: string; name: string; macs: string[]; addresses: Map<string, string> }>();
  for (const { domain } of running) {
    if (domain.uuid === self) continue;
    views.set(domain.uuid, {
      uuid: domain.uuid, name: domain.name,
      macs: domain.nics.map((n) => n.mac).filter(Boolean),
      addresses: reservedAddressesOf(domain, network),
    });
  }
  for (const e of entries) {
    const v = views.get(e.uuid) ?? { uuid: e.uuid, name: e.name, macs: [], addresses: new Map<string, string>() };
    for (const f of entryForwards(e)) {
      if (!v.macs.includes(f.nic)) v.macs.push(f.nic);
      if (!v.addresses.has(f.guestAddr)) v.addresses.set(f.guestAddr, 'the target of its forwards');
    }
    views.set(e.uuid, v);
  }
  return [...views.values()];
}

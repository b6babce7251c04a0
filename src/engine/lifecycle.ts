// The one path from desired state to host and ledger, for every caller: the
// qemu and network hooks, `virtwire reconcile`, and the coming watcher.
// Each function takes the ledger lock itself and returns notes for the log;
// a refusal is a UserError whose message is the one line to show.
import type { DomainInfo } from '../xml/domain.js';
import type { NetworkInfo } from '../xml/network.js';
import { withLock } from '../state/lock.js';
import { readWatchState } from '../state/watch-state.js';
import { entryForwards, entryLinks } from '../state/ledger.js';
import { describeLink, type TapVlan, type VfSettings } from '../model/host.js';
import { vfSetCommand } from '../host/sriov.js';
import { runNicDropin } from './dropins.js';
import { describeVlan } from '../model/vlan.js';
import { readLink } from '../host/links.js';
import { setTapVlan } from '../host/bridge-vlan.js';
import { vlanFilteringRefusal } from '../bindings/bridge/index.js';
import { loadConfig } from '../policy/config.js';
import { readRunning } from '../host/libvirt-status.js';
import { BINDINGS } from '../bindings/registry.js';
import { describeForward } from '../plan/describe.js';
import { converge } from './converge.js';
import { planVm, claim, rebuildCorrupt } from './reserve.js';
import { checkHostSockets } from '../plan/conflicts.js';
import { forOneOperation, markForCleanup, recoverLedger, type HookContext } from './context.js';
import { staleRecord } from './record.js';
import type { VmPlan } from '../plan/types.js';
import { UserError, errorMessage, oneLine, quoted, shellWord } from '../errors.js';
import { readFileSync } from 'node:fs';
import { TEARDOWN_HEADER } from '../host/nft-script.js';

/**
 * qemu prepare: plan the VM, check and reserve what it will hold, and apply
 * it — or refuse, leaving nothing. One Node run per start: NAT forwards need
 * nothing that exists only at `start` (the tap), and DNAT to a guest whose
 * QEMU is not running yet reaches nobody, as it would at `start`. Recorded
 * "reserved" before nft runs and "applied" after, with the VM's teardown
 * written in between (converge), so a hook killed at any point leaves what
 * the aborted start's stopped/release remove. Undefined: nothing concerns it.
 * `early`: told under the lock once the claim is checked, and once the host
 * has it or not (the watcher lets the start go on in between: PrepareServer).
 */
export async function prepareVm(context: HookContext, domain: DomainInfo, early?: EarlyAnswer): Promise<string[] | undefined> {
  const ctx = forOneOperation(context);
  const watcher = (): ReturnType<typeof readWatchState> => readWatchState(ctx.paths.runDir);
  const planned = planVm(domain, ctx, { watcherRuns: () => watcher() !== undefined });
  try {
    return await prepareFromPlan(ctx, domain, planned, watcher, early);
  } finally {
    // Only a log line: after the watcher's early "ok", not on its way (~0.5 ms at 200 forwards).
    if (planned) warnIfStale(ctx, domain, planned.plan);
  }
}

async function prepareFromPlan(ctx: HookContext, domain: DomainInfo, planned: ReturnType<typeof planVm>, watcher: () => ReturnType<typeof readWatchState>, early: EarlyAnswer | undefined): Promise<string[] | undefined> {
  if (planned?.pending.length) {
    ctx.log.info(`VM ${quoted(domain.name)} prepare: wiring pending for NIC ${planned.pending.join(', ')} (no address reserved yet): it starts without those forwards, and the watcher (pid ${watcher()?.pid ?? '?'}) reserves the address and applies them live`);
  }
  if (!planned && !ctx.ledger.hasVm(domain.uuid) && !ctx.ledger.hasTeardown(domain.uuid)) return undefined;
  const forwards = planned?.plan.forwards ?? [];
  const links = planned?.plan.links ?? [];
  const tapVlans = planned?.plan.tapVlans ?? [];
  const vfs = planned?.plan.vfs ?? [];
  const dropins = planned?.plan.dropins ?? [];
  // Fail closed before anything is held: a VLAN on a bridge that does not filter VLANs isolates nothing.
  for (const { nic, tapVlan } of tapVlans) {
    const link = readLink(ctx.paths.sysDir, tapVlan.bridge);
    const why = !link?.bridge ? `the host has no bridge ${tapVlan.bridge}` : vlanFilteringRefusal(tapVlan.bridge, link.vlanFiltering);
    if (why) throw new UserError(`VM ${quoted(domain.name)} NIC ${nic}: ${why}`);
  }
  // Read before the lock, each status file once: parsing them is the slow part. The host's
  // sockets are read on libuv's threads meanwhile, and while the lock is being taken.
  const sockets = forwards.length ? ctx.hostSockets() : Promise.resolve([]);
  const { domains: running, uuids: runningUuids } = forwards.length ? ctx.running() : { domains: [], uuids: ctx.runningUuids() };
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate(); // under the lock: one rotating process at a time
    const notes: string[] = [];
    if (forwards.length) {
      // An unreadable entry hides what its VM holds: rebuild it before checking against it.
      const { notes: rebuilt, unresolved } = rebuildCorrupt(ctx, () => running, runningUuids);
      const blocking = unresolved.find((u) => u.running);
      if (blocking) throw new UserError(`VM ${quoted(domain.name)}: cannot check its forwards against the other VMs: ${blocking.message}; run "virtwire reconcile" once that is fixed`);
      notes.push(...rebuilt);
    }
    if (!planned || forwards.length + links.length + tapVlans.length + vfs.length + dropins.length === 0) {
      // A leftover entry (e.g. a crash skipped release) must not linger, nor what it applied.
      const dropped = ctx.ledger.removeVm(domain.uuid);
      if (!dropped && !ctx.ledger.hasTeardown(domain.uuid)) return notes;
      return [...notes, dropped ? 'dropped a stale ledger entry' : 'dropped a stale teardown', ...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark: markForCleanup(ctx), running: runningUuids }))];
    }
    const reserved = claim(domain, planned.plan, planned.config, {
      ledger: ctx.ledger, network: ctx.network, running, runningUuids, leases: ctx.leases,
      hostSockets: early ? [] : await sockets,
    }, 'reserved');
    if (!early) ctx.ledger.putVm(reserved); // a full disk refuses here, before anything is applied
    else {
      // Answered before the claim is recorded (writing a 200-forward entry takes ~1–4 ms here) and
      // before the host's sockets are read (tcp and tcp6 take ~3 ms, each read a walk of the
      // kernel's connection hash): a full disk, or a port a host service holds, still refuses the
      // start, at `start`, before QEMU runs, and nothing is applied before both. Should this
      // process die in between, the empty marker refuses the start, and nothing is left.
      try {
        early.claimed(domain.uuid);
        ctx.ledger.putVm(reserved);
        checkHostSockets(domain.name, forwards, await sockets);
      } catch (err) {
        ctx.ledger.removeVm(domain.uuid);
        early.settled(err);
        throw err;
      }
    }
    const applied = { ...reserved, state: 'applied' as const };
    const mark = planned.config.firewall.mark;
    try {
      notes.push(...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark, running: runningUuids, include: applied })));
      ctx.ledger.putVm(applied);
    } catch (err) {
      // All or nothing: the start is refused, so take back what it added.
      ctx.ledger.removeVm(domain.uuid);
      await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark, running: runningUuids })
        .catch((undo: unknown) => ctx.log.error(`VM ${quoted(domain.name)} prepare: could not take back what it added (${errorMessage(undo)}); its release or "virtwire reconcile" removes it`));
      const refusal = err instanceof UserError ? new UserError(`VM ${quoted(domain.name)}: ${err.message}`) : err;
      early?.settled(refusal);
      throw refusal;
    }
    early?.settled(undefined);
    return [
      ...(forwards.length ? [`applied ${forwards.length} forward(s): ${forwards.map(describeForward).join('; ')}`] : []),
      ...tapVlans.map(({ nic, tapVlan }) => `NIC ${nic}: ${describeVlan(tapVlan.vlan)} on its tap in ${tapVlan.bridge} at start`),
      ...vfs.map(({ nic, vf }) => `NIC ${nic}: VF ${vf.index} of ${vf.pf} (${vf.pci})`),
      ...notes,
    ];
  });
}

/**
 * For a caller that answers libvirt before the host has what prepare applies
 * (the watcher serving the hook's prepare: src/hooks/prepare-server.ts). Both
 * are called under the ledger lock: `claimed` once the VM's checks against
 * the other VMs passed, `settled` once the host has it (undefined) or the
 * start is refused and all of it taken back (the error, as prepare throws
 * it). After `claimed`, before anything is applied, the claim is recorded
 * and the host's own sockets are checked (reading them takes ~3 ms here): a
 * full disk, or a port a host service holds, is settled as a refusal. A
 * `claimed` that throws refuses the start like any other failure there.
 */
export interface EarlyAnswer {
  claimed(uuid: string): void;
  settled(refusal: unknown): void;
}

/**
 * qemu start (only for a VM whose prepare left a start marker): each NIC's
 * VLAN on its tap, which exists now and sits in its bridge, before QEMU
 * runs. Any failure refuses the start: the guest never runs on the wrong
 * VLAN, or on none. Undefined: nothing to do.
 */
export async function startVm(context: HookContext, domain: DomainInfo): Promise<string[] | undefined> {
  const ctx = forOneOperation(context);
  const entry = ctx.ledger.getVm(domain.uuid);
  const work = entry?.nics.filter((n) => n.tapVlan !== undefined || n.vf !== undefined || n.dropin?.hooks.includes('start')) ?? [];
  if (work.length === 0) return undefined;
  const notes: string[] = [];
  for (const n of work.filter((x) => x.vf !== undefined)) {
    const vf = n.vf as VfSettings;
    const argv = vfSetCommand(vf);
    if (!argv) continue;
    const r = await ctx.run(argv, { timeoutMs: 15_000 });
    if (r.exitCode !== 0) {
      throw new UserError(`VM ${quoted(domain.name)} NIC ${n.mac}: cannot set VF ${vf.index} of ${vf.pf} (${argv.slice(7).join(' ')}): ${r.stderr.trim().split('\n')[0] || `exit ${r.exitCode}`}`);
    }
    notes.push(`NIC ${n.mac}: VF ${vf.index} of ${vf.pf}: ${argv.slice(7).join(' ')}`);
  }
  for (const n of work.filter((x) => x.tapVlan !== undefined)) {
    const t = n.tapVlan as TapVlan;
    const tap = domain.nics.find((x) => x.mac === n.mac)?.tap;
    if (!tap) throw new UserError(`VM ${quoted(domain.name)} NIC ${n.mac}: libvirt gave its NIC no tap to set ${describeVlan(t.vlan)} on`);
    try {
      await setTapVlan(ctx.run, ctx.paths.sysDir, tap, t);
    } catch (err) {
      throw new UserError(`VM ${quoted(domain.name)} NIC ${n.mac}: cannot put its tap ${tap} on ${describeVlan(t.vlan)} in bridge ${t.bridge}: ${errorMessage(err)}`);
    }
    notes.push(`NIC ${n.mac}: tap ${tap} on ${describeVlan(t.vlan)} in ${t.bridge}`);
  }
  // Last: a drop-in sees the NIC as virtwire left it (VLAN and VF settings in place).
  for (const n of work.filter((x) => x.dropin?.hooks.includes('start'))) {
    notes.push(await runNicDropin(ctx.run, ctx.paths.hooksDir, domain.name, n, 'start', domain.nics.find((x) => x.mac === n.mac)?.tap));
  }
  return notes;
}

/**
 * qemu stopped/release served by the watcher: the VM's teardown script (what
 * its start added: converge.ts writeTeardowns) run under the lock, and its
 * entry, teardown and start marker removed — what the shim does itself
 * (hooks/qemu vw_teardown), through the watcher's long-lived nft (ctx.nft),
 * which does not wait out an RCU grace period as an nft that deletes does at
 * its exit (host/nft-session.ts). True: done, or nothing was left to do.
 * False: the shim goes on as it would without the watcher (no long-lived
 * nft, no teardown while an entry is there, another VM's header, nft refused it).
 */
export async function teardownVm(ctx: HookContext, uuid: string, op: 'stopped' | 'release'): Promise<boolean> {
  const session = ctx.nft;
  if (!session) return false;
  return withLock(ctx.ledger.lockFile, async () => {
    const file = ctx.ledger.teardownFile(uuid);
    let head: string | undefined;
    try { head = readFileSync(file, 'utf8').split('\n', 1)[0]; } catch { return !ctx.ledger.hasVm(uuid); }
    if (head !== `${TEARDOWN_HEADER} ${uuid}`) return false;
    const name = ctx.ledger.getVm(uuid)?.name;
    const r = await session.include(file);
    if (!r.ok) {
      ctx.log.warn(`VM ${name === undefined ? uuid : quoted(name)} teardown: nft refused it (${oneLine(r.errors)}); the hook converges instead`);
      return false;
    }
    ctx.ledger.removeVm(uuid);
    ctx.ledger.putTeardown(uuid, undefined);
    ctx.ledger.putStartMarker(uuid, false);
    ctx.log.info(`VM ${name === undefined ? uuid : quoted(name)} (${uuid}) ${op}: removed its forwards`);
    return true;
  });
}

/**
 * The templates win over the record `virtwire apply` left in the domain's
 * <metadata> (the VM owner can edit it; the admin edits templates): a
 * template edited since, or a hand-edited record, is logged, never obeyed
 * and never silently ignored.
 */
function warnIfStale(ctx: HookContext, domain: DomainInfo, plan: VmPlan): void {
  const diff = staleRecord(domain, plan);
  if (diff.length === 0) return;
  ctx.log.warn(`VM ${quoted(domain.name)}: the wiring recorded in its <metadata> is stale, the templates now give: ${diff.join('; ')}; starting with what the templates give — run "virtwire apply ${shellWord(domain.name, 'VM')}" to record it`);
}

/**
 * A running VM re-planned from the templates now (`virtwire apply` after a
 * template edit): checked and applied in one step under the lock, the whole
 * table replaced at once, so its forwards move with no gap and a refusal
 * changes nothing. `domain` is its live XML.
 */
export async function rewireVm(context: HookContext, domain: DomainInfo): Promise<{ moved: string[]; notes: string[] }> {
  const ctx = forOneOperation(context);
  const planned = planVm(domain, ctx);
  const forwards = planned?.plan.forwards ?? [];
  const { domains: running, uuids } = ctx.running();
  const runningUuids = new Set([...uuids, domain.uuid]);
  const mark = loadConfig(ctx.paths.configFile).firewall.mark;
  const sockets = forwards.length ? ctx.hostSockets() : Promise.resolve([]);
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate();
    const entry = planned && forwards.length + planned.plan.links.length ? claim(domain, planned.plan, planned.config, {
      ledger: ctx.ledger, network: ctx.network, running, runningUuids, leases: ctx.leases,
      hostSockets: await sockets,
    }, 'applied') : undefined;
    const held = ctx.ledger.getVm(domain.uuid);
    const before = new Set(entryForwards(held ?? { nics: [] }).map(describeForward));
    const after = new Set((entry ? entryForwards(entry) : []).map(describeForward));
    const moved = [...[...after].filter((f) => !before.has(f)).map((f) => `+${f}`), ...[...before].filter((f) => !after.has(f)).map((f) => `-${f}`)];
    const linksBefore = new Set(entryLinks(held ?? { nics: [] }).map(describeLink));
    const linksAfter = new Set((entry ? entryLinks(entry) : []).map(describeLink));
    const linksMoved = [...linksAfter].some((l) => !linksBefore.has(l)) || [...linksBefore].some((l) => !linksAfter.has(l));
    // Nothing to move (the watcher asks after every event): no nft transaction. Drift is reconcile's to mend.
    if (moved.length === 0 && !linksMoved && (held ? held.state === 'applied' : !entry)) return { moved, notes: [] };
    if (!entry) ctx.ledger.removeVm(domain.uuid);
    const notes = [...recoverLedger(ctx, runningUuids), ...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark, running: runningUuids, include: entry }))];
    if (entry) ctx.ledger.putVm(entry);
    return { moved, notes };
  });
}

/**
 * qemu stopped/release (`remove`) and reconnect: converge, never refuse.
 * reconnect also rebuilds the VM's entry if it was found corrupt, from the
 * live XML the hook holds. Undefined: nothing to do for this VM.
 */
export async function settleVm(context: HookContext, domain: DomainInfo, how: 'remove' | 'reconnect'): Promise<string[] | undefined> {
  const ctx = forOneOperation(context);
  // Work only for a VM with an entry, or when a corrupt file may hide one (its own, or one not yet set aside).
  const mayHide = (): boolean => ctx.ledger.readVms().corrupt.some((c) => c.uuid === domain.uuid || !c.file.endsWith('.json.corrupt'));
  if (!ctx.ledger.hasVm(domain.uuid) && !ctx.ledger.hasTeardown(domain.uuid) && !mayHide()) return undefined;
  // On reconnect this VM's live XML is in hand: it counts as running whatever its status file says.
  const running = how === 'reconnect' ? new Set([...ctx.runningUuids(), domain.uuid]) : ctx.runningUuids();
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate();
    const dropped: string[] = [];
    if (how === 'remove') {
      // Its release drop-ins, once: the entry goes with the first of stopped/release.
      for (const n of ctx.ledger.getVm(domain.uuid)?.nics.filter((x) => x.dropin?.hooks.includes('release')) ?? []) {
        dropped.push(await runNicDropin(ctx.run, ctx.paths.hooksDir, domain.name, n, 'release').catch((err: unknown) => errorMessage(err)));
      }
      ctx.ledger.removeVm(domain.uuid);
    }
    const recovered = recoverLedger(ctx, running, how === 'reconnect' ? domain : undefined);
    return [...dropped, ...recovered, ...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark: markForCleanup(ctx), running }))];
  });
}

/**
 * A network (re)started or was updated: libvirt has rebuilt its firewall
 * rules on top of virtwire's, so re-assert; NICs whose binding no longer
 * fits the network lose what it gave them. Undefined: nothing applied.
 */
export async function reassertNetwork(context: HookContext, net: NetworkInfo | undefined): Promise<string[] | undefined> {
  const ctx = forOneOperation(context);
  const { entries, corrupt } = ctx.ledger.readVms();
  // A corrupt entry may hide applied forwards: rebuild what can be, report the rest.
  if (!entries.some((e) => e.state === 'applied') && corrupt.every((c) => c.file.endsWith('.json.corrupt'))) return undefined;
  const running = ctx.runningUuids();
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate();
    const withdrawn = net ? withdrawUnfit(ctx, net) : [];
    return [...withdrawn, ...recoverLedger(ctx, running), ...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark: markForCleanup(ctx), running }))];
  });
}

/**
 * Drops from the ledger every NIC on `net` whose binding no longer fits it
 * (e.g. a NAT network redefined as isolated): what it gave them is then
 * removed by the converge that follows. Caller holds the lock.
 */
function withdrawUnfit(ctx: HookContext, net: NetworkInfo): string[] {
  const notes: string[] = [];
  for (const e of ctx.ledger.listVms()) {
    const unfit = e.nics.filter((n) => n.network === net.name && BINDINGS.get(n.binding)?.networkRefusal?.(net) !== undefined);
    if (unfit.length === 0) continue;
    const nics = e.nics.filter((n) => !unfit.includes(n));
    if (nics.length === 0) ctx.ledger.removeVm(e.uuid);
    else ctx.ledger.putVm({ ...e, nics });
    for (const n of unfit) {
      notes.push(`withdrew ${n.forwards.length} forward(s) of VM ${quoted(e.name)} NIC ${n.mac}: ${BINDINGS.get(n.binding)?.networkRefusal?.(net)}`);
    }
  }
  return notes;
}

/**
 * withdrawUnfit for every network a ledger entry's NIC is on that runs now
 * (its live definition from libvirt's status file). Caller holds the lock.
 */
function withdrawUnfitOnRunningNetworks(ctx: HookContext): string[] {
  const names = new Set(ctx.ledger.listVms().flatMap((e) => e.nics.flatMap((n) => (n.network === undefined ? [] : [n.network]))));
  return [...names].flatMap((name) => {
    let net: NetworkInfo | undefined;
    try {
      net = ctx.network(name);
    } catch (err) {
      ctx.log.error(`network ${quoted(name)}: cannot read its status file (${errorMessage(err)}); its NICs are kept as they are`);
    }
    return net ? withdrawUnfit(ctx, net) : [];
  });
}

/**
 * `virtwire reconcile`: the host state made to match the ledger again (after
 * `nft flush ruleset`, a firewall reload, a crash). Entries of VMs that no
 * longer run are dropped; a corrupt entry of a running VM is rebuilt from
 * the live XML in libvirt's status file. `unresolved`: what is left to fix.
 */
export async function reconcile(context: HookContext): Promise<{ notes: string[]; unresolved: string[] }> {
  const ctx = forOneOperation(context);
  return withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate();
    const notes: string[] = [];
    const { domains: running, uuids: runningUuids } = readRunning(ctx.paths.libvirtRunDir, true, (m) => notes.push(m));
    const rebuilt = rebuildCorrupt(ctx, () => running, runningUuids);
    notes.push(...rebuilt.notes);
    const unresolved = rebuilt.unresolved.map((u) => u.message);
    // What the network hook does when a network starts: the watcher, which may
    // stand that hook down (host/network-hook-switch.ts), reconciles instead.
    notes.push(...withdrawUnfitOnRunningNetworks(ctx));
    // A broken virtwire.yaml does not stop the restore (the mark in use is kept) but is an error to fix.
    try {
      loadConfig(ctx.paths.configFile);
    } catch (err) {
      unresolved.push(errorMessage(err));
    }
    notes.push(...(await converge({ run: ctx.run, nft: ctx.nft, ledger: ctx.ledger, mark: markForCleanup(ctx), running: runningUuids })));
    return { notes, unresolved };
  });
}

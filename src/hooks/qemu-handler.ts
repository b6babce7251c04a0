import { parseDomain } from '../xml/domain.js';
import { converge } from '../engine/converge.js';
import { withLock } from '../state/lock.js';
import { loadConfig } from '../policy/config.js';
import { planVm, claim, rebuildCorrupt } from '../engine/reserve.js';
import { UserError, errorMessage, oneLine, quoted } from '../errors.js';
import { describeForward } from '../plan/describe.js';
import { markForCleanup, recoverLedger, type HookContext } from '../engine/context.js';

export interface HookResult {
  exitCode: number;
  /** One line for libvirt's error message (stderr), if the operation must fail. */
  stderr?: string;
}

/** qemu operations virtwire acts on; everything else exits 0 at once without reading stdin. */
const ACTIVE_OPS = new Set(['prepare', 'start', 'stopped', 'release', 'reconnect']);

export function qemuOpIsActive(op: string | undefined): boolean {
  return op !== undefined && ACTIVE_OPS.has(op);
}

/**
 * `/etc/libvirt/hooks/qemu.d/virtwire NAME OP SUBOP EXTRA` with the live
 * domain XML on stdin. prepare plans and reserves (refusing the start on a
 * conflict), start applies before QEMU runs, stopped/release remove exactly
 * the ledger's entry and never fail, reconnect converges and never fails.
 */
export async function handleQemuHook(ctx: HookContext, argv: string[], readStdin: () => Promise<string>): Promise<HookResult> {
  const op = argv[1];
  if (!qemuOpIsActive(op)) return { exitCode: 0 };
  if (op === 'prepare' || op === 'start') {
    try {
      const xml = await readStdin();
      return op === 'prepare' ? await prepare(ctx, xml) : await start(ctx, xml);
    } catch (err) {
      const msg = err instanceof UserError ? err.message : `internal error: ${errorMessage(err)} (details in ${ctx.paths.logFile})`;
      ctx.log.error(`qemu ${op} ${quoted(argv[0] ?? '')}: ${err instanceof UserError ? msg : String((err as Error)?.stack ?? err)}`);
      return { exitCode: 1, stderr: `virtwire: ${oneLine(msg)}` };
    }
  }
  return cleanupOrReconnect(ctx, op as string, argv[0] ?? '?', readStdin);
}

async function prepare(ctx: HookContext, xml: string): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  const planned = planVm(domain, ctx);
  if (!planned && !ctx.ledger.hasVm(domain.uuid)) return { exitCode: 0 };
  const forwards = planned?.plan.forwards ?? [];
  // Read before the lock: parsing every status file is the slow part.
  const running = forwards.length ? ctx.runningDomains() : [];
  const runningUuids = forwards.length ? ctx.runningUuids() : new Set<string>();
  await withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate(); // under the lock: one rotating process at a time
    if (forwards.length) {
      // An unreadable entry hides what its VM holds: rebuild it before checking against it.
      const { unresolved } = rebuildCorrupt(ctx, () => running, runningUuids);
      const blocking = unresolved.find((u) => u.running);
      if (blocking) throw new UserError(`VM ${quoted(domain.name)}: cannot check its forwards against the other VMs: ${blocking.message}; run "virtwire reconcile" once that is fixed`);
    }
    if (!planned || forwards.length === 0) {
      // A leftover entry (e.g. a crash skipped release) must not linger.
      if (ctx.ledger.removeVm(domain.uuid)) ctx.log.info(`VM ${quoted(domain.name)} prepare: dropped a stale ledger entry`);
      return;
    }
    const entry = claim(domain, planned.plan, planned.config, {
      ledger: ctx.ledger, network: ctx.network, running, runningUuids, leases: ctx.leases,
      hostSockets: ctx.hostSockets, log: (m) => ctx.log.info(m),
    }, 'reserved');
    ctx.ledger.putVm(entry);
  });
  if (forwards.length) {
    ctx.log.info(`VM ${quoted(domain.name)} prepare: reserved ${forwards.length} forward(s): ${forwards.map(describeForward).join('; ')}`);
  }
  return { exitCode: 0 };
}

async function start(ctx: HookContext, xml: string): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  if (!ctx.ledger.hasVm(domain.uuid)) return { exitCode: 0 };
  const mark = loadConfig(ctx.paths.configFile).firewall.mark;
  const running = ctx.runningUuids();
  const done = await withLock(ctx.ledger.lockFile, async () => {
    ctx.log.rotate(); // under the lock: one rotating process at a time
    const entry = ctx.ledger.getVm(domain.uuid);
    if (!entry) return [];
    // Applied first, recorded after: a hook killed in between leaves a
    // "reserved" entry, which the aborted start's release removes.
    const applied = { ...entry, state: 'applied' as const, updatedAt: new Date().toISOString() };
    const notes = [...recoverLedger(ctx, running), ...(await converge({ run: ctx.run, ledger: ctx.ledger, mark, running, include: applied }))];
    ctx.ledger.putVm(applied);
    return notes;
  });
  ctx.log.info(`VM ${quoted(domain.name)} start: applied; ${done.join('; ') || 'host already up to date'}`);
  return { exitCode: 0 };
}

/**
 * stopped / release / reconnect: best effort, logged, always exit 0 (a
 * reconnect failure would kill the VM). reconnect also rebuilds a VM's
 * entry that was found corrupt, from the live XML libvirt hands it.
 */
async function cleanupOrReconnect(ctx: HookContext, op: string, argvName: string, readStdin: () => Promise<string>): Promise<HookResult> {
  let name = argvName;
  try {
    const domain = parseDomain(await readStdin(), 'the domain XML on stdin');
    name = domain.name;
    // Work only for a VM with an entry, or when a corrupt file may hide one (its own, or one not yet set aside).
    const corrupt = ctx.ledger.readVms().corrupt.some((c) => c.uuid === domain.uuid || !c.file.endsWith('.json.corrupt'));
    if (!ctx.ledger.hasVm(domain.uuid) && !corrupt) return { exitCode: 0 };
    // On reconnect this VM's live XML is on stdin: it counts as running whatever its status file says.
    const running = op === 'reconnect' ? new Set([...ctx.runningUuids(), domain.uuid]) : ctx.runningUuids();
    const done = await withLock(ctx.ledger.lockFile, async () => {
      ctx.log.rotate(); // under the lock: one rotating process at a time
      if (op !== 'reconnect') ctx.ledger.removeVm(domain.uuid);
      const recovered = recoverLedger(ctx, running, op === 'reconnect' ? domain : undefined);
      return [...recovered, ...(await converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx), running }))];
    });
    ctx.log.info(`VM ${quoted(name)} ${op}: ${op === 'reconnect' ? 're-asserted' : 'removed its forwards'}; ${done.join('; ') || 'nothing else to change'}`);
  } catch (err) {
    ctx.log.error(`VM ${quoted(name)} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

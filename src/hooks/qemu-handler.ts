import { loadTemplates } from '../policy/load.js';
import { loadConfig } from '../policy/config.js';
import { parseDomain } from '../xml/domain.js';
import { resolveForwards } from '../plan/resolve.js';
import { checkConflicts, forwardsCollide } from '../plan/conflicts.js';
import { converge } from '../host/converge.js';
import { withLock } from '../state/lock.js';
import { vmIsRunning } from '../state/liveness.js';
import { LEDGER_SCHEMA, NAT_BINDING_VERSION } from '../state/ledger.js';
import { UserError, errorMessage, quoted } from '../errors.js';
import { describeForward } from '../plan/describe.js';
import { markForCleanup, type HookContext } from './context.js';

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
  try {
    const xml = await readStdin();
    switch (op) {
      case 'prepare': return await prepare(ctx, xml);
      case 'start': return await start(ctx, xml);
      default: return await cleanupOrReconnect(ctx, op as string, xml);
    }
  } catch (err) {
    const msg = err instanceof UserError ? err.message : `internal error: ${errorMessage(err)} (details in ${ctx.paths.logFile})`;
    ctx.log.error(`qemu ${op} ${quoted(argv[0] ?? '')}: ${err instanceof UserError ? msg : String((err as Error)?.stack ?? err)}`);
    return { exitCode: 1, stderr: `virtwire: ${msg}` };
  }
}

async function prepare(ctx: HookContext, xml: string): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  const templates = loadTemplates(ctx.paths.templatesDir);
  const hasWork = templates.templates.length + templates.broken.length > 0 || domain.metadata.forwards.length + domain.metadata.templates.length > 0;
  if (!hasWork && !ctx.ledger.hasVm(domain.uuid)) return { exitCode: 0 };
  const config = loadConfig(ctx.paths.configFile);
  const plan = resolveForwards({ domain, templates, config, network: ctx.network });
  await withLock(ctx.ledger.lockFile, async () => {
    if (plan.forwards.length === 0) {
      // A leftover entry (e.g. a crash skipped release) must not linger.
      if (ctx.ledger.removeVm(domain.uuid)) ctx.log.info(`VM ${quoted(domain.name)} prepare: dropped a stale ledger entry`);
      return;
    }
    const others = [];
    for (const e of ctx.ledger.listVms()) {
      if (e.uuid === domain.uuid) continue;
      // An entry that collides but whose VM is gone (crash without release) must not block this start.
      if (plan.forwards.some((f) => e.forwards.some((g) => forwardsCollide(f, g))) && !vmIsRunning(ctx.paths.libvirtRunDir, e)) {
        ctx.ledger.removeVm(e.uuid);
        ctx.log.info(`VM ${quoted(e.name)}: dropped its ledger entry, the VM is no longer running`);
        continue;
      }
      others.push(e);
    }
    checkConflicts(domain.name, plan.forwards, others, ctx.hostSockets());
    ctx.ledger.putVm({
      schema: LEDGER_SCHEMA, uuid: domain.uuid, name: domain.name, state: 'reserved', binding: 'nat',
      bindingVersion: NAT_BINDING_VERSION, forwards: plan.forwards, updatedAt: new Date().toISOString(),
    });
  });
  if (plan.forwards.length) {
    ctx.log.info(`VM ${quoted(domain.name)} prepare: reserved ${plan.forwards.length} forward(s): ${plan.forwards.map(describeForward).join('; ')}`);
  }
  return { exitCode: 0 };
}

async function start(ctx: HookContext, xml: string): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  if (!ctx.ledger.hasVm(domain.uuid)) return { exitCode: 0 };
  const done = await withLock(ctx.ledger.lockFile, async () => {
    const entry = ctx.ledger.getVm(domain.uuid);
    if (!entry) return [];
    if (entry.state !== 'applied') ctx.ledger.putVm({ ...entry, state: 'applied', updatedAt: new Date().toISOString() });
    try {
      return await converge({ run: ctx.run, ledger: ctx.ledger, mark: loadConfig(ctx.paths.configFile).firewall.mark });
    } catch (err) {
      // Fail closed: the start is aborted; release will clean the reservation up.
      ctx.ledger.putVm({ ...entry, state: 'reserved' });
      throw err;
    }
  });
  ctx.log.info(`VM ${quoted(domain.name)} start: applied; ${done.join('; ') || 'host already up to date'}`);
  return { exitCode: 0 };
}

/** stopped / release / reconnect: best effort, logged, always exit 0 (a reconnect failure would kill the VM). */
async function cleanupOrReconnect(ctx: HookContext, op: string, xml: string): Promise<HookResult> {
  let name = '?';
  try {
    const domain = parseDomain(xml, 'the domain XML on stdin');
    name = domain.name;
    if (!ctx.ledger.hasVm(domain.uuid)) return { exitCode: 0 };
    const done = await withLock(ctx.ledger.lockFile, async () => {
      if (op !== 'reconnect' && !ctx.ledger.removeVm(domain.uuid)) return [];
      return converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx) });
    });
    ctx.log.info(`VM ${quoted(name)} ${op}: ${op === 'reconnect' ? 're-asserted' : 'removed its forwards'}; ${done.join('; ') || 'nothing else to change'}`);
  } catch (err) {
    ctx.log.error(`VM ${quoted(name)} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

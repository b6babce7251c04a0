import { parseDomain, type DomainInfo } from '../xml/domain.js';
import { prepareVm, settleVm, startVm, type EarlyAnswer } from '../engine/lifecycle.js';
import { filterIncoming } from '../engine/filter.js';
import { UserError, errorMessage, oneLine, quoted } from '../errors.js';
import type { HookContext } from '../engine/context.js';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { withLock } from '../state/lock.js';
import { applyingMarker } from './prepare-server.js';

export interface HookResult {
  exitCode: number;
  /** For libvirt's filter operations (migrate, restore): the domain XML that replaces the input. */
  stdout?: string;
  /** One line for libvirt's error message (stderr), if the operation must fail. */
  stderr?: string;
}

/**
 * qemu operations virtwire acts on; everything else exits 0 at once without
 * reading stdin. `start` only sets tap VLANs (the shim runs Node for it only
 * when the VM's prepare left a start marker): NAT forwards need nothing that
 * appears only then, and prepare applies them.
 */
const ACTIVE_OPS = new Set(['migrate', 'restore', 'prepare', 'start', 'stopped', 'release', 'reconnect']);

export function qemuOpIsActive(op: string | undefined): boolean {
  return op !== undefined && ACTIVE_OPS.has(op);
}

/**
 * `/etc/libvirt/hooks/qemu.d/virtwire NAME OP SUBOP EXTRA` with the live
 * domain XML on stdin. migrate/restore filter the incoming XML (its record),
 * prepare plans, reserves and applies (refusing the start on a conflict,
 * leaving nothing), stopped/release remove exactly the ledger's entry and
 * never fail (the shim does that itself when the VM's teardown is
 * prepared: hooks/qemu), reconnect converges and never fails.
 */
export async function handleQemuHook(ctx: HookContext, argv: string[], readStdin: () => Promise<string>, early?: EarlyAnswer): Promise<HookResult> {
  const op = argv[1];
  if (!qemuOpIsActive(op)) return { exitCode: 0 };
  if (op === 'prepare' || op === 'start' || op === 'migrate' || op === 'restore') {
    try {
      const xml = await readStdin();
      if (op === 'migrate' || op === 'restore') return filter(ctx, op, xml);
      if (op === 'start') return await start(ctx, xml);
      return await prepare(ctx, xml, early);
    } catch (err) {
      const line = refusalLine(ctx, err);
      ctx.log.error(`qemu ${op} ${quoted(argv[0] ?? '')}: ${err instanceof UserError ? err.message : String((err as Error)?.stack ?? err)}`);
      return { exitCode: 1, stderr: line };
    }
  }
  return cleanupOrReconnect(ctx, op as string, argv[0] ?? '?', readStdin);
}

/** The one line libvirt shows when prepare or start fails with this error. */
export function refusalLine(ctx: HookContext, err: unknown): string {
  const msg = err instanceof UserError ? err.message : `internal error: ${errorMessage(err)} (details in ${ctx.paths.logFile})`;
  return `virtwire: ${oneLine(msg)}`;
}

/** migrate / restore: this host's record in the incoming XML; an error cancels the operation. */
function filter(ctx: HookContext, op: string, xml: string): HookResult {
  const out = filterIncoming(ctx, xml);
  if (out !== undefined) ctx.log.info(`VM ${quoted(parseDomain(out).name)} ${op}: recorded this host's wiring in the incoming XML`);
  return out === undefined ? { exitCode: 0 } : { exitCode: 0, stdout: out };
}

async function prepare(ctx: HookContext, xml: string, early: EarlyAnswer | undefined): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  // Run by Node itself: a watcher's word on an earlier start of this VM must not refuse this one.
  if (!early) rmSync(applyingMarker(ctx.paths.runDir, domain.uuid), { force: true });
  const notes = await prepareVm(ctx, domain, early);
  if (notes?.length) ctx.log.info(`VM ${quoted(domain.name)} prepare: ${notes.join('; ')}`);
  return { exitCode: 0 };
}

/** start: the NICs' tap VLANs (the shim runs Node only for a VM with a start marker). */
async function start(ctx: HookContext, xml: string): Promise<HookResult> {
  const domain = parseDomain(xml, 'the domain XML on stdin');
  const refused = await earlyAnswerRefused(ctx, domain);
  if (refused) return { exitCode: 1, stderr: refused };
  const notes = await startVm(ctx, domain);
  if (notes?.length) ctx.log.info(`VM ${quoted(domain.name)} start: ${notes.join('; ')}`);
  return { exitCode: 0 };
}

/**
 * What the shim's vw_await_apply does, for a start that reached Node without
 * it (a UUID the shim could not read): the watcher's line on a prepare it
 * answered early, or its silence once the ledger lock is free. Undefined: applied.
 */
async function earlyAnswerRefused(ctx: HookContext, domain: DomainInfo): Promise<string | undefined> {
  const marker = applyingMarker(ctx.paths.runDir, domain.uuid);
  if (!existsSync(marker)) return undefined;
  await withLock(ctx.ledger.lockFile, async () => undefined, 70);
  if (!existsSync(marker)) return undefined;
  const line = readFileSync(marker, 'utf8').split('\n')[0] ?? '';
  rmSync(marker, { force: true });
  return line || `virtwire: VM ${quoted(domain.name)} (${domain.uuid}): the watcher stopped before its forwards were in place; start the VM again, and see ${ctx.paths.logFile} for why the watcher stopped`;
}

/** stopped / release / reconnect: best effort, logged, always exit 0 (a reconnect failure would kill the VM). */
async function cleanupOrReconnect(ctx: HookContext, op: string, argvName: string, readStdin: () => Promise<string>): Promise<HookResult> {
  let name = argvName;
  try {
    const domain = parseDomain(await readStdin(), 'the domain XML on stdin');
    name = domain.name;
    const notes = await settleVm(ctx, domain, op === 'reconnect' ? 'reconnect' : 'remove');
    if (notes) ctx.log.info(`VM ${quoted(name)} ${op}: ${op === 'reconnect' ? 're-asserted' : 'removed its forwards'}; ${notes.join('; ') || 'nothing else to change'}`);
  } catch (err) {
    ctx.log.error(`VM ${quoted(name)} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

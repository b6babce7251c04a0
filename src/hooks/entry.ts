// What the hook entry points (qemu.ts, network.ts) share: whatever goes
// wrong, an operation libvirt must not see fail exits 0 and is logged.
import { Log } from '../log.js';
import { errorMessage, oneLine, quoted } from '../errors.js';
import type { HookContext } from '../engine/context.js';
import type { HookResult } from './qemu-handler.js';

/**
 * qemu operations whose failure may reach libvirt, as it should: it aborts
 * the start (fail closed; at `start`, a tap VLAN that cannot be set). Every
 * other operation must exit 0 whatever happens — a non-zero `reconnect`
 * makes libvirt kill the running VM.
 * hooks/qemu has the same list (test/unit/shims.test.ts keeps them in step).
 */
export const QEMU_FAIL_CLOSED_OPS: readonly string[] = ['migrate', 'restore', 'prepare', 'start'];

export function qemuOpMayFail(op: string | undefined): boolean {
  return op !== undefined && QEMU_FAIL_CLOSED_OPS.includes(op);
}

export interface HookEntry {
  /** 'qemu' or 'network', for messages. */
  driver: string;
  /** Whether a failure of this operation may be reported to libvirt. */
  mayFail: (op: string | undefined) => boolean;
  handle: (ctx: HookContext, argv: string[]) => Promise<HookResult>;
}

export interface EntryDeps {
  makeContext: () => HookContext;
  /** Used when the context itself could not be made. */
  fallbackLog: () => Log;
  stderr: (line: string) => void;
  /** The filter operations' output (the domain XML for libvirt). */
  stdout?: (text: string) => void;
}

/**
 * Runs one hook call and returns its exit code. An exception anywhere
 * (context, stdin, handler) is caught: operations that may fail exit 1 with
 * one line on stderr; all others are logged and exit 0.
 */
export async function runHook(entry: HookEntry, argv: string[], deps: EntryDeps): Promise<number> {
  const op = argv[1];
  const mayFail = entry.mayFail(op);
  const what = `${entry.driver} ${op ?? '?'} ${quoted(argv[0] ?? '')}`;
  let log: Log | undefined;
  try {
    const ctx = deps.makeContext();
    log = ctx.log;
    const r = await entry.handle(ctx, argv);
    if (r.stderr) deps.stderr(r.stderr);
    if (r.stdout !== undefined && r.exitCode === 0) deps.stdout?.(r.stdout);
    if (r.exitCode === 0 || mayFail) return r.exitCode;
    log.error(`${what}: exit status ${r.exitCode} turned into 0 — libvirt must not see this operation fail (${r.stderr ?? 'no message'})`);
    return 0;
  } catch (err) {
    (log ?? deps.fallbackLog()).error(`${what}: ${String((err as Error)?.stack ?? err)}`);
    deps.stderr(oneLine(`virtwire: ${what}: internal error: ${errorMessage(err)}${mayFail ? '' : ' (ignored: libvirt must not see this operation fail)'}`));
    return mayFail ? 1 : 0;
  }
}

/**
 * Last resort for errors no await reaches (an 'error' event on stdin or
 * stderr, a stray rejection): the same rule, then exit at once.
 */
export function guardProcess(entry: HookEntry, argv: string[], deps: Omit<EntryDeps, 'makeContext'>): void {
  const mayFail = entry.mayFail(argv[1]);
  const what = `${entry.driver} ${argv[1] ?? '?'} ${quoted(argv[0] ?? '')}`;
  const bail = (err: unknown): void => {
    try {
      deps.fallbackLog().error(`${what}: uncaught: ${String((err as Error)?.stack ?? err)}`);
      if (mayFail) deps.stderr(oneLine(`virtwire: ${what}: internal error: ${errorMessage(err)}`));
    } catch {
      // stderr itself may be what failed
    } finally {
      process.exit(mayFail ? 1 : 0);
    }
  };
  process.on('uncaughtException', bail);
  process.on('unhandledRejection', bail);
}

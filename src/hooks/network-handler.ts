import { withLock } from '../state/lock.js';
import { converge } from '../host/converge.js';
import { errorMessage, quoted } from '../errors.js';
import { markForCleanup, recoverLedger, type HookContext } from './context.js';
import type { HookResult } from './qemu-handler.js';

/**
 * `/etc/libvirt/hooks/network.d/virtwire NETWORK OP SUBOP -`. libvirt
 * rebuilds its firewall rules when a network starts (and on net-update), and
 * puts them on top of ours: re-assert then. Never fails the network.
 */
export async function handleNetworkHook(ctx: HookContext, argv: string[]): Promise<HookResult> {
  const op = argv[1];
  if (op !== 'started' && op !== 'updated') return { exitCode: 0 };
  const { entries, corrupt } = ctx.ledger.readVms();
  // A corrupt entry may hide applied forwards: rebuild what can be, report the rest.
  if (!entries.some((e) => e.state === 'applied') && corrupt.every((c) => c.file.includes('.json.corrupt'))) return { exitCode: 0 };
  try {
    const running = ctx.runningUuids();
    const done = await withLock(ctx.ledger.lockFile, async () => {
      ctx.log.rotate(); // under the lock: one rotating process at a time
      return [...recoverLedger(ctx, running), ...(await converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx), running }))];
    });
    ctx.log.info(`network ${quoted(argv[0] ?? '')} ${op}: re-asserted; ${done.join('; ')}`);
  } catch (err) {
    ctx.log.error(`network ${quoted(argv[0] ?? '')} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

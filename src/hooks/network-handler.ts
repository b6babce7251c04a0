import { withLock } from '../state/lock.js';
import { converge } from '../host/converge.js';
import { errorMessage, quoted } from '../errors.js';
import { markForCleanup, type HookContext } from './context.js';
import type { HookResult } from './qemu-handler.js';

/**
 * `/etc/libvirt/hooks/network.d/virtwire NETWORK OP SUBOP -`. libvirt
 * rebuilds its firewall rules when a network starts (and on net-update), and
 * puts them on top of ours: re-assert then. Never fails the network.
 */
export async function handleNetworkHook(ctx: HookContext, argv: string[]): Promise<HookResult> {
  const op = argv[1];
  if (op !== 'started' && op !== 'updated') return { exitCode: 0 };
  if (!ctx.ledger.listVms().some((e) => e.state === 'applied')) return { exitCode: 0 };
  try {
    const done = await withLock(ctx.ledger.lockFile, () =>
      converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx) }));
    ctx.log.info(`network ${quoted(argv[0] ?? '')} ${op}: re-asserted; ${done.join('; ')}`);
  } catch (err) {
    ctx.log.error(`network ${quoted(argv[0] ?? '')} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

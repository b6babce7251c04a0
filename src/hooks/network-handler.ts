import { errorMessage, quoted } from '../errors.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import type { HookContext } from '../engine/context.js';
import { reassertNetwork } from '../engine/lifecycle.js';
import type { HookResult } from './qemu-handler.js';

/**
 * `/etc/libvirt/hooks/network.d/virtwire NETWORK OP SUBOP -` with the live
 * network on stdin. libvirt rebuilds its firewall rules when a network
 * starts (and on net-update), and puts them on top of ours: re-assert then.
 * A network that is no longer NAT (redefined, then restarted) takes the
 * forwards into it away: they are withdrawn, never left open. Never fails
 * the network.
 */
export async function handleNetworkHook(ctx: HookContext, argv: string[], readStdin: () => Promise<string> = async () => ''): Promise<HookResult> {
  const op = argv[1];
  if (op !== 'started' && op !== 'updated') return { exitCode: 0 };
  try {
    const notes = await reassertNetwork(ctx, liveNetwork(ctx, argv[0] ?? '', await readStdin()));
    if (notes) ctx.log.info(`network ${quoted(argv[0] ?? '')} ${op}: re-asserted; ${notes.join('; ')}`);
  } catch (err) {
    ctx.log.error(`network ${quoted(argv[0] ?? '')} ${op}: ${errorMessage(err)}`);
  }
  return { exitCode: 0 };
}

/** The network as libvirt hands it on stdin (<hookData><network>), else its status file. */
function liveNetwork(ctx: HookContext, name: string, stdin: string): NetworkInfo | undefined {
  try {
    if (stdin.trim()) return parseNetwork(stdin);
  } catch (err) {
    ctx.log.error(`network ${quoted(name)}: cannot read the network XML on stdin (${errorMessage(err)}); using its status file`);
  }
  return ctx.network(name);
}

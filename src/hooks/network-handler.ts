import { withLock } from '../state/lock.js';
import { BINDINGS } from '../bindings/registry.js';
import { converge } from '../engine/converge.js';
import { errorMessage, quoted } from '../errors.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import { markForCleanup, recoverLedger, type HookContext } from '../engine/context.js';
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
  const { entries, corrupt } = ctx.ledger.readVms();
  // A corrupt entry may hide applied forwards: rebuild what can be, report the rest.
  if (!entries.some((e) => e.state === 'applied') && corrupt.every((c) => c.file.includes('.json.corrupt'))) return { exitCode: 0 };
  try {
    const net = liveNetwork(ctx, argv[0] ?? '', await readStdin());
    const running = ctx.runningUuids();
    const done = await withLock(ctx.ledger.lockFile, async () => {
      ctx.log.rotate(); // under the lock: one rotating process at a time
      const withdrawn = net ? withdrawUnfit(ctx, net) : [];
      return [...withdrawn, ...recoverLedger(ctx, running), ...(await converge({ run: ctx.run, ledger: ctx.ledger, mark: markForCleanup(ctx), running }))];
    });
    ctx.log.info(`network ${quoted(argv[0] ?? '')} ${op}: re-asserted; ${done.join('; ')}`);
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

/**
 * Drops from the ledger every NIC on `net` whose binding no longer fits it
 * (e.g. a NAT network redefined as isolated): what it gave them is then
 * removed by the converge that follows. Caller holds the lock.
 */
function withdrawUnfit(ctx: HookContext, net: NetworkInfo): string[] {
  const notes: string[] = [];
  for (const e of ctx.ledger.listVms()) {
    const unfit = e.nics.filter((n) => n.network === net.name && BINDINGS.get(n.binding)?.networkRefusal(net) !== undefined);
    if (unfit.length === 0) continue;
    const nics = e.nics.filter((n) => !unfit.includes(n));
    if (nics.length === 0) ctx.ledger.removeVm(e.uuid);
    else ctx.ledger.putVm({ ...e, nics });
    for (const n of unfit) {
      notes.push(`withdrew ${n.forwards.length} forward(s) of VM ${quoted(e.name)} NIC ${n.mac}: ${BINDINGS.get(n.binding)?.networkRefusal(net)}`);
    }
  }
  return notes;
}

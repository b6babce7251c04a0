import { makeContext } from '../../engine/context.js';
import { hostSockets } from '../../host/listening.js';
import { reconcile } from '../../engine/lifecycle.js';
import { defineCommand } from '../command.js';
import { armNetworkHookUnlessServed } from '../../hooks/network-hook-guard.js';

export const command = defineCommand({
  name: 'reconcile',
  summary: `Restore the whole host state from the ledger (after a firewall
reload, "nft flush ruleset", or a crash); drops entries of VMs
that no longer run, rebuilds a corrupt entry of a running VM from
libvirt's status file. Exits 1 if something is left to fix.`,
  usage: 'reconcile',
  options: {},
  optionHelp: {},
  help: `Makes the host match the ledger again after something removed virtwire's rules: a firewall
reload, "nft flush ruleset", a crash. It puts back the nft table and virtwire's accept in
libvirt's firewall, drops the entries of VMs that no longer run, withdraws the forwards of a NIC
whose network runs as one its binding cannot use (a NAT network redefined as isolated and
restarted), and rebuilds a corrupt ledger entry of a running VM from libvirt's status file. It
arms virtwire's network hook again if a watcher stood it down and is gone. It exits 1, naming what is left to fix, when
an entry cannot be rebuilt or virtwire.yaml is broken (the state is restored all the same).
The hooks do this on their own when libvirtd restarts (qemu "reconnect") or a network starts.`,
  examples: ['nft delete table inet virtwire; virtwire reconcile', 'virtwire reconcile'],
  async run({ paths, out, run }) {
    const ctx = makeContext(paths, run, { hostSockets: () => hostSockets() }, 'cli');
    const { notes, unresolved } = await reconcile(ctx);
    const armed = armNetworkHookUnlessServed(paths);
    if (armed) notes.push(armed);
    ctx.log.info(`reconcile: ${notes.join('; ') || 'nothing to do'}`);
    for (const u of unresolved) ctx.log.error(`reconcile: ${u}`);
    out(`${notes.length ? notes.map((d) => `reconcile: ${d}`).join('\n') : 'reconcile: nothing to do'}\n`);
    for (const u of unresolved) out(`reconcile: error: ${u}\n`);
    return unresolved.length ? 1 : 0;
  },
});

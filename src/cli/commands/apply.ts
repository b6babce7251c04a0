import { LibvirtClient } from '../../libvirt/client.js';
import { withLock } from '../../state/lock.js';
import { Ledger } from '../../state/ledger.js';
import { makeContext, type HookContext } from '../../engine/context.js';
import { hostSockets } from '../../host/listening.js';
import { errorMessage, quoted } from '../../errors.js';
import { defineCommand } from '../command.js';
import { localUri, SELECT_HELP, SELECT_OPTIONS, selectDomains, templatesOf } from '../reservations.js';
import { releaseGone } from '../allocations.js';
import { releaseUnusedNetworks } from '../networks.js';
import { applyDomainHeld, underReservationLock } from '../apply-domain.js';

/**
 * "[12/500] web-12" on stderr, rewritten in place, when stderr is a terminal
 * and there are many VMs; cleared at the end. Never in a pipe or a log.
 */
function progressLine(total: number): { show: (done: number, name: string) => void; clear: () => void } {
  if (!process.stderr.isTTY || total < 10) return { show: () => undefined, clear: () => undefined };
  return {
    show: (done, name) => process.stderr.write(`\r\x1b[K${`[${done + 1}/${total}] ${quoted(name)}`.slice(0, (process.stderr.columns ?? 80) - 1)}`),
    clear: () => process.stderr.write('\r\x1b[K'),
  };
}

export const command = defineCommand({
  name: 'apply',
  summary: `Wire the VMs templates match: NICs attached as their
binding says, DHCP reservations (IPv4 and IPv6, live and config),
forwards of running VMs moved live, decisions recorded in each
domain's <metadata>; one line per VM: changed, unchanged or error.`,
  usage: 'apply [VM…] [--all] [--connect CONNECT]',
  options: SELECT_OPTIONS,
  optionHelp: SELECT_HELP,
  maxArgs: Number.MAX_SAFE_INTEGER,
  help: `For each VM named (by its exact libvirt name) or, with --all, every domain:
1. adds a DHCP host reservation (virsh net-update … add ip-dhcp-host, --config, and --live when
   the network is active) for every NIC a template wires with binding nat that has none (and no
   address: in the template): the address the NIC leases now when it has one, else the first free
   one of the subnet, outside the DHCP range when there is room. On a network whose IPv6 <ip> has
   a DHCP range, the first such NIC also gets an IPv6 one, <host id='00:03:00:01:MAC' name='VM'
   ip='…'/> (the DUID-LL of its MAC), chosen the same way; an IPv6 entry that is stale (named after
   the VM for a MAC it does not have, or the NIC's DUID under another name) or a VM name dnsmasq
   would not take as a host name is refused with the fix, never deleted;
2. on a running VM, moves its forwards to what the templates give now, in one nft transaction
   (no gap; a conflict refuses the change and leaves the old forwards);
3. rewrites each wired NIC's <interface> as its binding says (bridge, ovs, isolated, macvtap: type,
   <source>, <vlan>, <virtualport>, <port>; vhost: <driver name>) after checking the host has what
   it names (the bridge, Open vSwitch and its bridge, the uplink, VLAN filtering); defines and
   starts the network an isolated template names when it is missing; a running VM gets the new
   NIC at its next start;
4. records what it decided per NIC (template, binding, forwards, attachment) in the domain's
   <metadata> (virsh dumpxml shows it) and defines the domain — only when that changed, so a
   second apply defines nothing.
Networks are re-read under virtwire's reservation lock, so two applies at once never hand out one
address. A VM gets all its reservations or none: a later step that fails takes them back. Prints
one line per VM (changed and what, unchanged, or error and why), goes on past a VM that fails,
and exits 1 if any did. With --all, then releases what domains libvirt no longer defines had
(virtwire gc). "virtwire plan" shows the same without changing anything.`,
  examples: ['virtwire apply web-1', 'virtwire apply --all'],
  async run({ values, args, paths, out: write, run }) {
    const client = new LibvirtClient({ uri: localUri(values.connect) });
    let ctx: HookContext | undefined;
    const context = (): HookContext => (ctx ??= makeContext(paths, run, { hostSockets: () => hostSockets() }, 'cli'));
    try {
      const templates = templatesOf(paths);
      let failed = false;
      const selected = await selectDomains(client, args, values.all === true);
      const progress = progressLine(selected.length);
      const out = (line: string): void => { progress.clear(); write(line); };
      const error = (name: string, why: string): void => { out(`VM ${quoted(name)}: error: ${why}\n`); failed = true; };
      // Many VMs share each hold of the reservation lock (one read of the networks and the store).
      await underReservationLock(client, paths, [...selected.entries()], async ([i, s], held) => {
        if ('error' in s) { error(s.name, s.error); return; }
        progress.show(i, s.name);
        try {
          const changes = await applyDomainHeld(client, paths, context, templates, s.domain, held);
          out(`VM ${quoted(s.name)}: ${changes.length ? `changed (${changes.join('; ')})` : 'unchanged'}\n`);
          if (changes.length) context().log.info(`apply VM ${quoted(s.name)}: ${changes.join('; ')}`);
        } catch (err) {
          error(s.name, errorMessage(err));
        }
      }, ([, s], err) => error(s.name, errorMessage(err)));
      progress.clear();
      // Domains libvirt no longer defines give back their host ports and reservations.
      if (values.all === true && !await releaseGone(client, paths, write)) failed = true;
      if (values.all === true && !await withLock(new Ledger(paths.runDir).reserveLockFile, () => releaseUnusedNetworks(client, paths, write))) failed = true;
      return failed ? 1 : 0;
    } finally {
      await client.close();
    }
  },
});

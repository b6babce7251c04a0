import { LibvirtClient } from '../../libvirt/client.js';
import { withLock } from '../../state/lock.js';
import { Ledger } from '../../state/ledger.js';
import { defineCommand } from '../command.js';
import { SELECT_HELP, localUri } from '../reservations.js';
import { releaseGone } from '../allocations.js';
import { releaseUnusedNetworks } from '../networks.js';

export const command = defineCommand({
  name: 'gc',
  summary: `Release what "virtwire apply" gave domains libvirt no longer
defines: their host ports and the DHCP reservations it made; and
remove the networks it defined that no domain uses any more.`,
  usage: 'gc [--connect CONNECT]',
  options: { connect: { type: 'string' } },
  optionHelp: { connect: SELECT_HELP.connect },
  help: `For every domain in virtwire's allocation store (/var/lib/virtwire/allocations.json) that
libvirt no longer defines (undefined, or a transient domain gone): deletes the DHCP host
reservations virtwire apply made for it (virsh net-update … delete ip-dhcp-host, live and config,
only where that very <host mac ip> is still there: never one virtwire did not make), and frees its
host ports for other VMs. Then removes (net-destroy, net-undefine) each network virtwire defined
for an isolated template (/var/lib/virtwire/networks.json) that no domain names any more, in its
definition or, running, in its live XML; a network virtwire did not define is never touched.
Runs under the reservation lock, like apply. "virtwire apply --all" does
the same after applying. One line per domain released; exit 1 if a reservation could not be
deleted (the domain stays in the store, and the next gc tries again).`,
  examples: ['virtwire gc'],
  async run({ values, paths, out }) {
    const client = new LibvirtClient({ uri: localUri(values.connect) });
    try {
      const released = await releaseGone(client, paths, out);
      const networks = await withLock(new Ledger(paths.runDir).reserveLockFile, () => releaseUnusedNetworks(client, paths, out));
      return networks && released ? 0 : 1;
    } finally {
      await client.close();
    }
  },
});

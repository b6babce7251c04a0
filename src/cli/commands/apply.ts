import { LibvirtClient } from '../../libvirt/client.js';
import { Ledger } from '../../state/ledger.js';
import type { Reservation } from '../../engine/reservations.js';
import { errorMessage, quoted } from '../../errors.js';
import { defineCommand } from '../command.js';
import {
  DEFAULT_URI, NetworkReader, SELECT_HELP, SELECT_OPTIONS, domainNeeds, reservationText, reserveLocked, selectDomains, templatesOf, updateReservation,
} from '../reservations.js';

function reservedText(rs: readonly Reservation[]): string {
  return rs.map(reservationText).join(', ');
}

export const command = defineCommand({
  name: 'apply',
  summary: `Give the VMs' NICs that templates wire the DHCP reservations
their forwards need, IPv4 and IPv6 (live and config); one line per
VM: changed, unchanged or error; exit 1 if any VM failed.`,
  usage: 'apply [VM…] [--all] [--connect CONNECT]',
  options: SELECT_OPTIONS,
  optionHelp: SELECT_HELP,
  maxArgs: Number.MAX_SAFE_INTEGER,
  help: `For each VM named (by its exact libvirt name) or, with --all, every domain: adds a DHCP host
reservation (virsh net-update … add ip-dhcp-host, --config, and --live when the network is active)
for every NIC a template wires with binding nat that has none (and no address: in the template). The
address is the one the NIC leases now when it has one, else the first free one of the subnet,
outside the DHCP range when there is room. On a network whose IPv6 <ip> has a DHCP range, the first
such NIC also gets an IPv6 one, <host id='00:03:00:01:MAC' name='VM' ip='…'/> (the DUID-LL of its
MAC; --parent-index of that <ip>), chosen the same way; an IPv6 entry that is stale (named after the
VM for a MAC it does not have, or the NIC's DUID under another name) or a VM name dnsmasq would not
take as a host name is refused with the fix, never deleted. Networks are re-read under virtwire's
reservation lock, so two applies at once never hand out one address. A VM gets all its reservations
or none: one that libvirt refuses takes back those made before it. Prints one line per VM (changed,
unchanged, or error and why), goes on past a VM that fails, and exits 1 if any did. "virtwire plan"
shows the same without changing anything.`,
  examples: ['virtwire apply web-1', 'virtwire apply --all'],
  async run({ values, args, paths, out }) {
    const client = new LibvirtClient({ uri: values.connect ?? DEFAULT_URI });
    try {
      const templates = templatesOf(paths);
      const lockFile = new Ledger(paths.runDir).reserveLockFile;
      let failed = false;
      for (const s of await selectDomains(client, args, values.all === true)) {
        const vm = `VM ${quoted(s.name)}`;
        if ('error' in s) { out(`${vm}: error: ${s.error}\n`); failed = true; continue; }
        try {
          // Fresh network XML and leases under the lock: what another apply just reserved is seen.
          const networks = new NetworkReader(client, paths);
          const done = await reserveLocked(
            lockFile,
            async () => (await domainNeeds(client, networks, templates, s.domain)).reservations,
            (r) => updateReservation(client, networks, r, 'add'),
            (r) => updateReservation(client, networks, r, 'delete'),
          );
          out(`${vm}: ${done.length ? `changed (${reservedText(done)})` : 'unchanged'}\n`);
        } catch (err) {
          out(`${vm}: error: ${errorMessage(err)}\n`);
          failed = true;
        }
      }
      return failed ? 1 : 0;
    } finally {
      await client.close();
    }
  },
});

import { LibvirtClient } from '../../libvirt/client.js';
import { Ledger } from '../../state/ledger.js';
import type { Reservation } from '../../engine/reservations.js';
import { errorMessage, quoted } from '../../errors.js';
import { defineCommand } from '../command.js';
import { PortStep, releaseGone } from '../allocations.js';
import { DEFAULT_URI, NetworkReader, SELECT_HELP, SELECT_OPTIONS, domainNeeds, reserveLocked, selectDomains, templatesOf } from '../reservations.js';

function reservedText(rs: readonly Reservation[]): string {
  return rs.map((r) => `reserved ${r.ip} for NIC ${r.mac} on network ${quoted(r.network)}`).join(', ');
}

export const command = defineCommand({
  name: 'apply',
  summary: `Give the VMs' NICs that templates wire the DHCP reservations
their forwards need (live and config); one line per VM: changed,
unchanged or error; exit 1 if any VM failed.`,
  usage: 'apply [VM…] [--all] [--connect CONNECT]',
  options: SELECT_OPTIONS,
  optionHelp: SELECT_HELP,
  maxArgs: Number.MAX_SAFE_INTEGER,
  help: `For each VM named (by its exact libvirt name) or, with --all, every domain: adds a DHCP host
reservation (virsh net-update … add ip-dhcp-host, --config, and --live when the network is active)
for every NIC a template wires with binding nat that has none (and no address: in the template).
The address is the one the NIC leases now when it has one, else the first free one of the subnet,
outside the DHCP range when there is room. Networks are re-read under virtwire's reservation lock,
so two applies at once never hand out one address. A VM gets all its reservations or none: one
that libvirt refuses takes back those made before it. Prints one line per VM (changed, unchanged, or
error and why), goes on past a VM that fails, and exits 1 if any did. "virtwire plan" shows the
same without changing anything.`,
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
          const ports = new PortStep(paths, templates);
          const done = await reserveLocked(
            lockFile,
            async () => ports.decide(await domainNeeds(client, networks, templates, s.domain)),
            async (r) => {
              const net = (await networks.read(r.network))!;
              await client.updateDhcpHost(net.uuid, 'add', { mac: r.mac, ip: r.ip }, { live: net.active, config: net.persistent });
            },
            async (r) => {
              const net = (await networks.read(r.network))!;
              await client.updateDhcpHost(net.uuid, 'delete', { mac: r.mac, ip: r.ip }, { live: net.active, config: net.persistent });
            },
            (rs) => ports.commit(rs),
          );
          const changes = [...(done.length ? [reservedText(done)] : []), ...ports.text()];
          out(`${vm}: ${changes.length ? `changed (${changes.join(', ')})` : 'unchanged'}\n`);
        } catch (err) {
          out(`${vm}: error: ${errorMessage(err)}\n`);
          failed = true;
        }
      }
      // Domains libvirt no longer defines give back their host ports and reservations.
      if (values.all === true && !await releaseGone(client, paths, out)) failed = true;
      return failed ? 1 : 0;
    } finally {
      await client.close();
    }
  },
});

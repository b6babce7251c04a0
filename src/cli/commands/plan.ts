import { LibvirtClient, dhcpHostXml } from '../../libvirt/client.js';
import type { Reservation } from '../../engine/reservations.js';
import { loadConfig } from '../../policy/config.js';
import { describeForward } from '../../plan/describe.js';
import { errorMessage, quoted } from '../../errors.js';
import { defineCommand } from '../command.js';
import { localUri, NetworkReader, SELECT_HELP, SELECT_OPTIONS, hostOf, selectDomains, templatesOf } from '../reservations.js';
import { wireDomain } from '../wire.js';
import { PortStep } from '../allocations.js';
import { unifiedDiff } from '../diff.js';

/** The network XML change as a unified-diff-like block: the <host> lines apply would add, per <ip> (IPv4, IPv6). */
export function reservationDiff(network: string, added: readonly Reservation[]): string {
  const hunk = (family: 4 | 6) => {
    const rs = added.filter((r) => r.family === family);
    return rs.length === 0 ? [] : [family === 4 ? '@@ <ip> <dhcp> @@' : "@@ <ip family='ipv6'> <dhcp> @@", ...rs.map((r) => `+    ${dhcpHostXml(hostOf(r))}`)];
  };
  return [`--- network ${quoted(network)}`, `+++ network ${quoted(network)} (after apply)`, ...hunk(4), ...hunk(6)].map((l) => `${l}\n`).join('');
}

export const command = defineCommand({
  name: 'plan',
  summary: `Show what "virtwire apply" would change — DHCP reservations in
the libvirt networks, the record in the domain XML — and the
forwards the VMs would get; exit 2 when something would change, 0
when nothing would.`,
  usage: 'plan [VM…] [--all] [--connect CONNECT]',
  options: SELECT_OPTIONS,
  optionHelp: SELECT_HELP,
  maxArgs: Number.MAX_SAFE_INTEGER,
  help: `For each VM named (by its exact libvirt name) or, with --all, every domain: which NICs a
template wires with binding nat but that have no DHCP host reservation in their libvirt network
(and no address: in the template), the address apply would reserve for each — the one the NIC
leases now when it has one, else the first free one of the subnet, outside the DHCP range when
there is room; IPv4, and IPv6 (<host id=DUID name=VM ip=…/>) where the network's IPv6 <ip> has a
DHCP range — as a diff of the network XML; the unified diff of the domain XML apply would define
(the decisions it records in <metadata>); and the forwards the VM would get at its next start.
Changes nothing. Exit status: 0 nothing would change, 2 something would, 1 a VM could not be planned.`,
  examples: ['virtwire plan web-1', 'virtwire plan --all'],
  async run({ values, args, paths, out }) {
    const client = new LibvirtClient({ uri: localUri(values.connect) });
    try {
      const networks = new NetworkReader(client, paths);
      let ports: PortStep | undefined;
      let changes = false;
      let failed = false;
      let selected;
      let templates;
      try {
        templates = templatesOf(paths);
        selected = await selectDomains(client, args, values.all === true);
      } catch (err) {
        // Exit 2 means "something would change": any error here must be 1.
        process.stderr.write(`virtwire: ${errorMessage(err)}\n`);
        return 1;
      }
      for (const s of selected) {
        const vm = `VM ${quoted(s.name)}`;
        if ('error' in s) { out(`${vm}: error: ${s.error}\n`); failed = true; continue; }
        try {
          ports ??= new PortStep(paths, templates, { preview: true });
          const { reservations, plan, xmlBefore, xmlAfter } = await wireDomain(client, networks, templates, loadConfig(paths.configFile), s.domain, { forDefine: false, ports });
          const domainDiff = s.domain.persistent ? unifiedDiff(xmlBefore, xmlAfter, `domain ${quoted(s.name)}`, `domain ${quoted(s.name)} (after apply)`) : '';
          const changing = reservations.length > 0 || ports.changed || domainDiff !== '';
          out(`${vm}: ${changing ? 'would change' : 'unchanged'}\n`);
          for (const net of new Set(reservations.map((r) => r.network))) out(reservationDiff(net, reservations.filter((r) => r.network === net)));
          for (const line of ports.text()) out(`  ${line}\n`);
          out(domainDiff);
          for (const f of plan.forwards) out(`  forward at start: ${describeForward(f)}\n`);
          changes ||= changing;
        } catch (err) {
          out(`${vm}: error: ${errorMessage(err)}\n`);
          failed = true;
        }
      }
      return failed ? 1 : changes ? 2 : 0;
    } finally {
      await client.close();
    }
  },
});

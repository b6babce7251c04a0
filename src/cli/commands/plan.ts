import { LibvirtClient } from '../../libvirt/client.js';
import type { NetworkInfo } from '../../xml/network.js';
import { dhcpIpv4, dhcpIpv6 } from '../../plan/allocate.js';
import { networkWithHosts } from '../../rewrite/network.js';
import type { Reservation } from '../../engine/reservations.js';
import { loadConfig } from '../../policy/config.js';
import { describeForward } from '../../plan/describe.js';
import { errorMessage, quoted } from '../../errors.js';
import { defineCommand } from '../command.js';
import { localUri, NetworkReader, SELECT_HELP, SELECT_OPTIONS, hostOf, selectDomains, templatesOf } from '../reservations.js';
import { wireDomain } from '../wire.js';
import { DefineHost } from '../define-host.js';
import { networksToDefine } from '../networks.js';
import { PortStep } from '../allocations.js';
import { unifiedDiff } from '../diff.js';

/**
 * The network XML change as a unified diff: the <host> elements apply would
 * add, written into the network's current XML where libvirt puts them.
 */
export function reservationDiff(network: { name: string; xml: string; info: NetworkInfo }, added: readonly Reservation[]): string {
  const hosts = added.map((r) => {
    const ip = r.family === 4 ? dhcpIpv4(network.info) : dhcpIpv6(network.info);
    if (!ip) throw new Error(`network ${quoted(network.name)} has no IPv${r.family} DHCP <ip>`);
    const h = hostOf(r);
    return { ipIndex: ip.index, attrs: (['mac', 'id', 'name', 'ip'] as const).flatMap((k) => (h[k] === undefined ? [] : [[k, h[k] as string] as const])) };
  });
  const label = `network ${quoted(network.name)}`;
  return unifiedDiff(network.xml, networkWithHosts(network.xml, hosts), label, `${label} (after apply)`);
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
DHCP range — as a diff of the network XML; a network an isolated template needs that apply would
define; the unified diff of the domain XML apply would define (its NICs attached as their binding
says, the decisions it records in <metadata>); and the forwards the VM would get at its next start.
Changes nothing. Exit status: 0 nothing would change, 2 something would, 1 a VM could not be planned.`,
  examples: ['virtwire plan web-1', 'virtwire plan --all'],
  async run({ values, args, paths, out, run }) {
    const client = new LibvirtClient({ uri: localUri(values.connect) });
    try {
      const networks = new NetworkReader(client, paths);
      const host = new DefineHost(client, run);
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
          const { reservations, plan, xmlBefore, xmlAfter, networks: needed } = await wireDomain(client, networks, templates, loadConfig(paths.configFile), s.domain, { forDefine: false, host, ports });
          const defining = await networksToDefine(networks, needed);
          const domainDiff = s.domain.persistent ? unifiedDiff(xmlBefore, xmlAfter, `domain ${quoted(s.name)}`, `domain ${quoted(s.name)} (after apply)`) : '';
          const changing = reservations.length > 0 || ports.changed || domainDiff !== '' || defining.length > 0;
          out(`${vm}: ${changing ? 'would change' : 'unchanged'}\n`);
          for (const line of defining) out(`  ${line}\n`);
          for (const net of new Set(reservations.map((r) => r.network))) {
            out(reservationDiff({ name: net, xml: networks.xmlOf(net) ?? '', info: networks.peek(net)! }, reservations.filter((r) => r.network === net)));
          }
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

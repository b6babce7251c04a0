// The network side of a define-time change, as XML: the DHCP <host>
// elements `virsh net-update … add ip-dhcp-host` adds, written into the
// network's XML where libvirt puts them — so `virtwire plan` shows a real
// diff of the network. Pure; libvirt makes the real change.
import { parseXmlDocument, type XElement } from '../xml/document.js';

/** One <host> to add, in the <ip> at `ipIndex` (its position among the network's <ip>s). */
export interface HostToAdd {
  ipIndex: number;
  attrs: ReadonlyArray<readonly [string, string]>;
}

/** The network XML with `hosts` added (each after the last <host>, else after the last <range>, of its <ip>'s <dhcp>). */
export function networkWithHosts(xml: string, hosts: readonly HostToAdd[]): string {
  const doc = parseXmlDocument(xml);
  const ips = doc.root.elements('ip');
  for (const h of hosts) {
    const ip = ips[h.ipIndex];
    if (!ip) throw new Error(`network XML has no <ip> #${h.ipIndex + 1}`);
    const dhcp: XElement = ip.elements('dhcp')[0] ?? ip.appendElement({ name: 'dhcp' });
    const last = dhcp.elements('host').at(-1) ?? dhcp.elements('range').at(-1);
    dhcp.insertElement({ name: 'host', attrs: h.attrs }, last ? { after: last } : {});
  }
  return String(doc);
}

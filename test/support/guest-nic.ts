// The sandbox's test guest (src/demo/domain-xml.ts) with a NIC other than
// <interface type='network'>: hand-written <interface> XML for the bindings
// that put a guest on a host bridge or on macvtap. Test-only.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { create } from 'xmlbuilder2';
import { guestDomainXml, guestLabel } from '../../src/demo/domain-xml.js';
import type { Sandbox } from '../../src/demo/sandbox.js';

/** <interface type='bridge'>: a tap on an existing host Linux bridge. */
export function bridgeInterfaceXml(bridge: string, mac: string): string {
  const i = create().ele('interface', { type: 'bridge' });
  i.ele('source', { bridge });
  i.ele('mac', { address: mac.toLowerCase() });
  i.ele('model', { type: 'virtio' });
  return i.end({ headless: true, prettyPrint: true });
}

/** <interface type='direct'>: a macvtap on host device `dev` in macvlan mode `mode`. */
export function directInterfaceXml(dev: string, mode: 'bridge' | 'vepa' | 'private' | 'passthrough', mac: string): string {
  const i = create().ele('interface', { type: 'direct' });
  i.ele('source', { dev, mode });
  i.ele('mac', { address: mac.toLowerCase() });
  i.ele('model', { type: 'virtio' });
  return i.end({ headless: true, prettyPrint: true });
}

/** Domain XML with its one <interface>…</interface> replaced by `iface`. */
export function withInterface(domainXml: string, iface: string): string {
  const re = /<interface\b[\s\S]*?<\/interface>/g;
  const n = domainXml.match(re)?.length ?? 0;
  if (n !== 1) throw new Error(`withInterface: the domain XML has ${n} <interface> elements, expected exactly 1`);
  return domainXml.replace(re, iface.trim());
}

export interface NicGuestSpec {
  name: string;
  mac: string;
  /** The address the guest must report (its DHCP server's fixed lease for `mac`). */
  ip: string;
  label?: string;
}

/**
 * Defines the test guest with `iface` as its only NIC. sb.defineGuest (with
 * reserve: false) first, so the sandbox knows the guest (serial log, expected
 * ip: sb.startGuest / sb.guestReady then work); that definition is replaced
 * by guestDomainXml's with `iface` swapped in — undefined first, because a
 * fresh definition under the same name but another UUID is refused.
 * Returns the XML defined.
 */
export async function defineGuestWithInterface(sb: Sandbox, g: NicGuestSpec, iface: string): Promise<string> {
  const label = g.label ?? guestLabel(g.name);
  await sb.defineGuest({ name: g.name, mac: g.mac, ip: g.ip, label, reserve: false });
  const image = await sb.guestImage();
  const xml = withInterface(guestDomainXml({ name: g.name, mac: g.mac, label, serialLog: sb.consoleLog(g.name), ...image }), iface);
  const file = path.join(sb.dir, `domain-${label}.xml`);
  await fs.writeFile(file, xml);
  await sb.virsh('undefine', '--domain', g.name);
  await sb.virsh('define', '--file', file);
  return xml;
}

// Rewriting one domain <interface> onto what a binding attaches it to:
// pure, in place, idempotent (an interface already attached so is left
// byte for byte). The binding owns the attachment — type, <source>,
// <virtualport>, <vlan>, <port> — and nothing else: <mac>, <model>,
// <address>, <boot>, <filterref>, <bandwidth>… stay as the owner wrote them.
import type { ElementSpec, XElement } from '../../xml/document.js';

export interface Attachment {
  type: 'bridge' | 'direct' | 'network';
  /** <source>'s attributes, in the order libvirt writes them. */
  source: ReadonlyArray<readonly [string, string]>;
  virtualport?: ElementSpec;
  vlan?: ElementSpec;
  /** <port isolated='yes'/>. */
  isolated?: boolean;
}

/**
 * Elements that belong to another kind of attachment and make no sense (or
 * are rejected by libvirt) on this one: a passt <backend> and its
 * <portForward>s, an ethernet NIC's <ip>/<route>, a vhost-user <source>'s
 * children.
 */
const FOREIGN = ['backend', 'portForward', 'ip', 'route'];

export function attachInterface(iface: XElement, a: Attachment): void {
  const typeChanges = iface.getAttribute('type') !== a.type;
  if (typeChanges) {
    iface.setAttribute('type', a.type);
    for (const name of FOREIGN) for (const el of iface.elements(name)) el.remove();
  }
  const source: ElementSpec = { name: 'source', attrs: a.source };
  const current = iface.elements('source')[0];
  // libvirt adds its own attributes to a network <source> (portid, bridge) in
  // live XML; the inactive one is compared as a whole.
  if (current) current.replaceWith(source);
  else {
    const mac = iface.elements('mac')[0];
    iface.insertElement(source, mac ? { after: mac } : {});
  }
  setOptional(iface, 'virtualport', a.virtualport);
  setOptional(iface, 'vlan', a.vlan);
  setOptional(iface, 'port', a.isolated ? { name: 'port', attrs: { isolated: 'yes' } } : undefined);
}

/** The element becomes `spec`, or goes when `spec` is undefined. */
function setOptional(iface: XElement, name: string, spec: ElementSpec | undefined): void {
  const found = iface.elements(name);
  if (!spec) {
    for (const el of found) el.remove();
    return;
  }
  for (const extra of found.slice(1)) extra.remove();
  iface.upsertElement(name, spec, { after: iface.elements('source')[0] as XElement });
}

/** `<driver name='vhost'|'qemu'>` (vhost-net on or off), other driver attributes and children kept. */
export function setVhost(iface: XElement, vhost: boolean | undefined): void {
  if (vhost === undefined) return;
  const name = vhost ? 'vhost' : 'qemu';
  const driver = iface.elements('driver')[0];
  if (driver) {
    if (driver.getAttribute('name') !== name) driver.setAttribute('name', name);
    return;
  }
  const model = iface.elements('model')[0];
  iface.insertElement({ name: 'driver', attrs: { name } }, model ? { after: model } : {});
}

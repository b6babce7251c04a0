// Domain XML of the e2e test guest (see guest-image.ts for what it runs).
// Built with xmlbuilder2 so any domain name — spaces, quotes, '<', '&',
// non-ASCII — is escaped correctly; the raw name never reaches the kernel
// command line, a derived token does.
import { createHash } from 'node:crypto';
import { create } from 'xmlbuilder2';

export interface GuestDomainOptions {
  name: string;
  mac: string;
  /** libvirt network to attach to (default: 'default'). */
  network?: string;
  kernel: string;
  initrd: string;
  /** Host file the guest's ttyS0 is written to (its READY line lands here). */
  serialLog: string;
  memoryMiB?: number;
  /** vw.name value the guest reports; must match SAFE_LABEL. Default: guestLabel(name). */
  label?: string;
  /** IPv4:PORT the guest GETs / from every second, printing the answer (see guest-image.ts). */
  fetch?: string;
  /** Also take a DHCPv6 lease and report it (vw.ip6=1; needs the image built with ipv6). */
  ip6?: boolean;
}

/** What may go on the kernel command line as vw.name (the guest filters to the same set). */
export const SAFE_LABEL = /^[A-Za-z0-9._-]{1,48}$/;

/**
 * The token the guest calls itself: the name when it is already a safe token,
 * otherwise `vm-` + 12 hex digits of its SHA-256 (stable, so tests can predict it).
 */
export function guestLabel(name: string): string {
  if (SAFE_LABEL.test(name)) return name;
  return `vm-${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 12)}`;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function guestDomainXml(o: GuestDomainOptions): string {
  if (!o.name || o.name.includes('/')) {
    throw new Error(`guestDomainXml: invalid domain name ${JSON.stringify(o.name)} (libvirt rejects empty names and '/')`);
  }
  if (!MAC.test(o.mac)) throw new Error(`guestDomainXml: invalid MAC ${JSON.stringify(o.mac)} (want aa:bb:cc:dd:ee:ff)`);
  const label = o.label ?? guestLabel(o.name);
  if (!SAFE_LABEL.test(label)) {
    throw new Error(`guestDomainXml: label ${JSON.stringify(label)} must match ${SAFE_LABEL} (it goes on the kernel command line)`);
  }
  const mem = o.memoryMiB ?? 192;

  const doc = create({ version: '1.0', encoding: 'UTF-8' });
  const d = doc.ele('domain', { type: 'qemu' }); // TCG: this machine has no usable KVM
  d.ele('name').txt(o.name);
  d.ele('memory', { unit: 'MiB' }).txt(String(mem));
  d.ele('vcpu').txt('1');
  const os = d.ele('os');
  os.ele('type', { arch: 'x86_64' }).txt('hvm');
  os.ele('kernel').txt(o.kernel);
  os.ele('initrd').txt(o.initrd);
  if (o.fetch !== undefined && !/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(o.fetch)) {
    throw new Error(`guestDomainXml: invalid fetch ${JSON.stringify(o.fetch)} (want IPv4:PORT)`);
  }
  os.ele('cmdline').txt(`console=ttyS0 quiet vw.name=${label}${o.fetch ? ` vw.fetch=${o.fetch}` : ''}${o.ip6 ? ' vw.ip6=1' : ''}`);
  d.ele('clock', { offset: 'utc' });
  d.ele('on_poweroff').txt('destroy');
  d.ele('on_reboot').txt('restart');
  d.ele('on_crash').txt('destroy');
  const dev = d.ele('devices');
  const iface = dev.ele('interface', { type: 'network' });
  iface.ele('source', { network: o.network ?? 'default' });
  iface.ele('mac', { address: o.mac.toLowerCase() });
  iface.ele('model', { type: 'virtio' });
  const serial = dev.ele('serial', { type: 'file' });
  serial.ele('source', { path: o.serialLog });
  serial.ele('target', { port: '0' });
  const console = dev.ele('console', { type: 'file' });
  console.ele('source', { path: o.serialLog });
  console.ele('target', { type: 'serial', port: '0' });
  dev.ele('memballoon', { model: 'none' });
  return doc.end({ prettyPrint: true });
}

import { parseXml, child, children, attr, text, elementEntries, decodeXmlText, type XmlElement } from './parse.js';
import { UserError, quoted, escapeUnsafe } from '../errors.js';
import { MAC, UUID } from '../model/ids.js';
import type { RecordedForward, RecordedNic } from '../model/record.js';

/** XML namespace of virtwire's element in a domain's <metadata>. */
export const METADATA_NS = 'https://virtwire.dev/xmlns/domain/1';
/** Local name of the child of virtwire's metadata element where `virtwire apply` records its decisions. */
export const RECORD_ELEMENT = 'applied';

export interface DomainNic {
  /** Position among the domain's <interface> elements (0-based), for messages. */
  index: number;
  type: string;
  mac: string;
  network?: string;
  bridge?: string;
  tap?: string;
  /** It has a <vlan> element (libvirt sets that VLAN itself). */
  vlan?: true;
  /** A hostdev NIC's PCI device ("0000:03:10.1"): its <source><address type='pci'>. */
  pci?: string;
  /**
   * The network the NIC was on when a binding took it over and moved it (the
   * record's `from`): templates keep matching it by that network. Untrusted,
   * like the whole record: it only picks among templates whose globs already
   * match the domain, as the owner could by choosing the NIC's network.
   */
  from?: string;
}

/** What a domain's own <metadata> asks of virtwire. VM owners may edit it: treat as untrusted. */
export interface DomainMetadata {
  templates: string[];
  forwards: Array<{ attrs: Record<string, string>; index: number }>;
  /**
   * What `virtwire apply` decided, as recorded in the same element
   * (undefined: never applied, or the record was removed). Unverified: only
   * compared with what the templates give now.
   */
  record?: RecordedNic[];
}

export interface DomainInfo {
  name: string;
  uuid: string;
  nics: DomainNic[];
  metadata: DomainMetadata;
}


/**
 * Reads what virtwire needs from a domain XML (live or inactive), or from
 * libvirt's status file (<domstatus><domain>…). The name is kept byte for
 * byte: it is how libvirt and the ledger know the VM. Throws UserError on
 * malformed input.
 */
export function parseDomain(xml: string, source = 'domain XML'): DomainInfo {
  return parseDomainDocument(xml, source).domain;
}

/** libvirt's status file /run/libvirt/qemu/NAME.xml: the live domain plus the QEMU pid. */
export function parseDomainStatus(xml: string, source: string): { domain: DomainInfo; pid?: number } {
  const r = parseDomainDocument(xml, source);
  const pid = r.pid === undefined || !/^\d+$/.test(r.pid) ? undefined : Number(r.pid);
  return { domain: r.domain, pid };
}

function parseDomainDocument(xml: string, source: string): { domain: DomainInfo; pid?: string } {
  let root: XmlElement;
  try {
    root = parseXml(xml);
  } catch (err) {
    throw new UserError(`${source} is not well-formed XML: ${escapeUnsafe((err as Error).message)}`);
  }
  const status = child(root, 'domstatus');
  const dom = child(root, 'domain') ?? child(status, 'domain');
  if (!dom) throw new UserError(`${source} has no <domain> element`);
  try {
    return { domain: readDomain(dom, source), pid: attr(status, 'pid') };
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${source}: ${escapeUnsafe((err as Error).message)}`); // e.g. an undecodable entity
  }
}

function readDomain(dom: XmlElement, source: string): DomainInfo {
  const name = text(child(dom, 'name'));
  const uuid = (text(child(dom, 'uuid')) ?? '').trim().toLowerCase();
  if (!name) throw new UserError(`${source} has no <name>`);
  if (!UUID.test(uuid)) throw new UserError(`VM ${quoted(name)}: its XML has no valid <uuid>`);
  const nics = children(child(dom, 'devices'), 'interface').map((iface, index): DomainNic => {
    const src = child(iface, 'source');
    const mac = (attr(child(iface, 'mac'), 'address') ?? '').toLowerCase();
    return {
      index,
      type: attr(iface, 'type') ?? '',
      mac,
      network: attr(iface, 'type') === 'network' ? attr(src, 'network') : undefined,
      bridge: attr(src, 'bridge'),
      tap: attr(child(iface, 'target'), 'dev'),
      ...(child(iface, 'vlan') ? { vlan: true as const } : {}),
      ...(attr(iface, 'type') === 'hostdev' && pciOf(child(src, 'address')) ? { pci: pciOf(child(src, 'address')) } : {}),
    };
  });
  for (const n of nics) {
    if (n.type === 'network' && !MAC.test(n.mac)) {
      throw new UserError(`VM ${quoted(name)} NIC #${n.index + 1}: no valid <mac address>; libvirt assigns one at define time — redefine the domain`);
    }
  }
  const metadata = readMetadata(child(dom, 'metadata'));
  for (const n of nics) {
    const from = metadata.record?.find((r) => r.mac === n.mac)?.from;
    if (from) n.from = from;
  }
  return { name, uuid, nics, metadata };
}

/** "0000:03:10.1" from <address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/>; undefined for anything else. */
export function pciOf(address: XmlElement | undefined): string | undefined {
  if (attr(address, 'type') !== 'pci') return undefined;
  const hex = (a: string, width: number): string | undefined => {
    const v = attr(address, a);
    return v && /^0x[0-9a-fA-F]+$/.test(v) && parseInt(v, 16).toString(16).length <= width ? parseInt(v, 16).toString(16).padStart(width, '0') : undefined;
  };
  const [d, b, s, f] = [hex('domain', 4), hex('bus', 2), hex('slot', 2), hex('function', 1)];
  return d && b && s && f ? `${d}:${b}:${s}.${f}` : undefined;
}

/** PCI devices a domain XML hands its guest: hostdev NICs and <hostdev type='pci'> (for VF allocation: a VF any domain names is taken). */
export function pciDevicesOf(xml: string): string[] {
  const root = parseXml(xml);
  const dom = child(root, 'domain') ?? child(child(root, 'domstatus'), 'domain');
  const devices = child(dom, 'devices');
  const out: string[] = [];
  for (const i of children(devices, 'interface')) if (attr(i, 'type') === 'hostdev') out.push(pciOf(child(child(i, 'source'), 'address')) ?? '');
  for (const h of children(devices, 'hostdev')) if (attr(h, 'type') === 'pci') out.push(pciOf(child(child(h, 'source'), 'address')) ?? '');
  return out.filter(Boolean);
}

/**
 * Finds virtwire's element in <metadata> by namespace URI, whatever prefix
 * libvirt or the user gave it, and reads its children by local name.
 */
function readMetadata(meta: XmlElement | undefined): DomainMetadata {
  const out: DomainMetadata = { templates: [], forwards: [] };
  for (const [tag, el] of elementEntries(meta)) {
    const prefix = tag.includes(':') ? tag.slice(0, tag.indexOf(':')) : '';
    const ns = attr(el, prefix ? `xmlns:${prefix}` : 'xmlns');
    if (ns !== METADATA_NS) continue;
    let index = 0;
    for (const [childTag, c] of elementEntries(el)) {
      const local = childTag.slice(childTag.indexOf(':') + 1);
      if (local === 'template') {
        const n = attr(c, 'name');
        if (n !== undefined) out.templates.push(n);
      } else if (local === 'forward') {
        out.forwards.push({ attrs: attrsOf(c), index: index++ });
      } else if (local === RECORD_ELEMENT) {
        out.record = readRecord(c);
      }
    }
  }
  return out;
}

function attrsOf(el: XmlElement): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(el)) if (k.startsWith('@_') && typeof v === 'string') attrs[k.slice(2)] = decodeXmlText(v);
  return attrs;
}

/** The recorded decisions; what is not in the recorded shape is skipped (it is only ever compared). */
function readRecord(el: XmlElement): RecordedNic[] {
  const local = (tag: string): string => tag.slice(tag.indexOf(':') + 1);
  const nics: RecordedNic[] = [];
  for (const [tag, n] of elementEntries(el)) {
    if (local(tag) !== 'nic') continue;
    const a = attrsOf(n);
    const forwards: RecordedForward[] = [];
    for (const [ftag, f] of elementEntries(n)) {
      const fa = attrsOf(f);
      if (local(ftag) !== 'forward' || !fa.proto || !fa.host || !fa.to || !fa.guest) continue;
      forwards.push({
        proto: fa.proto, host: fa.host, to: fa.to, guest: fa.guest,
        ...(fa.listen ? { listen: fa.listen } : {}), ...(fa.from ? { from: fa.from } : {}),
      });
    }
    nics.push({
      mac: (a.mac ?? '').toLowerCase(), template: a.template ?? '', binding: a.binding ?? '',
      bindingVersion: Number(a.version ?? 0), ...(a.network !== undefined ? { network: a.network } : {}),
      ...(a.from ? { from: a.from } : {}), ...(a.attached ? { attached: a.attached } : {}), forwards,
    });
  }
  return nics;
}

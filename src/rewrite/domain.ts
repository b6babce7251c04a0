// The define-time rewrite of a domain's XML: pure, in place, idempotent.
// Everything virtwire does not own (elements, attributes, comments,
// namespaces, other tools' <metadata>) is left byte for byte; rewriting its
// own output — or libvirt's reformatting of it — changes nothing, so `apply`
// never redefines in a loop.
import { parseXmlDocument, type ElementSpec, type XElement, type XmlDocument } from '../xml/document.js';
import { METADATA_NS, RECORD_ELEMENT } from '../xml/domain.js';
import type { RecordedNic } from '../model/record.js';

/** Where libvirt writes <metadata>: after the last of these that the domain has (formatdomain order). */
const BEFORE_METADATA = ['description', 'title', 'genid', 'uuid', 'name'];
/** The element name virtwire gives its metadata element when the domain has none (the `--key` of the README's `virsh metadata`). */
const DEFAULT_ELEMENT = 'virtwire:wiring';

export interface DomainRewrite {
  /** The wired NICs' decisions to record; empty: the domain is not wired (a stale record goes). */
  record: readonly RecordedNic[];
}

/** Parses, rewrites, serializes. `changed` is false exactly when the text is byte-identical. */
export function rewriteDomainXml(xml: string, rewrite: DomainRewrite): { xml: string; changed: boolean } {
  const doc = parseXmlDocument(xml);
  writeRecord(doc, rewrite.record);
  const out = String(doc);
  return { xml: out, changed: out !== xml };
}

/** The MACs of the domain's <interface>s, lower-case; '' for one without a <mac address>. */
export function interfaceMacs(doc: XmlDocument): string[] {
  return doc.findAll('domain/devices/interface').map((i) => (i.find('mac')?.getAttribute('address') ?? '').toLowerCase());
}

/**
 * Gives every <interface> without a <mac address> one (as its first child),
 * from `newMac`, never one the domain already uses. Decisions are keyed by
 * MAC, so a NIC needs one before anything is decided for it. Returns what
 * it assigned, in NIC order.
 */
export function assignMissingMacs(doc: XmlDocument, newMac: (taken: ReadonlySet<string>) => string): string[] {
  const taken = new Set(interfaceMacs(doc).filter(Boolean));
  const assigned: string[] = [];
  for (const iface of doc.findAll('domain/devices/interface')) {
    if (iface.find('mac')?.getAttribute('address')) continue;
    const mac = newMac(taken).toLowerCase();
    if (taken.has(mac)) throw new Error(`newMac returned ${mac}, which the domain already uses`);
    taken.add(mac);
    assigned.push(mac);
    const existing = iface.find('mac');
    if (existing) existing.setAttribute('address', mac);
    else {
      const first = iface.elements()[0];
      iface.insertElement({ name: 'mac', attrs: { address: mac } }, first ? { before: first } : {});
    }
  }
  return assigned;
}

/** A MAC in QEMU's locally administered range 52:54:00, random in the last three bytes. */
export function randomQemuMac(taken: ReadonlySet<string>, random: () => number = Math.random): string {
  for (;;) {
    const tail = [0, 0, 0].map(() => Math.floor(random() * 256).toString(16).padStart(2, '0'));
    const mac = `52:54:00:${tail.join(':')}`;
    if (!taken.has(mac)) return mac;
  }
}

/** virtwire's element in <metadata> (any prefix, found by namespace URI). */
export function virtwireElement(doc: XmlDocument): XElement | undefined {
  return doc.root.elements('metadata')[0]?.elements(`{${METADATA_NS}}*`)[0];
}

/**
 * Makes the record in virtwire's metadata element equal `nics` (untouched
 * when it already is, whatever its formatting); removes it when `nics` is
 * empty. The VM owner's own children of that element (<template>,
 * <forward>) stay as they are.
 */
export function writeRecord(doc: XmlDocument, nics: readonly RecordedNic[]): void {
  const dom = doc.root;
  let mine = virtwireElement(doc);
  if (nics.length === 0) {
    mine?.elements(`{${METADATA_NS}}${RECORD_ELEMENT}`)[0]?.remove();
    return;
  }
  if (!mine) {
    let meta = dom.elements('metadata')[0];
    if (!meta) {
      const after = BEFORE_METADATA.map((n) => dom.elements(n)[0]).find((e) => e !== undefined);
      meta = dom.insertElement({ name: 'metadata' }, after ? { after } : {});
    }
    mine = meta.appendElement({ name: DEFAULT_ELEMENT, attrs: { 'xmlns:virtwire': METADATA_NS } });
  }
  const p = mine.prefix ? `${mine.prefix}:` : '';
  mine.upsertElement(`{${METADATA_NS}}${RECORD_ELEMENT}`, recordSpec(p, nics));
}

function recordSpec(p: string, nics: readonly RecordedNic[]): ElementSpec {
  const sorted = [...nics].sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));
  return {
    name: `${p}${RECORD_ELEMENT}`,
    children: sorted.map((n) => ({
      name: `${p}nic`,
      attrs: [
        ['mac', n.mac], ['template', n.template], ['binding', n.binding], ['version', String(n.bindingVersion)],
        ...(n.network === undefined ? [] : [['network', n.network] as const]),
        ...(n.from === undefined ? [] : [['from', n.from] as const]),
        ...(n.attached === undefined ? [] : [['attached', n.attached] as const]),
      ],
      children: n.forwards.map((f) => ({
        name: `${p}forward`,
        attrs: [
          ['proto', f.proto], ['host', f.host], ['to', f.to], ['guest', f.guest],
          ...(f.listen ? [['listen', f.listen] as const] : []), ...(f.from ? [['from', f.from] as const] : []),
        ],
      })),
    })),
  };
}

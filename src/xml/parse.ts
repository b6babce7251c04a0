import { XMLParser } from 'fast-xml-parser';

/** A parsed element: attributes under "@_name", children by tag name, always as arrays. */
export type XmlElement = { [key: string]: XmlElement[] | string | undefined };

// Text and attribute values are kept raw (no trimming, no entity processing)
// and decoded by attr()/text() below: fast-xml-parser 4 trims names and does
// not decode character references (libvirt writes a tab in a name as &#9;),
// and a name must reach the ledger byte for byte.
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: false,
  isArray: (_name, _jpath, _isLeaf, isAttribute) => !isAttribute,
  processEntities: false,
  htmlEntities: false,
});

/** Parses XML into elements; throws on malformed input. */
export function parseXml(text: string): XmlElement {
  return parser.parse(text, true) as XmlElement;
}

const ENTITY = /&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));|&/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * Decodes XML's five entities and character references in one pass (so
 * `&amp;#10;` stays `&#10;`). Throws on anything else: well-formed XML from
 * libvirt has nothing else, and guessing would change a name.
 */
export function decodeXmlText(raw: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(ENTITY, (whole, named: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (named) return NAMED[named] as string;
    const code = dec !== undefined ? Number(dec) : hex !== undefined ? parseInt(hex, 16) : NaN;
    if (!Number.isInteger(code) || code < 1 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      throw new Error(`unsupported XML entity or character reference ${JSON.stringify(whole)}`);
    }
    return String.fromCodePoint(code);
  });
}

export function children(el: XmlElement | undefined, tag: string): XmlElement[] {
  const v = el?.[tag];
  return Array.isArray(v) ? v.map((c) => (typeof c === 'string' ? { '#text': c } : c)) : [];
}

export function child(el: XmlElement | undefined, tag: string): XmlElement | undefined {
  return children(el, tag)[0];
}

export function attr(el: XmlElement | undefined, name: string): string | undefined {
  const v = el?.[`@_${name}`];
  return typeof v === 'string' ? decodeXmlText(v) : undefined;
}

export function text(el: XmlElement | undefined): string | undefined {
  if (!el) return undefined;
  const v = el['#text'];
  if (typeof v === 'string') return decodeXmlText(v);
  if (Array.isArray(v) && typeof v[0] === 'string') return decodeXmlText(v[0]);
  return undefined;
}

/** Element children with their tag names (attributes and text skipped). */
export function elementEntries(el: XmlElement | undefined): Array<[string, XmlElement]> {
  const out: Array<[string, XmlElement]> = [];
  for (const [k, v] of Object.entries(el ?? {})) {
    if (k.startsWith('@_') || k === '#text' || !Array.isArray(v)) continue;
    for (const c of v) out.push([k, typeof c === 'string' ? { '#text': c } : c]);
  }
  return out;
}

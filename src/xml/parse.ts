import { XMLParser } from 'fast-xml-parser';

/** A parsed element: attributes under "@_name", children by tag name, always as arrays. */
export type XmlElement = { [key: string]: XmlElement[] | string | undefined };

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  isArray: (_name, _jpath, _isLeaf, isAttribute) => !isAttribute,
  processEntities: true,
  htmlEntities: false,
});

/** Parses XML into elements; throws on malformed input. */
export function parseXml(text: string): XmlElement {
  return parser.parse(text, true) as XmlElement;
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
  return typeof v === 'string' ? v : undefined;
}

export function text(el: XmlElement | undefined): string | undefined {
  if (!el) return undefined;
  const v = el['#text'];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
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

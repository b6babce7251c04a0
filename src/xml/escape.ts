// Decoding and encoding of XML character data for the editable document
// (document.ts). Decoding follows XML 1.0 exactly, as libxml2 does for
// libvirt: end-of-line normalization, attribute-value normalization, the five
// predefined entities and character references, nothing else. Encoding
// writes what libvirt writes (virBufferEscapeString: & < > ' " as entities),
// except where libvirt's own spelling would not survive a re-parse.

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const REFERENCE = /&(?:([A-Za-z_][\w.-]*)|#([0-9]+)|#x([0-9a-fA-F]+));/y;

/** Whether a code point is an XML 1.0 Char. */
export function isXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
}

/** The first character that may not appear in an XML 1.0 document, if any (lone surrogates included). */
export const NOT_XML_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/**
 * Checks every `&` in raw character data (text or an attribute value as
 * written) and returns the index and message of the first bad one, or
 * undefined. Only the five predefined entities and character references to
 * XML Chars are allowed: libvirt's XML has no DTD that could define others.
 */
export function checkReferences(raw: string): { index: number; message: string } | undefined {
  let i = raw.indexOf('&');
  while (i !== -1) {
    REFERENCE.lastIndex = i;
    const m = REFERENCE.exec(raw);
    if (!m) return { index: i, message: "'&' that does not start an entity or character reference (write &amp;)" };
    const [whole, named, dec, hex] = m;
    if (named !== undefined) {
      if (!(named in NAMED)) return { index: i, message: `undefined entity ${whole}` };
    } else {
      const code = dec !== undefined ? Number(dec) : parseInt(hex as string, 16);
      if (!isXmlChar(code)) return { index: i, message: `character reference ${whole} is not an XML character` };
    }
    i = raw.indexOf('&', i + whole.length);
  }
  return undefined;
}

function decodeReferences(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));/g, (whole, named: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (named) return NAMED[named] as string;
    const code = dec !== undefined ? Number(dec) : parseInt(hex as string, 16);
    if (!isXmlChar(code)) throw new Error(`character reference ${whole} is not an XML character`);
    return String.fromCodePoint(code);
  });
}

/** XML end-of-line handling: CR LF and a lone CR become LF (before references are expanded). */
function normalizeNewlines(raw: string): string {
  return raw.includes('\r') ? raw.replace(/\r\n?/g, '\n') : raw;
}

/** The value of text as written between tags (`a &amp; b` → `a & b`). */
export function decodeText(raw: string): string {
  return decodeReferences(normalizeNewlines(raw));
}

/**
 * The value of an attribute as written between its quotes. A literal tab or
 * newline becomes a space (XML attribute-value normalization, which libxml2
 * and so libvirt apply); `&#9;` and `&#10;` stay a tab and a newline.
 */
export function decodeAttribute(raw: string): string {
  return decodeReferences(normalizeNewlines(raw).replace(/[\t\n]/g, ' '));
}

/** The value inside a CDATA section, as written without its delimiters. */
export function decodeCData(raw: string): string {
  return normalizeNewlines(raw);
}

function checkValue(value: string, what: string): void {
  const bad = NOT_XML_CHAR.exec(value);
  if (bad) {
    const code = bad[0].codePointAt(0) as number;
    throw new Error(`${what} holds U+${code.toString(16).toUpperCase().padStart(4, '0')}, which XML 1.0 cannot carry`);
  }
}

const TEXT_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', "'": '&apos;', '"': '&quot;', '\r': '&#13;' };
const ATTRIBUTE_ESCAPES: Record<string, string> = { ...TEXT_ESCAPES, '\t': '&#9;', '\n': '&#10;' };

/**
 * Text content as libvirt writes it: & < > ' " as entities, tab and newline
 * as themselves. A carriage return becomes `&#13;` (libvirt writes it raw,
 * and every parser then reads a newline). Throws on characters XML cannot carry.
 */
export function encodeText(value: string): string {
  checkValue(value, 'text');
  return value.replace(/[&<>'"\r]/g, (c) => TEXT_ESCAPES[c] as string);
}

/**
 * An attribute value as libvirt writes it (& < > ' " as entities), valid in
 * either quote style. Tab, newline and carriage return become `&#9;`,
 * `&#10;`, `&#13;`: libvirt writes them raw, and a parser then reads a space.
 */
export function encodeAttribute(value: string): string {
  checkValue(value, 'attribute value');
  return value.replace(/[&<>'"\t\n\r]/g, (c) => ATTRIBUTE_ESCAPES[c] as string);
}

// A strict, lossless XML 1.0 parser for document.ts: every byte of the input
// lands in some node's raw text, so serializing gives the input back. It
// checks what makes XML well-formed (one root, matching tags, unique
// attributes, valid names, characters and references, declared namespace
// prefixes) and refuses what libvirt's XML never has and that could change
// meaning behind our back: a DOCTYPE internal subset (entity definitions).
import { checkReferences, NOT_XML_CHAR } from './escape.js';
import {
  NAME_AT,
  QNAME,
  XAttribute,
  XCData,
  XComment,
  XDoctype,
  XElement,
  XmlDocument,
  XProcessingInstruction,
  XText,
  type Quote,
  type XNode,
} from './tree.js';

/** Malformed XML, with where it went wrong (1-based line and column). */
export class XmlSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`line ${line}, column ${column}: ${reason}`);
    this.name = 'XmlSyntaxError';
  }
}

/** libxml2's default nesting limit, which libvirt's parser runs with. */
export const MAX_DEPTH = 256;

const WS = /[ \t\r\n]*/y;
const XML_DECL =
  /^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:"1\.[0-9]+"|'1\.[0-9]+')(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:"[A-Za-z][A-Za-z0-9._-]*"|'[A-Za-z][A-Za-z0-9._-]*'))?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:"(?:yes|no)"|'(?:yes|no)'))?[ \t\r\n]*\?>$/;

export interface ParseOptions {
  /** Quote for attributes virtwire adds where nothing else tells (default `'`, as libvirt writes). */
  quote?: Quote;
}

export function parseTree(s: string, options: ParseOptions = {}): XmlDocument {
  return new Parser(s, new XmlDocument(options.quote ?? "'")).document();
}

class Parser {
  private pos = 0;

  constructor(
    private readonly s: string,
    private readonly doc: XmlDocument,
  ) {}

  private fail(reason: string, at = this.pos): never {
    let line = 1;
    let lineStart = 0;
    for (let i = this.s.indexOf('\n'); i !== -1 && i < at; i = this.s.indexOf('\n', i + 1)) {
      line++;
      lineStart = i + 1;
    }
    throw new XmlSyntaxError(reason, line, at - lineStart + 1);
  }

  private startsWith(t: string): boolean {
    return this.s.startsWith(t, this.pos);
  }

  private whitespace(): string {
    WS.lastIndex = this.pos;
    const m = WS.exec(this.s) as RegExpExecArray;
    this.pos += m[0].length;
    return m[0];
  }

  private name(what: string): string {
    NAME_AT.lastIndex = this.pos;
    const m = NAME_AT.exec(this.s);
    if (!m) this.fail(`expected ${what} name`);
    if (!QNAME.test(m[0])) this.fail(`${JSON.stringify(m[0])} is not a valid ${what} name (at most one ':', not first or last)`);
    this.pos += m[0].length;
    return m[0];
  }

  private checkCharData(raw: string, at: number): void {
    const bad = checkReferences(raw);
    if (bad) this.fail(bad.message, at + bad.index);
  }

  document(): XmlDocument {
    const { s, doc } = this;
    const badChar = NOT_XML_CHAR.exec(s);
    if (badChar) {
      const code = badChar[0].codePointAt(0) as number;
      this.fail(`character U+${code.toString(16).toUpperCase().padStart(4, '0')} is not allowed in XML`, badChar.index);
    }
    if (s.startsWith('\uFEFF')) {
      doc.bom = true;
      this.pos = 1;
    }
    if (this.startsWith('<?xml') && /[ \t\r\n?]/.test(s[this.pos + 5] ?? '')) {
      const end = s.indexOf('?>', this.pos);
      if (end === -1) this.fail('XML declaration is not closed with ?>');
      const raw = s.slice(this.pos, end + 2);
      if (!XML_DECL.test(raw)) this.fail('malformed XML declaration');
      doc.nodes.push(new XProcessingInstruction(raw, 'xml'));
      this.pos = end + 2;
    }
    let root: XElement | undefined;
    let doctype = false;
    while (this.pos < s.length) {
      const start = this.pos;
      const ws = this.whitespace();
      if (ws) doc.nodes.push(new XText(ws));
      if (this.pos >= s.length) break;
      if (this.startsWith('<!--')) doc.nodes.push(this.comment());
      else if (this.startsWith('<?')) doc.nodes.push(this.pi());
      else if (this.startsWith('<!DOCTYPE')) {
        if (root || doctype) this.fail('DOCTYPE must come once, before the root element');
        doctype = true;
        doc.nodes.push(this.doctype());
      } else if (s[this.pos] === '<' && s[this.pos + 1] !== '/' && s[this.pos + 1] !== '!') {
        if (root) this.fail('a second root element (a document has exactly one)');
        root = this.element();
        doc.nodes.push(root);
      } else this.fail(root ? 'content after the root element' : 'text or markup before the root element');
      if (this.pos === start) this.fail('parser made no progress'); // cannot happen; guards the loop
    }
    if (!root) this.fail('no root element');
    return doc;
  }

  private comment(): XComment {
    const start = this.pos;
    const end = this.s.indexOf('-->', start + 4);
    if (end === -1) this.fail('comment is not closed with -->');
    const body = this.s.slice(start + 4, end);
    if (body.includes('--') || body.endsWith('-')) this.fail("'--' inside a comment", start);
    this.pos = end + 3;
    return new XComment(this.s.slice(start, this.pos));
  }

  private pi(): XProcessingInstruction {
    const start = this.pos;
    this.pos += 2;
    const target = this.name('processing instruction target');
    if (target.toLowerCase() === 'xml') this.fail('XML declaration is allowed only at the very start', start);
    const end = this.s.indexOf('?>', this.pos);
    if (end === -1) this.fail('processing instruction is not closed with ?>', start);
    if (end > this.pos && !/[ \t\r\n]/.test(this.s[this.pos] as string)) this.fail('expected whitespace after the processing instruction target');
    this.pos = end + 2;
    return new XProcessingInstruction(this.s.slice(start, this.pos), target);
  }

  private doctype(): XDoctype {
    const start = this.pos;
    const end = this.s.indexOf('>', start);
    if (end === -1) this.fail('DOCTYPE is not closed with >');
    const raw = this.s.slice(start, end + 1);
    if (raw.includes('[')) this.fail('DOCTYPE with an internal subset (entity definitions) is not supported', start);
    this.pos = end + 1;
    return new XDoctype(raw);
  }

  /** Reads an element and everything in it, iteratively (no recursion on deep input). */
  private element(): XElement {
    const root = this.startTag(null);
    const stack: XElement[] = root.selfClosing ? [] : [root];
    const s = this.s;
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as XElement;
      const lt = s.indexOf('<', this.pos);
      if (lt === -1) this.fail(`<${top.name}> is not closed`, s.length);
      if (lt > this.pos) {
        const raw = s.slice(this.pos, lt);
        this.checkCharData(raw, this.pos);
        const cdataEnd = raw.indexOf(']]>');
        if (cdataEnd !== -1) this.fail("']]>' in text (write ]]&gt;)", this.pos + cdataEnd);
        top._appendParsed(new XText(raw));
        this.pos = lt;
      }
      let child: XNode;
      if (this.startsWith('</')) {
        const start = this.pos;
        this.pos += 2;
        const name = this.name('end tag');
        if (name !== top.name) this.fail(`</${name}> closes <${top.name}>`, start);
        this.whitespace();
        if (s[this.pos] !== '>') this.fail(`expected '>' to end </${name}>`);
        this.pos++;
        top._close(s.slice(start, this.pos));
        stack.pop();
        continue;
      } else if (this.startsWith('<!--')) {
        child = this.comment();
      } else if (this.startsWith('<![CDATA[')) {
        const end = s.indexOf(']]>', this.pos);
        if (end === -1) this.fail('CDATA section is not closed with ]]>');
        child = new XCData(s.slice(this.pos, end + 3));
        this.pos = end + 3;
      } else if (this.startsWith('<?')) {
        child = this.pi();
      } else if (this.startsWith('<!')) {
        this.fail("'<!' that starts no comment or CDATA section");
      } else {
        if (stack.length >= MAX_DEPTH) this.fail(`elements nested deeper than ${MAX_DEPTH}`);
        const el = this.startTag(top);
        if (!el.selfClosing) stack.push(el);
        continue;
      }
      top._appendParsed(child);
    }
    return root;
  }

  /** Reads `<name attr='v' …>` or `<name …/>` and attaches the element to its parent. */
  private startTag(parent: XElement | null): XElement {
    const s = this.s;
    const start = this.pos;
    this.pos++; // '<'
    const name = this.name('element');
    const attrs: XAttribute[] = [];
    let tagEnd: string;
    let selfClosing: boolean;
    for (;;) {
      const lead = this.whitespace();
      if (s[this.pos] === '>') {
        this.pos++;
        tagEnd = lead;
        selfClosing = false;
        break;
      }
      if (this.startsWith('/>')) {
        this.pos += 2;
        tagEnd = lead;
        selfClosing = true;
        break;
      }
      if (this.pos >= s.length) this.fail(`<${name}> start tag is not closed`, start);
      if (!lead) this.fail(`expected whitespace, '>' or '/>' in <${name}>`);
      const attrAt = this.pos;
      const attrName = this.name('attribute');
      const eqStart = this.pos;
      this.whitespace();
      if (s[this.pos] !== '=') this.fail(`expected '=' after attribute ${attrName}`);
      this.pos++;
      this.whitespace();
      const eq = s.slice(eqStart, this.pos);
      const quote = s[this.pos];
      if (quote !== "'" && quote !== '"') this.fail(`expected a quoted value for attribute ${attrName}`);
      const close = s.indexOf(quote, this.pos + 1);
      if (close === -1) this.fail(`value of attribute ${attrName} is not closed`);
      const raw = s.slice(this.pos + 1, close);
      const lt = raw.indexOf('<');
      if (lt !== -1) this.fail(`'<' in the value of attribute ${attrName} (write &lt;)`, this.pos + 1 + lt);
      this.checkCharData(raw, this.pos + 1);
      if (attrs.some((a) => a.name === attrName)) this.fail(`attribute ${attrName} appears twice`, attrAt);
      if (attrName.startsWith('xmlns:') && raw === '') this.fail(`namespace prefix ${attrName.slice(6)} declared empty`, attrAt);
      attrs.push(new XAttribute(attrName, raw, quote, lead, eq));
      this.pos = close + 1;
    }
    const el = new XElement(this.doc, name, attrs, tagEnd, selfClosing);
    if (parent) parent._appendParsed(el);
    for (const n of [name, ...attrs.map((a) => a.name)]) {
      const i = n.indexOf(':');
      const prefix = i === -1 ? '' : n.slice(0, i);
      if (prefix === '' || prefix === 'xml' || prefix === 'xmlns') continue;
      if (el.lookupNamespace(prefix) === null) this.fail(`namespace prefix ${JSON.stringify(prefix)} is not declared`, start);
    }
    const expanded = new Set<string>();
    for (const a of attrs) {
      const i = a.name.indexOf(':');
      const prefix = i === -1 ? '' : a.name.slice(0, i);
      if (prefix === '' || prefix === 'xmlns') continue;
      const key = `{${el.lookupNamespace(prefix)}}${a.name.slice(i + 1)}`;
      if (expanded.has(key)) this.fail(`attribute ${a.name} appears twice (same namespace and name)`, start);
      expanded.add(key);
    }
    return el;
  }
}

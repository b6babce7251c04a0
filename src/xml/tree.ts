// The editable XML tree behind document.ts. Every node keeps the text it was
// parsed from (attribute quotes, whitespace inside tags, entity spelling,
// `<a></a>` vs `<a/>`), and serializing writes exactly those pieces back, so
// a document nobody edited serializes to its input byte for byte, and an
// edit changes only the bytes of the node it touches. New nodes are written
// in libvirt's style (single quotes unless the element already uses double,
// indentation and line ends copied from their siblings).
import { decodeAttribute, decodeCData, decodeText, encodeAttribute, encodeText } from './escape.js';
import { parsePath, type PathStep } from './path.js';

export type Quote = "'" | '"';

export const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';

const NAME_START = 'A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}';
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
const NCNAME = `[${NAME_START}][${NAME_CHAR}]*`;
/** An XML name, colons allowed anywhere (read first, then checked as a QName). */
export const NAME_AT = new RegExp(`[${NAME_START}:][${NAME_CHAR}:]*`, 'uy');
/** A namespace-well-formed qualified name: NCName or prefix:NCName. */
export const QNAME = new RegExp(`^${NCNAME}(?::${NCNAME})?$`, 'u');

/** Character data between markup, kept as written (`a &amp; b`). */
export class XText {
  readonly kind = 'text';
  parent: XElement | null = null;
  constructor(readonly raw: string) {}
  /** Decoded (entities and character references expanded, line ends normalized). */
  get value(): string {
    return decodeText(this.raw);
  }
  /** Whitespace only (space, tab, CR, LF), as written. */
  get isWhitespace(): boolean {
    return /^[ \t\r\n]*$/.test(this.raw);
  }
  toString(): string {
    return this.raw;
  }
}

/** `<![CDATA[…]]>`, kept whole. */
export class XCData {
  readonly kind = 'cdata';
  parent: XElement | null = null;
  constructor(readonly raw: string) {}
  get value(): string {
    return decodeCData(this.raw.slice(9, -3));
  }
  toString(): string {
    return this.raw;
  }
}

/** `<!--…-->`, kept whole. */
export class XComment {
  readonly kind = 'comment';
  parent: XElement | null = null;
  constructor(readonly raw: string) {}
  get value(): string {
    return this.raw.slice(4, -3);
  }
  toString(): string {
    return this.raw;
  }
}

/** `<?target …?>`, the XML declaration included, kept whole. */
export class XProcessingInstruction {
  readonly kind = 'pi';
  parent: XElement | null = null;
  constructor(readonly raw: string, readonly target: string) {}
  toString(): string {
    return this.raw;
  }
}

/** `<!DOCTYPE …>` (without an internal subset), kept whole. */
export class XDoctype {
  readonly kind = 'doctype';
  parent: XElement | null = null;
  constructor(readonly raw: string) {}
  toString(): string {
    return this.raw;
  }
}

/** One attribute as written: `lead name eq quote raw quote`, e.g. ` type='network'`. */
export class XAttribute {
  constructor(
    readonly name: string,
    /** The value as written between the quotes. */
    readonly raw: string,
    readonly quote: Quote,
    /** The whitespace before the name. */
    readonly lead = ' ',
    /** What stands between the name and the opening quote: '=' or e.g. ' = '. */
    readonly eq = '=',
  ) {}
  get value(): string {
    return decodeAttribute(this.raw);
  }
  toString(): string {
    return `${this.lead}${this.name}${this.eq}${this.quote}${this.raw}${this.quote}`;
  }
}

export type XNode = XElement | XText | XCData | XComment | XProcessingInstruction | XDoctype;

/**
 * A new element for insertElement / appendElement / replaceWith /
 * replaceChildren. Attribute and text values are plain strings; they are
 * encoded on the way in. Prefixed names need their namespace declared, here
 * (`'xmlns:vw': URI`) or on an ancestor.
 */
export interface ElementSpec {
  name: string;
  attrs?: Record<string, string> | ReadonlyArray<readonly [string, string]>;
  /** Text content; an element has text or children, not both. */
  text?: string;
  children?: readonly ElementSpec[];
}

/** The document's formatting habits, used for what virtwire adds. */
interface Style {
  quote: Quote;
  newline: string;
  indentUnit: string;
}

/** Where a new element goes among its parent's children. */
export interface InsertPosition {
  before?: XElement;
  after?: XElement;
}

function specAttrs(spec: ElementSpec): Array<readonly [string, string]> {
  const a = spec.attrs;
  if (!a) return [];
  return Array.isArray(a) ? [...(a as ReadonlyArray<readonly [string, string]>)] : Object.entries(a as Record<string, string>);
}

function prefixOf(qname: string): string {
  const i = qname.indexOf(':');
  return i === -1 ? '' : qname.slice(0, i);
}

function localOf(qname: string): string {
  return qname.slice(qname.indexOf(':') + 1);
}

/** The whitespace after the last line break of a whitespace-only text, or undefined. */
function indentAfterBreak(node: XNode | undefined): string | undefined {
  if (!(node instanceof XText) || !node.isWhitespace) return undefined;
  const nl = node.raw.lastIndexOf('\n');
  return nl === -1 ? undefined : node.raw.slice(nl + 1);
}

/** An element: its name, attributes and children as parsed, editable in place. */
export class XElement {
  readonly kind = 'element';
  parent: XElement | null = null;
  private attrs: XAttribute[];
  private kids: XNode[] = [];
  /** Whitespace between the last attribute and `>` or `/>`. */
  private tagEnd: string;
  private empty: boolean;
  /** The end tag as written (`</name>`, `</name >`); '' while self-closing. */
  private closeTag = '';

  /** @internal Use parseXmlDocument or the insert methods. */
  constructor(
    readonly owner: XmlDocument,
    readonly name: string,
    attrs: XAttribute[],
    tagEnd: string,
    selfClosing: boolean,
  ) {
    this.attrs = attrs;
    this.tagEnd = tagEnd;
    this.empty = selfClosing;
  }

  /** @internal For the parser: adds a parsed child at the end. */
  _appendParsed(node: XNode): void {
    node.parent = this;
    this.kids.push(node);
  }

  /** @internal For the parser: the end tag as written. */
  _close(closeTag: string): void {
    this.closeTag = closeTag;
  }

  get prefix(): string {
    return prefixOf(this.name);
  }

  get localName(): string {
    return localOf(this.name);
  }

  /** The namespace URI of this element's name, resolved through its ancestors; null for none. */
  get namespaceURI(): string | null {
    return this.lookupNamespace(this.prefix);
  }

  /** The URI a prefix ('' for the default namespace) stands for here; null if none. */
  lookupNamespace(prefix: string): string | null {
    if (prefix === 'xml') return XML_NAMESPACE;
    const decl = prefix === '' ? 'xmlns' : `xmlns:${prefix}`;
    for (let e: XElement | null = this; e; e = e.parent) {
      const a = e.attrs.find((x) => x.name === decl);
      if (a) return a.value === '' ? null : a.value;
    }
    return null;
  }

  /** Whether this element was written `<name …/>` (and is still empty). */
  get selfClosing(): boolean {
    return this.empty;
  }

  get children(): readonly XNode[] {
    return this.kids;
  }

  get attributes(): readonly XAttribute[] {
    return this.attrs;
  }

  /** Child elements, optionally only those matching one path step (`interface`, `{uri}*`, `host[@mac]`). */
  elements(step?: string): XElement[] {
    const els = this.kids.filter((k): k is XElement => k instanceof XElement);
    if (step === undefined) return els;
    const steps = parsePath(step);
    if (steps.length !== 1) throw new Error(`elements() takes one path step, not ${JSON.stringify(step)}`);
    return els.filter((e) => stepMatches(e, steps[0] as PathStep));
  }

  /** Descendants matching a path relative to this element (`devices/interface[@type='network']`). */
  findAll(path: string): XElement[] {
    return descend([this], parsePath(path));
  }

  find(path: string): XElement | undefined {
    return this.findAll(path)[0];
  }

  getAttribute(name: string): string | undefined {
    return this.attrs.find((a) => a.name === name)?.value;
  }

  hasAttribute(name: string): boolean {
    return this.attrs.some((a) => a.name === name);
  }

  /** An attribute by namespace URI and local name (unprefixed attributes are in no namespace). */
  getAttributeNS(uri: string | null, local: string): string | undefined {
    for (const a of this.attrs) {
      const p = prefixOf(a.name);
      if (p === 'xmlns' || a.name === 'xmlns') continue;
      const ns = p === '' ? null : this.lookupNamespace(p);
      if (ns === uri && localOf(a.name) === local) return a.value;
    }
    return undefined;
  }

  /**
   * Sets an attribute. An existing one keeps its place, quotes and spacing,
   * and is left byte for byte as it is when its value is already `value`
   * (so a rewrite of rewritten XML is a no-op). A new one goes last, with the
   * quote style of this element's other attributes, else the document's.
   */
  setAttribute(name: string, value: string): this {
    checkName(name, 'attribute');
    const i = this.attrs.findIndex((a) => a.name === name);
    const old = this.attrs[i];
    if (old) {
      if (old.value === value) return this;
      this.attrs[i] = new XAttribute(name, encodeAttribute(value), old.quote, old.lead, old.eq);
      return this;
    }
    const last = this.attrs[this.attrs.length - 1];
    const quote = last?.quote ?? (this.parent ? this.parent.quoteNear(this) : this.owner.quote);
    this.attrs.push(new XAttribute(name, encodeAttribute(value), quote, last && /[\r\n]/.test(last.lead) ? last.lead : ' '));
    try {
      this.checkNamespaces(false);
    } catch (err) {
      this.attrs.pop();
      throw err;
    }
    return this;
  }

  /** Removes an attribute with the whitespace before it; false if there was none. */
  removeAttribute(name: string): boolean {
    const i = this.attrs.findIndex((a) => a.name === name);
    if (i === -1) return false;
    const [old] = this.attrs.splice(i, 1);
    try {
      this.checkNamespaces(true); // a namespace declaration still in use stays
    } catch (err) {
      this.attrs.splice(i, 0, old as XAttribute);
      throw err;
    }
    return true;
  }

  /** The decoded text of this element's own text and CDATA children (not of descendants). */
  text(): string {
    let out = '';
    for (const k of this.kids) if (k instanceof XText || k instanceof XCData) out += k.value;
    return out;
  }

  /**
   * Makes the element's content this text. Unchanged bytes when the text is
   * already that; refuses an element with element children (use replaceChildren).
   */
  setText(value: string): this {
    if (this.kids.some((k) => k instanceof XElement)) throw new Error(`setText: <${this.name}> has child elements; use replaceChildren`);
    if (this.text() === value) return this;
    const raw = encodeText(value);
    this.setKids(raw === '' ? [] : [new XText(raw)]);
    return this;
  }

  /**
   * Inserts a new child element and returns it: after `after`, before
   * `before`, or else after the last child element. It gets the whitespace
   * its neighbour has (so a new `<interface>` lines up with the others);
   * in an element without children it goes one indentation step in.
   */
  insertElement(spec: ElementSpec, where: InsertPosition = {}): XElement {
    const ref = where.after ?? where.before;
    if (ref && ref.parent !== this) throw new Error(`insertElement: <${ref.name}> is not a child of <${this.name}>`);
    if (where.after && where.before) throw new Error('insertElement: give before or after, not both');
    if (this.kids.some((k) => (k instanceof XText && !k.isWhitespace) || k instanceof XCData)) {
      throw new Error(`insertElement: <${this.name}> holds text; virtwire does not mix text and elements`);
    }
    // The neighbour whose whitespace (and quotes) the new element copies: the
    // reference, else the last child that is markup (element, comment, PI).
    const anchor = ref ?? [...this.kids].reverse().find((k) => !(k instanceof XText));
    const style = { ...this.owner.style(), quote: this.quoteNear(anchor instanceof XElement ? anchor : undefined) };
    if (anchor) {
      const i = this.kids.indexOf(anchor);
      const before = this.kids[i - 1];
      const sep = before instanceof XText && before.isWhitespace ? before.raw : '';
      const indent = sep.includes('\n') ? sep.slice(sep.lastIndexOf('\n') + 1) : undefined;
      const el = this.adopt(buildElement(this.owner, spec, indent, style));
      const nodes: XNode[] = where.before ? [el, ...(sep ? [new XText(sep)] : [])] : [...(sep ? [new XText(sep)] : []), el];
      this.spliceKids(where.before ? i : i + 1, 0, nodes);
      return el;
    }
    const own = this.lineIndent();
    const indent = own === undefined ? undefined : own + style.indentUnit;
    const el = this.adopt(buildElement(this.owner, spec, indent, style));
    this.setKids(own === undefined ? [el] : [new XText(style.newline + indent), el, new XText(style.newline + own)]);
    return el;
  }

  /**
   * The quote character for a new element among this one's children: that of
   * the first attribute of `near` (the neighbour it is placed by), else of a
   * child, else of this element or the nearest ancestor with attributes;
   * else the document's (`'`). So new lines look like their neighbours:
   * libvirt writes its own elements with ', and <metadata> contents (through
   * libxml2) with ".
   */
  quoteNear(near?: XElement): Quote {
    const candidates: XElement[] = near ? [near] : [];
    candidates.push(...this.elements());
    for (let e: XElement | null = this; e; e = e.parent) candidates.push(e);
    for (const e of candidates) {
      const a = e.attrs[0];
      if (a) return a.quote;
    }
    return this.owner.quote;
  }

  /** Checks a new element's namespace prefixes as if it were a child of this one, before it is inserted. */
  private adopt(el: XElement): XElement {
    el.parent = this;
    try {
      el.checkNamespaces(true);
    } catch (err) {
      el.parent = null;
      throw err;
    }
    return el;
  }

  /** insertElement after the last child element. */
  appendElement(spec: ElementSpec): XElement {
    return this.insertElement(spec);
  }

  /**
   * The idempotent edit: the first child matching `step` becomes `spec`
   * (replaceWith: untouched when equal); without one, `spec` is inserted at `where`.
   */
  upsertElement(step: string, spec: ElementSpec, where: InsertPosition = {}): XElement {
    const found = this.elements(step)[0];
    return found ? found.replaceWith(spec) : this.insertElement(spec, where);
  }

  /**
   * Removes this element and the whitespace that indents it, so its line
   * goes away. A parent left with only whitespace becomes `<parent/>`.
   */
  remove(): void {
    const p = this.parent;
    if (!p) throw new Error(`remove: <${this.name}> is the root element`);
    const i = p.kids.indexOf(this);
    const before = p.kids[i - 1];
    const after = p.kids[i + 1];
    // Its indentation goes only when nothing follows it on its line (else `<b/><c/>` would pull <c/> up).
    const alone = after === undefined || (after instanceof XText && after.isWhitespace);
    const start = alone && before instanceof XText && before.isWhitespace ? i - 1 : i;
    p.spliceKids(start, i - start + 1, []);
    this.parent = null;
    if (p.kids.every((k) => k instanceof XText && k.isWhitespace)) p.setKids([]);
  }

  /**
   * Replaces this element with a new one at the same indentation and returns
   * it; returns this element, untouched, when it already equals `spec`.
   */
  replaceWith(spec: ElementSpec): XElement {
    const p = this.parent;
    if (!p) throw new Error(`replaceWith: <${this.name}> is the root element`);
    if (equalsSpec(this, spec)) return this;
    const el = p.adopt(buildElement(this.owner, spec, this.lineIndent(), { ...this.owner.style(), quote: p.quoteNear(this) }));
    p.spliceKids(p.kids.indexOf(this), 1, [el]);
    this.parent = null;
    return el;
  }

  /**
   * Makes `specs` this element's only children (comments and text inside go
   * too), one per line at the indentation its children had (else one step
   * in); none makes it `<name/>`. Untouched when the children already equal
   * `specs` (names, attribute values, text; whitespace and comments aside).
   */
  replaceChildren(specs: readonly ElementSpec[]): void {
    const current = this.kids.filter((k) => !(k instanceof XComment) && !(k instanceof XProcessingInstruction) && !(k instanceof XText && k.isWhitespace));
    if (current.length === specs.length && current.every((k, i) => k instanceof XElement && equalsSpec(k, specs[i] as ElementSpec))) return;
    if (specs.length === 0) {
      this.setKids([]);
      return;
    }
    const first = this.kids.find((k): k is XElement => k instanceof XElement);
    const style = { ...this.owner.style(), quote: this.quoteNear(first) };
    const own = this.lineIndent();
    const inner = (first && first.lineIndent()) ?? (own === undefined ? undefined : own + style.indentUnit);
    const nodes: XNode[] = [];
    for (const s of specs) {
      if (inner !== undefined) nodes.push(new XText(style.newline + inner));
      nodes.push(this.adopt(buildElement(this.owner, s, inner, style)));
    }
    if (inner !== undefined) nodes.push(new XText(style.newline + (own ?? '')));
    this.setKids(nodes);
  }

  /** The element as it will be serialized. */
  toString(): string {
    const out: string[] = [];
    this.write(out);
    return out.join('');
  }

  /** @internal */
  write(out: string[]): void {
    out.push('<', this.name);
    for (const a of this.attrs) out.push(a.toString());
    out.push(this.tagEnd);
    if (this.empty) {
      out.push('/>');
      return;
    }
    out.push('>');
    for (const k of this.kids) {
      if (k instanceof XElement) k.write(out);
      else out.push(k.raw);
    }
    out.push(this.closeTag);
  }

  /**
   * The whitespace this element's line starts with, when the element starts
   * a line (the root counts as column 0); undefined when it sits inline.
   */
  lineIndent(): string | undefined {
    if (!this.parent) return '';
    const i = this.parent.kids.indexOf(this);
    return indentAfterBreak(this.parent.kids[i - 1]);
  }

  /** Throws if a prefix used here (and below, if deep) has no namespace declaration in scope. */
  private checkNamespaces(deep: boolean): void {
    const check = (e: XElement): void => {
      const used = [prefixOf(e.name), ...e.attrs.map((a) => prefixOf(a.name))];
      for (const p of used) {
        if (p === '' || p === 'xml' || p === 'xmlns') continue;
        if (e.lookupNamespace(p) === null) throw new Error(`namespace prefix ${JSON.stringify(p)} on <${e.name}> is not declared`);
      }
      if (deep) for (const k of e.kids) if (k instanceof XElement) check(k);
    };
    check(this);
  }

  private setKids(nodes: XNode[]): void {
    for (const k of this.kids) if (k.parent === this) k.parent = null;
    this.kids = [];
    this.spliceKids(0, 0, nodes);
    if (nodes.length === 0) {
      this.empty = true;
      this.closeTag = '';
    }
  }

  private spliceKids(start: number, deleteCount: number, nodes: XNode[]): void {
    for (const n of nodes) n.parent = this;
    this.kids.splice(start, deleteCount, ...nodes);
    if (this.empty && this.kids.length > 0) {
      this.empty = false;
      this.closeTag = `</${this.name}>`;
      if (/^[ \t\r\n]+$/.test(this.tagEnd) && !/[\r\n]/.test(this.tagEnd)) this.tagEnd = '';
    }
  }
}

function checkName(name: string, what: string): void {
  if (!QNAME.test(name)) throw new Error(`${JSON.stringify(name)} is not a valid XML ${what} name`);
}

/**
 * A new element from a spec: `<a x='1'/>`, `<a>text</a>`, or children one per
 * line at indent + one unit (all on one line when indent is undefined).
 */
function buildElement(owner: XmlDocument, spec: ElementSpec, indent: string | undefined, style: Style): XElement {
  checkName(spec.name, 'element');
  const pairs = specAttrs(spec);
  const seen = new Set<string>();
  const attrs = pairs.map(([n, v]) => {
    checkName(n, 'attribute');
    if (seen.has(n)) throw new Error(`<${spec.name}>: attribute ${n} given twice`);
    seen.add(n);
    return new XAttribute(n, encodeAttribute(v), style.quote);
  });
  const children = spec.children ?? [];
  if (spec.text !== undefined && children.length > 0) throw new Error(`<${spec.name}>: give text or children, not both`);
  const text = spec.text === undefined ? '' : encodeText(spec.text);
  const el = new XElement(owner, spec.name, attrs, '', children.length === 0 && text === '');
  if (text !== '') {
    el._appendParsed(new XText(text));
    el._close(`</${spec.name}>`);
  } else if (children.length > 0) {
    const inner = indent === undefined ? undefined : indent + style.indentUnit;
    for (const c of children) {
      if (inner !== undefined) el._appendParsed(new XText(style.newline + inner));
      el._appendParsed(buildElement(owner, c, inner, style));
    }
    if (indent !== undefined) el._appendParsed(new XText(style.newline + indent));
    el._close(`</${spec.name}>`);
  }
  return el;
}

/** Same name, same attribute values (any order), same text or same children (whitespace and comments aside). */
export function equalsSpec(el: XElement, spec: ElementSpec): boolean {
  if (el.name !== spec.name) return false;
  const pairs = specAttrs(spec);
  if (pairs.length !== el.attributes.length) return false;
  for (const [n, v] of pairs) if (el.getAttribute(n) !== v) return false;
  const kids = el.children.filter((k) => !(k instanceof XComment) && !(k instanceof XProcessingInstruction));
  const elementKids = kids.filter((k): k is XElement => k instanceof XElement);
  const children = spec.children ?? [];
  if (children.length > 0) {
    if (kids.some((k) => k instanceof XCData || (k instanceof XText && !k.isWhitespace))) return false;
    return elementKids.length === children.length && elementKids.every((k, i) => equalsSpec(k, children[i] as ElementSpec));
  }
  return elementKids.length === 0 && el.text() === (spec.text ?? '');
}

function descend(from: XElement[], steps: readonly PathStep[]): XElement[] {
  let set = from;
  for (const step of steps) set = set.flatMap((e) => e.elements().filter((k) => stepMatches(k, step)));
  return set;
}

function stepMatches(e: XElement, step: PathStep): boolean {
  if (step.ns === undefined) {
    if (step.name !== '*' && e.name !== step.name) return false;
  } else {
    if (e.namespaceURI !== step.ns) return false;
    if (step.name !== '*' && e.localName !== step.name) return false;
  }
  for (const p of step.predicates) {
    const v = e.getAttribute(p.attr);
    if (v === undefined || (p.value !== undefined && v !== p.value)) return false;
  }
  return true;
}

/**
 * A parsed XML document: the nodes before the root (XML declaration,
 * comments, whitespace), the root element, and the nodes after it.
 */
export class XmlDocument {
  /** @internal Filled by the parser. */
  readonly nodes: XNode[] = [];
  /** A byte-order mark before the first node, kept. */
  bom = false;
  /** Quote for attributes of new elements (and new attributes on elements that have none). */
  quote: Quote;
  private cachedStyle: Style | undefined;

  /** @internal Use parseXmlDocument. */
  constructor(quote: Quote = "'") {
    this.quote = quote;
  }

  get root(): XElement {
    const r = this.nodes.find((n): n is XElement => n instanceof XElement);
    if (!r) throw new Error('document has no root element');
    return r;
  }

  /** Elements matching a path whose first step is the root (`domain/devices/interface`). */
  findAll(path: string): XElement[] {
    const [first, ...rest] = parsePath(path);
    const root = this.root;
    return stepMatches(root, first as PathStep) ? descend([root], rest) : [];
  }

  find(path: string): XElement | undefined {
    return this.findAll(path)[0];
  }

  toString(): string {
    const out: string[] = [this.bom ? '\uFEFF' : ''];
    for (const n of this.nodes) {
      if (n instanceof XElement) n.write(out);
      else out.push(n.raw);
    }
    return out.join('');
  }

  /**
   * @internal How this document writes new lines: its line end (CRLF if it
   * has any) and its indentation step (a child's indentation minus its
   * parent's, two spaces when nothing tells).
   */
  style(): Style {
    if (!this.cachedStyle) {
      const text = this.toString();
      const newline = text.includes('\r\n') ? '\r\n' : '\n';
      let indentUnit: string | undefined;
      const queue: XElement[] = [this.root];
      while (queue.length > 0 && indentUnit === undefined) {
        const e = queue.shift() as XElement;
        const own = e.lineIndent();
        for (const c of e.elements()) {
          const ci = c.lineIndent();
          if (own !== undefined && ci !== undefined && ci.length > own.length && ci.startsWith(own)) {
            indentUnit = ci.slice(own.length);
            break;
          }
          queue.push(c);
        }
      }
      this.cachedStyle = { quote: this.quote, newline, indentUnit: indentUnit ?? '  ' };
    }
    return { ...this.cachedStyle, quote: this.quote };
  }
}

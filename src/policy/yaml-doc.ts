import { LineCounter, parseDocument, isAlias, isMap, isSeq, isScalar, type Node, type Document } from 'yaml';
import { describe } from '../model/show.js';
import { escapeUnsafe } from '../errors.js';

/** A problem found in a YAML file, with the place it points at. */
export interface Problem {
  file: string;
  line: number;
  column: number;
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message}`;
}

/**
 * A parsed YAML file whose nodes can be located, so every validation message
 * says file:line:column. Validators walk nodes, never plain JS values.
 */
export class YamlFile {
  readonly problems: Problem[] = [];
  private readonly lines = new LineCounter();
  readonly doc: Document.Parsed | undefined;

  constructor(readonly file: string, text: string) {
    this.doc = composeDocument(text, this.lines);
    if (!this.doc) {
      this.report(null, 'YAML: nested too deeply to read; a template needs only a few levels');
      return;
    }
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      const pos = this.lines.linePos(e.pos[0]);
      this.problems.push({ file, line: pos.line, column: pos.col, message: `YAML: ${escapeUnsafe(e.message.split('\n')[0] ?? '')}` });
    }
  }

  get root(): Node | null {
    return this.deref((this.doc?.contents ?? null) as Node | null);
  }

  /** The node an alias (*name) stands for; any other node as it is. */
  deref(node: Node | null | undefined): Node | null {
    if (!isAlias(node)) return node ?? null;
    return (this.doc && node.resolve(this.doc)) ?? null;
  }

  /** kindOf, seeing through aliases. */
  kindOf(node: Node | null | undefined): string {
    return kindOf(this.deref(node));
  }

  /** "file:line:column" of a node. */
  where(node: Node | null | undefined): string {
    const pos = this.lines.linePos(node?.range?.[0] ?? 0);
    return `${this.file}:${pos.line}:${pos.col}`;
  }

  report(node: Node | null | undefined, message: string): void {
    const offset = node?.range?.[0] ?? 0;
    const pos = this.lines.linePos(offset);
    this.problems.push({ file: this.file, line: pos.line, column: pos.col, message });
  }

  /** Mapping entries as [key, keyNode, valueNode]; reports and returns [] if `node` is not a mapping. */
  entries(aliasOrNode: Node | null, what: string): Array<[string, Node, Node | null]> {
    const node = this.deref(aliasOrNode);
    if (!isMap(node)) {
      this.report(aliasOrNode, `${what} must be a mapping (key: value), found ${kindOf(node)}`);
      return [];
    }
    return node.items.map((pair) => {
      const key = pair.key as Node;
      const keyValue = this.deref(key);
      const name = isScalar(keyValue) ? String(keyValue.value) : '?';
      return [name, key, (pair.value as Node | null) ?? null];
    });
  }

  items(aliasOrNode: Node | null, what: string): Node[] {
    const node = this.deref(aliasOrNode);
    if (!isSeq(node)) {
      this.report(aliasOrNode, `${what} must be a list, found ${kindOf(node)}`);
      return [];
    }
    return node.items as Node[];
  }

  /**
   * A node as a plain value, `depth` levels deep: a scalar's value; a list as
   * an array of its items' values (an empty array past `depth`); a mapping as
   * an empty object (messages only name its kind); no node at all as null.
   * Never undefined, so a key that is present is never taken as absent.
   */
  value(aliasOrNode: Node | null, depth = 1): unknown {
    const node = this.deref(aliasOrNode);
    if (isScalar(node)) return node.value ?? null;
    if (isSeq(node)) return depth > 0 ? node.items.map((n) => this.value(n as Node | null, depth - 1)) : [];
    if (isMap(node)) return {};
    return null;
  }

  scalar(aliasOrNode: Node | null): unknown {
    const node = this.deref(aliasOrNode);
    return isScalar(node) ? node.value : undefined;
  }
}

/**
 * Parses YAML, or returns undefined when it is nested so deeply that the
 * yaml library's recursive composer overflows the stack (about a thousand
 * levels: `[[[[…`); parsing never throws otherwise.
 */
function composeDocument(text: string, lines: LineCounter): Document.Parsed | undefined {
  try {
    return parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    if (err instanceof RangeError) return undefined;
    throw err;
  }
}

export function kindOf(node: Node | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return describe(node.value);
  return 'an unsupported value';
}

/** Plain-English suggestion for a misspelled key. */
export function didYouMean(found: string, allowed: readonly string[]): string {
  const close = allowed.find((a) => editDistance(a.toLowerCase(), found.toLowerCase()) <= 2);
  return close ? ` (did you mean "${close}"?)` : '';
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node, type Document } from 'yaml';

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
  readonly doc: Document.Parsed;

  constructor(readonly file: string, text: string) {
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true });
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      const pos = this.lines.linePos(e.pos[0]);
      this.problems.push({ file, line: pos.line, column: pos.col, message: `YAML: ${e.message.split('\n')[0]}` });
    }
  }

  get root(): Node | null {
    return this.doc.contents as Node | null;
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
  entries(node: Node | null, what: string): Array<[string, Node, Node | null]> {
    if (!isMap(node)) {
      this.report(node, `${what} must be a mapping (key: value), found ${kindOf(node)}`);
      return [];
    }
    return node.items.map((pair) => {
      const key = pair.key as Node;
      const name = isScalar(key) ? String(key.value) : '?';
      return [name, key, (pair.value as Node | null) ?? null];
    });
  }

  items(node: Node | null, what: string): Node[] {
    if (!isSeq(node)) {
      this.report(node, `${what} must be a list, found ${kindOf(node)}`);
      return [];
    }
    return node.items as Node[];
  }

  scalar(node: Node | null): unknown {
    return isScalar(node) ? node.value : undefined;
  }
}

export function kindOf(node: Node | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing';
    return `${typeof v} ${JSON.stringify(v)}`;
  }
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

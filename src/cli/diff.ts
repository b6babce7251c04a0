// A unified diff of two texts by lines, for `virtwire plan`. virtwire's edits
// are few and local: the common head and tail are cut off first and the
// longest common subsequence is computed on the middle only.

const CONTEXT = 3;
/** Above this many cells the middle is shown as removed-then-added (never slow, still correct). */
const MAX_CELLS = 4_000_000;

type Op = { kind: ' ' | '-' | '+'; line: string };

function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

function middleOps(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_CELLS) return [...a.map((line) => ({ kind: '-' as const, line })), ...b.map((line) => ({ kind: '+' as const, line }))];
  // lcs[i][j]: LCS length of a[i..] and b[j..], one flat array.
  const lcs = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = a[i] === b[j] ? (lcs[(i + 1) * (m + 1) + j + 1] as number) + 1
        : Math.max(lcs[(i + 1) * (m + 1) + j] as number, lcs[i * (m + 1) + j + 1] as number);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { ops.push({ kind: ' ', line: a[i] as string }); i++; j++; }
    else if (i < n && (j === m || (lcs[(i + 1) * (m + 1) + j] as number) >= (lcs[i * (m + 1) + j + 1] as number))) { ops.push({ kind: '-', line: a[i] as string }); i++; }
    else { ops.push({ kind: '+', line: b[j] as string }); j++; }
  }
  // Removed lines first within each changed run, as diff -u prints them.
  const out: Op[] = [];
  let run: Op[] = [];
  const flush = (): void => { out.push(...run.filter((o) => o.kind === '-'), ...run.filter((o) => o.kind === '+')); run = []; };
  for (const o of ops) { if (o.kind === ' ') { flush(); out.push(o); } else run.push(o); }
  flush();
  return out;
}

/** `diff -u`-style text ('' when equal), with `---`/`+++` labels. */
export function unifiedDiff(before: string, after: string, labelBefore: string, labelAfter: string): string {
  if (before === after) return '';
  const a = splitLines(before);
  const b = splitLines(after);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const ops: Op[] = [
    ...a.slice(0, head).map((line) => ({ kind: ' ' as const, line })),
    ...middleOps(a.slice(head, a.length - tail), b.slice(head, b.length - tail)),
    ...a.slice(a.length - tail).map((line) => ({ kind: ' ' as const, line })),
  ];
  if (!ops.some((o) => o.kind !== ' ')) {
    // Only the final newline differs.
    return `--- ${labelBefore}\n+++ ${labelAfter}\n\\ the texts differ only in their final newline\n`;
  }
  const lines = [`--- ${labelBefore}`, `+++ ${labelAfter}`];
  // Hunks: changed ops with CONTEXT unchanged lines around, merged when close.
  const changed = ops.map((o, k) => (o.kind === ' ' ? -1 : k)).filter((k) => k >= 0);
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, (changed[k] as number) - CONTEXT);
    let end = (changed[k] as number) + CONTEXT;
    while (k + 1 < changed.length && (changed[k + 1] as number) - CONTEXT <= end + 1) { k++; end = (changed[k] as number) + CONTEXT; }
    end = Math.min(ops.length - 1, end);
    let aStart = 0;
    let bStart = 0;
    for (const o of ops.slice(0, start)) { if (o.kind !== '+') aStart++; if (o.kind !== '-') bStart++; }
    const hunk = ops.slice(start, end + 1);
    const aLen = hunk.filter((o) => o.kind !== '+').length;
    const bLen = hunk.filter((o) => o.kind !== '-').length;
    lines.push(`@@ -${aLen ? aStart + 1 : aStart},${aLen} +${bLen ? bStart + 1 : bStart},${bLen} @@`);
    for (const o of hunk) lines.push(`${o.kind}${o.line}`);
    k++;
  }
  return `${lines.join('\n')}\n`;
}

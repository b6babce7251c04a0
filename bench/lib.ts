// What the bench/ scripts share: medians and their intervals, a plain table.

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * A distribution-free ~95% confidence interval of the median: the order
 * statistics n/2 ∓ 1.96·√n/2 (normal approximation of the binomial). It
 * says whether a ratio near the goal is a verdict or noise.
 */
export function medianInterval(xs: readonly number[]): [number, number] {
  const s = [...xs].sort((a, b) => a - b);
  const half = 1.96 * Math.sqrt(s.length) / 2;
  const lo = Math.max(0, Math.floor(s.length / 2 - half));
  const hi = Math.min(s.length - 1, Math.ceil(s.length / 2 + half) - 1);
  return [s[lo]!, s[hi]!];
}

/** Prints rows under a header, the first column left-aligned and the others right-aligned. */
export function printTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

/**
 * Where a goal stands against a measured ratio's interval (lower is better):
 * met when even the interval's top is within it, not met when even its
 * bottom is over, else undecided — noise could turn it, and more rounds
 * narrow the interval.
 */
export function goalVerdict([lo, hi]: readonly [number, number], goal: number): 'met' | 'not met' | 'within noise' {
  if (hi <= goal) return 'met';
  if (lo > goal) return 'not met';
  return 'within noise';
}

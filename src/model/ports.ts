import { describe, quote } from './show.js';

/** An inclusive port range; a single port has lo === hi. */
export interface PortRange {
  lo: number;
  hi: number;
}

export const MAX_FORWARD_RANGE = 1024;

/** Parses `80`, `"80"` or `"8000-8010"`; returns an error text instead of throwing. */
export function parsePortRange(value: unknown): PortRange | string {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 1 && value <= 65535
      ? { lo: value, hi: value }
      : `a port is 1-65535, found ${value}`;
  }
  if (typeof value !== 'string') return `expected a port (80) or a range ("8000-8010"), found ${describe(value)}`;
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(value);
  if (!m) return `expected a port (80) or a range ("8000-8010"), found ${quote(value)}`;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi > 65535) return `ports are 1-65535, found ${quote(value)}`;
  if (hi < lo) return `a range goes low-high, found ${quote(value)}`;
  return { lo, hi };
}

export function rangeWidth(r: PortRange): number {
  return r.hi - r.lo + 1;
}

export function formatRange(r: PortRange): string {
  return r.lo === r.hi ? String(r.lo) : `${r.lo}-${r.hi}`;
}

export function rangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.lo <= b.hi && b.lo <= a.hi;
}

export function rangeInside(inner: PortRange, outers: readonly PortRange[]): boolean {
  // Every port of inner must be covered; ranges may be adjacent, so walk them.
  let next = inner.lo;
  const sorted = [...outers].sort((x, y) => x.lo - y.lo);
  for (const o of sorted) {
    if (o.lo > next) break;
    if (o.hi >= next) next = o.hi + 1;
    if (next > inner.hi) return true;
  }
  return next > inner.hi;
}


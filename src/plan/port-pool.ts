// Which host ports a VM's automatic forwards and port blocks get from the
// pool (forwards.autoPorts). Pure: the pool, what the VM has, what others
// hold in; one range per need out.
import { formatRange, rangeInside, rangesOverlap, rangeWidth, type PortRange } from '../model/ports.js';
import { UserError } from '../errors.js';

/** A run of consecutive host ports one NIC needs under one key. */
export interface PortNeed {
  /** Unique within the VM (e.g. `MAC key`). */
  id: string;
  width: number;
  /** For the exhaustion message: `VM "web-1" NIC 52:54:00:… (/etc/virtwire/templates/web.yaml:4:5)`. */
  what: string;
}

export interface PoolInput {
  pool: readonly PortRange[];
  /** The pool in messages: `forwards.autoPorts 20000-20009 of /etc/virtwire/virtwire.yaml`. */
  poolName: string;
  needs: readonly PortNeed[];
  /** What the VM holds now, by need id: kept while it still fits. */
  have: ReadonlyMap<string, PortRange>;
  /** Ports nobody else may get: other VMs' allocations, templates' fixed host ports, forwards applied. */
  taken: readonly PortRange[];
}

/**
 * Each need's range: the one it holds when that is still inside the pool,
 * as wide as asked and clear of `taken`; else the lowest free range of its
 * width inside the pool. Throws a one-line UserError naming the pool when
 * none is left.
 */
export function allocatePorts(input: PoolInput): Map<string, PortRange> {
  const out = new Map<string, PortRange>();
  const busy: PortRange[] = [...input.taken];
  const fits = (r: PortRange): boolean => rangeInside(r, input.pool) && !busy.some((b) => rangesOverlap(b, r));
  // Kept first, so a VM never loses its range to its own new need.
  for (const n of input.needs) {
    const r = input.have.get(n.id);
    if (r && rangeWidth(r) === n.width && fits(r)) { out.set(n.id, r); busy.push(r); }
  }
  for (const n of input.needs) {
    if (out.has(n.id)) continue;
    const r = lowestFree(input.pool, busy, n.width);
    if (!r) {
      throw new UserError(`${input.poolName} is exhausted: ${n.what} needs ${n.width} consecutive host port(s) and no free run of that width is left; widen it, or release the ports of VMs that are gone (virtwire gc)`);
    }
    out.set(n.id, r);
    busy.push(r);
  }
  return out;
}

/** The lowest range of `width` ports inside one pool range that overlaps nothing busy. */
function lowestFree(pool: readonly PortRange[], busy: readonly PortRange[], width: number): PortRange | undefined {
  const sortedBusy = [...busy].sort((a, b) => a.lo - b.lo);
  for (const p of [...pool].sort((a, b) => a.lo - b.lo)) {
    let lo = p.lo;
    for (const b of sortedBusy) {
      if (lo + width - 1 > p.hi) break;
      if (b.hi < lo) continue;
      if (b.lo > lo + width - 1) break;
      lo = b.hi + 1; // overlaps: start after it
    }
    if (lo + width - 1 <= p.hi) return { lo, hi: lo + width - 1 };
  }
  return undefined;
}

export function formatPool(pool: readonly PortRange[]): string {
  return pool.map(formatRange).join(', ');
}

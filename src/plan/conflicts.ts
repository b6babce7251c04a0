import type { ResolvedForward } from '../model/forward.js';
import type { HostSocket } from '../model/host.js';
import { formatRange, rangesOverlap } from '../model/ports.js';
import { UserError, quoted } from '../errors.js';
import { ipv4Mapped, isLoopback, isUnspecified } from '../model/addr.js';

export interface OtherVm {
  uuid: string;
  name: string;
  forwards: ResolvedForward[];
}

/** Two forwards compete when the same packet could match both: family, proto, host port and listen address overlap. */
export function forwardsCollide(a: ResolvedForward, b: ResolvedForward): boolean {
  return a.family === b.family && a.proto === b.proto && rangesOverlap(a.host, b.host)
    && (a.listen === undefined || b.listen === undefined || a.listen === b.listen);
}

export function describeListen(f: ResolvedForward): string {
  return f.listen ?? (f.family === 4 ? 'every host IPv4 address' : 'every host IPv6 address');
}

/**
 * Whether two forwards collide: any two of `a`, or, given `b`, one of `a`
 * with one of `b`. Sorted by family, protocol and first port, a forward can
 * only collide with those before it whose range still reaches its first port.
 */
function anyCollision(a: readonly ResolvedForward[], b?: readonly ResolvedForward[]): boolean {
  const items = [...a.map((f) => ({ f, side: 0 })), ...(b ?? []).map((f) => ({ f, side: 1 }))];
  items.sort((x, y) => x.f.family - y.f.family || (x.f.proto < y.f.proto ? -1 : x.f.proto > y.f.proto ? 1 : 0) || x.f.host.lo - y.f.host.lo);
  let reaching: typeof items = [];
  for (const it of items) {
    reaching = reaching.filter(({ f }) => f.family === it.f.family && f.proto === it.f.proto && f.host.hi >= it.f.host.lo);
    if (reaching.some((g) => (b === undefined || g.side !== it.side) && forwardsCollide(g.f, it.f))) return true;
    reaching.push(it);
  }
  return false;
}

/**
 * Refuses a VM's forwards that another VM already holds, that collide among
 * themselves, or that hit a port the host itself listens on.
 */
export function checkConflicts(vmName: string, forwards: ResolvedForward[], others: OtherVm[], sockets: readonly HostSocket[]): void {
  const vm = quoted(vmName);
  // The pairwise loops below name the first collision exactly; a sort and sweep tells first whether
  // there is any (at 200 forwards on both families, 80,000 pairs against ~3,500 comparisons).
  const amongThemselves = anyCollision(forwards);
  const withOthers = others.length > 0 && anyCollision(forwards, others.flatMap((o) => o.forwards));
  for (let i = 0; i < forwards.length; i++) {
    const f = forwards[i] as ResolvedForward;
    for (let j = 0; amongThemselves && j < i; j++) {
      const g = forwards[j] as ResolvedForward;
      if (forwardsCollide(f, g)) {
        throw new UserError(`VM ${vm}: forward ${f.proto} ${formatRange(f.host)} (${f.origin}) collides with forward ${g.proto} ${formatRange(g.host)} (${g.origin}) of the same VM; remove one`);
      }
    }
    for (const o of withOthers ? others : []) {
      const g = o.forwards.find((x) => forwardsCollide(f, x));
      if (g) {
        throw new UserError(`VM ${vm}: ${f.proto} port ${formatRange(f.host)} on ${describeListen(f)} is already forwarded to running VM ${quoted(o.name)} (${g.origin}); use another host port or stop ${quoted(o.name)}`);
      }
    }
    refuseHostSocket(vm, f, sockets);
  }
}

/**
 * Refuses a VM's forwards that hit a port the host itself listens on: the
 * last of checkConflicts's checks, alone (a served start makes it after its
 * early answer: engine/lifecycle.ts).
 */
export function checkHostSockets(vmName: string, forwards: readonly ResolvedForward[], sockets: readonly HostSocket[]): void {
  const vm = quoted(vmName);
  for (const f of forwards) refuseHostSocket(vm, f, sockets);
}

function refuseHostSocket(vm: string, f: ResolvedForward, sockets: readonly HostSocket[]): void {
  if (f.allowHostConflict) return;
  const s = sockets.find((x) => x.proto === f.proto && x.port >= f.host.lo && x.port <= f.host.hi && socketReceives(x, f));
  if (s) {
    const where = s.family === 6 ? `[${s.address}]:${s.port}${s.address === '::' ? ', which also receives IPv4' : ''}` : `${s.address}:${s.port}`;
    throw new UserError(`VM ${vm}: ${f.proto} port ${s.port} on ${describeListen(f)} is in use by the host itself (${where}); stop that service, use another host port, or set allowHostConflict: true on the forward (${f.origin})`);
  }
}

/**
 * Whether a host socket would receive packets the forward would take. A
 * socket on "::" also receives IPv4 unless it is IPV6_V6ONLY, which
 * /proc/net does not show: it is taken to cover IPv4 too. A socket on
 * ::ffff:a.b.c.d is an IPv4 socket on a.b.c.d. Loopback sockets never
 * compete: the DNAT never takes loopback traffic.
 */
function socketReceives(s: HostSocket, f: ResolvedForward): boolean {
  const mapped = s.family === 6 ? ipv4Mapped(s.address) : undefined;
  const family = mapped ? 4 : s.family;
  const address = mapped ?? s.address;
  if (isLoopback(address)) return false;
  const dualStack = s.family === 6 && !mapped && isUnspecified(address);
  if (family !== f.family && !(dualStack && f.family === 4)) return false;
  return f.listen === undefined || isUnspecified(address) || address === f.listen;
}

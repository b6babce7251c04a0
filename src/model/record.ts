// What virtwire decided for a domain, per NIC, as `virtwire apply` records it
// in the domain's <metadata> (readable in `virsh dumpxml` and virt-manager's
// XML tab). A record, not an authority: the VM owner can edit <metadata>, so
// the hooks re-resolve from the templates and only compare (staleness).
import type { ResolvedForward } from './forward.js';
import { formatRange } from './ports.js';

/** One forward as recorded: flat text attributes, so it reads well in XML. */
export interface RecordedForward {
  proto: string;
  /** Host ports, "8080" or "8000-8010". */
  host: string;
  /** The guest address the forward goes to. */
  to: string;
  /** Guest ports. */
  guest: string;
  listen?: string;
  /** Source allow-list, CIDRs separated by spaces; absent = any source. */
  from?: string;
}

export interface RecordedNic {
  mac: string;
  template: string;
  binding: string;
  bindingVersion: number;
  network?: string;
  /** The network the NIC was on before its binding moved it (see DomainNic.from). */
  from?: string;
  /** What the binding attached it to ("bridge br0, VLAN 100"); absent for nat. */
  attached?: string;
  forwards: RecordedForward[];
}

export function recordedForward(f: ResolvedForward): RecordedForward {
  return {
    proto: f.proto,
    host: formatRange(f.host),
    to: f.guestAddr,
    guest: formatRange(f.guest),
    ...(f.listen ? { listen: f.listen } : {}),
    ...(f.from.length ? { from: f.from.join(' ') } : {}),
  };
}

/** One line per forward, for comparing and for messages: "tcp *:8080 -> 192.168.122.2:80". */
export function forwardText(f: RecordedForward): string {
  const v6 = f.to.includes(':');
  const at = (addr: string, port: string): string => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
  const listen = f.listen ? at(f.listen, f.host) : `${v6 ? '[*]' : '*'}:${f.host}`;
  return `${f.proto} ${listen} -> ${at(f.to, f.guest)}${f.from ? ` from ${f.from.split(' ').join(',')}` : ''}`;
}

function nicKey(n: RecordedNic): string {
  return `template ${n.template}, binding ${n.binding} v${n.bindingVersion}${n.network === undefined ? '' : `, network ${n.network}`}${n.attached === undefined ? '' : `, ${n.attached}`}`;
}

/**
 * How `recorded` differs from `now`, one phrase per NIC that changed (empty:
 * the same). Order of NICs and forwards does not matter.
 */
export function recordDifferences(recorded: readonly RecordedNic[], now: readonly RecordedNic[]): string[] {
  const out: string[] = [];
  const macs = [...new Set([...recorded, ...now].map((n) => n.mac))].sort();
  for (const mac of macs) {
    const was = recorded.find((n) => n.mac === mac);
    const is = now.find((n) => n.mac === mac);
    if (!was) { out.push(`NIC ${mac} is now wired (${nicKey(is as RecordedNic)})`); continue; }
    if (!is) { out.push(`NIC ${mac} is no longer wired (was ${nicKey(was)})`); continue; }
    if (nicKey(was) !== nicKey(is)) out.push(`NIC ${mac}: ${nicKey(is)} (was ${nicKey(was)})`);
    const before = new Set(was.forwards.map(forwardText));
    const after = new Set(is.forwards.map(forwardText));
    const added = [...after].filter((f) => !before.has(f)).sort();
    const removed = [...before].filter((f) => !after.has(f)).sort();
    if (added.length || removed.length) {
      out.push(`NIC ${mac}: ${[...added.map((f) => `+${f}`), ...removed.map((f) => `-${f}`)].join(', ')}`);
    }
  }
  return out;
}

// What the watcher takes from `virsh event` / `virsh net-event` output:
// triggers, never data. A line tells which kind of object changed (from the
// stream it came on), virsh's event type, and for a lifecycle event its
// verb ('Defined', 'Stopped'…) — a hint. It never yields a name: names may
// hold quotes, `': `, U+2028 and anything else but a newline, so the
// consumer re-reads the state (by UUID) instead of trusting the text.
//
// Formats (LC_ALL=C, identical on virsh 9.0 and 11.3; recorded in
// test/data/events/):
//   event 'lifecycle' for domain 'NAME': Defined Added
//   event 'reboot' for domain 'NAME'
//   event 'lifecycle' for network NAME: Started
// and, when virsh ends, `events received: N` and an empty line.

export type EventKind = 'domain' | 'network';

/** Verbs of libvirt's lifecycle events as virsh prints them (virshDomainEventToString, virshNetworkEventToString). */
export const LIFECYCLE_VERBS = ['Defined', 'Undefined', 'Started', 'Suspended', 'Resumed', 'Stopped', 'Shutdown', 'PMSuspended', 'Crashed'] as const;
export type Lifecycle = (typeof LIFECYCLE_VERBS)[number];

export interface EventTrigger {
  kind: EventKind;
  /** virsh's event type ('lifecycle', 'reboot', 'device-added', 'metadata-change'…); 'unknown' for a line not in virsh's format. */
  event: string;
  /** The verb of a lifecycle event. A hint only: re-read the state before acting on it. */
  lifecycle?: Lifecycle;
}

const HEAD = { domain: /^event '([a-z][a-z0-9-]*)' for domain '/, network: /^event '([a-z][a-z0-9-]*)' for network / } as const;
/** What separates the name from the detail: the name is quoted for a domain, bare for a network. */
const DETAIL_SEPARATOR = { domain: "': ", network: ': ' } as const;
const VERBS: ReadonlySet<string> = new Set(LIFECYCLE_VERBS);

/**
 * The trigger one complete line (without its newline) stands for, or
 * undefined for a line that reports no event (empty, virsh's closing count).
 */
export function parseEventLine(kind: EventKind, line: string): EventTrigger | undefined {
  if (line.trim() === '' || /^events received: \d+$/.test(line)) return undefined;
  const head = HEAD[kind].exec(line);
  if (!head) return { kind, event: 'unknown' };
  const event = head[1] as string;
  if (event !== 'lifecycle') return { kind, event };
  // The detail ("Defined Added", "Shutdown Finished after host request")
  // never holds the separator, so its last occurrence ends the name — even
  // a name that spells out a whole fake event.
  const detail = line.slice(line.lastIndexOf(DETAIL_SEPARATOR[kind]) + DETAIL_SEPARATOR[kind].length);
  const verb = /^[A-Za-z]+/.exec(detail)?.[0];
  return verb !== undefined && VERBS.has(verb) ? { kind, event, lifecycle: verb as Lifecycle } : { kind, event };
}

/** Longest line kept while waiting for its newline; longer ones are cut (and still count as one trigger). */
export const MAX_LINE_BYTES = 64 * 1024;

/**
 * Splits a byte stream into lines: chunks may end mid-line or mid-character.
 * Bytes that are not UTF-8 become U+FFFD (only the fixed parts are read).
 */
export class LineSplitter {
  private rest: Buffer = Buffer.alloc(0);
  private readonly decoder = new TextDecoder('utf-8');

  /** The complete lines in rest + chunk, in order; a line over MAX_LINE_BYTES is returned cut at that length. */
  push(chunk: Buffer): string[] {
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const lines: string[] = [];
    for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
      lines.push(this.decoder.decode(buf.subarray(0, nl)));
      buf = buf.subarray(nl + 1);
    }
    if (buf.length > MAX_LINE_BYTES) {
      lines.push(this.decoder.decode(buf.subarray(0, MAX_LINE_BYTES)));
      buf = Buffer.alloc(0);
    }
    this.rest = Buffer.from(buf);
    return lines;
  }
}

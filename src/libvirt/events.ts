// The watcher's event source: two long-lived virsh processes,
//
//   virsh -c URI event --all --loop                     every domain event
//   virsh -c URI net-event --event lifecycle --loop     network lifecycle
//
// (virsh 9.0 and 11.3: `event` has --all; `net-event` has no --all, and
// --all / --event exclude each other), read line by line into triggers
// (event-lines.ts: which kind changed, never a name) and coalesced into one
// `sync` call per burst: `debounceMs` after the last event, at most
// `maxWaitMs` after the first.
//
// Connection. virsh has no "subscribed" line; a pair of processes that is
// still running `settleMs` after the spawn counts as connected (virsh exits
// at once when it cannot connect). Then `connected` (the first time) or
// `reconnected` (every later time) fires: the consumer runs a full
// reconcile, which catches whatever happened while no stream listened.
// When libvirtd (or virtqemud / virtnetworkd) goes away, virsh prints
// "Disconnected from URI due to end of file" and exits 1 (both versions,
// recorded): either process ending, or printing such a notice, ends the
// pair (the other one is killed), `disconnected` fires once per outage,
// and a new pair is spawned after a backoff: `backoffInitialMs` doubling to
// `backoffMaxMs`, back to the start once a pair has run `stableMs`.
//
// Not checked here: Debian 12 and 13 ship only the monolithic libvirtd, so
// how the streams see modular daemons restart is not observed: a restart of
// virtqemud should end both (both connect to it, as to libvirtd); whether
// one of virtnetworkd alone ends `net-event` is unknown.
//
// Processes are killed by process group (each virsh, or the wrapper that
// runs it, leads its own group: see spawnVirsh) and reaped; stop() resolves
// once every one has exited.
import type { Readable } from 'node:stream';
import { isConnectionNotice, virshMessage } from './errors.js';
import { LineSplitter, parseEventLine, type EventKind, type EventTrigger } from './event-lines.js';
import { exitText, killGroup, spawnVirsh } from './virsh.js';

export type { EventKind, EventTrigger, Lifecycle } from './event-lines.js';

/** One running event stream, as the source needs it (a child process, or a test's fake). */
export interface EventProcess {
  readonly pid: number | undefined;
  onStdout(cb: (chunk: Buffer) => void): void;
  onStderr(cb: (chunk: Buffer) => void): void;
  /** Called once, when the process has ended (or could not start): why, e.g. "exit status 1". */
  onExit(cb: (why: string) => void): void;
  /** Ends it (SIGKILL to its process group); onExit follows. */
  kill(): void;
}

/** Starts `command… args…`. */
export type EventSpawner = (command: readonly string[], args: readonly string[]) => EventProcess;

export interface EventHandlers {
  /** One call per burst of events: what the burst held, deduplicated, in arrival order. */
  sync(triggers: readonly EventTrigger[]): void;
  /** The first pair of streams is up: run the start-up reconcile. */
  connected?(): void;
  /** Both streams are up again after a loss: run a full reconcile. */
  reconnected?(): void;
  /** The connection is lost (or the first one failed); once per outage. */
  disconnected?(why: string): void;
  /** A new pair of streams is spawned in retryInMs (after every loss or failed attempt). */
  retrying?(why: string, retryInMs: number): void;
  /** A handler threw: the source carries on. */
  handlerError?(err: unknown): void;
}

export interface EventSourceOptions {
  /** libvirt connection URI (default qemu:///system). */
  uri?: string;
  /** The argv that runs virsh, before its own options (default ['virsh']; see VirshOptions.command). */
  command?: readonly string[];
  spawn?: EventSpawner;
  debounceMs?: number;
  maxWaitMs?: number;
  settleMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  stableMs?: number;
}

export const EVENT_DEFAULTS = {
  debounceMs: 200,
  maxWaitMs: 2_000,
  settleMs: 1_000,
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  stableMs: 30_000,
} as const;

/** virsh's arguments (after -c URI) for each stream. */
export const STREAM_ARGS: Readonly<Record<EventKind, readonly string[]>> = {
  domain: ['event', '--all', '--loop'],
  network: ['net-event', '--event', 'lifecycle', '--loop'],
};

/** The real spawner: virsh (or options.command) with virsh's fixed environment, in its own process group. */
export const spawnEventProcess: EventSpawner = (command, args) => {
  const child = spawnVirsh(command, args, 'ignore');
  const stream = (s: Readable | null) => (cb: (chunk: Buffer) => void) => void s?.on('data', cb);
  let exitCb: ((why: string) => void) | undefined;
  let ended: string | undefined;
  const end = (why: string) => {
    if (ended !== undefined) return;
    ended = why;
    exitCb?.(why);
  };
  child.on('error', (e: NodeJS.ErrnoException) => end(e.code === 'ENOENT' ? `${command[0]}: not installed` : e.message));
  child.on('close', (code, signal) => end(exitText(code, signal)));
  return {
    pid: child.pid,
    onStdout: stream(child.stdout),
    onStderr: stream(child.stderr),
    onExit: (cb) => {
      exitCb = cb;
      if (ended !== undefined) cb(ended);
    },
    kill: () => killGroup(child),
  };
};

interface Stream {
  proc: EventProcess;
  /** virsh's `error:` lines so far (the first few). */
  errors: string[];
}

/** One pair of streams, from spawn to loss. */
interface Connection {
  streams: Stream[];
  settled: boolean;
  lost: boolean;
  timers: Array<ReturnType<typeof setTimeout>>;
}

export class LibvirtEvents {
  private readonly o: Required<Omit<EventSourceOptions, 'uri' | 'command' | 'spawn'>>;
  private readonly uri: string;
  private readonly command: readonly string[];
  private readonly spawn: EventSpawner;
  private conn: Connection | undefined;
  /** Exit of every process spawned and not yet ended. */
  private readonly running = new Set<Promise<void>>();
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Pairs in a row that did not last stableMs: the exponent of the next backoff. */
  private failures = 0;
  private everConnected = false;
  private outageReported = false;
  private stopped = false;
  private started = false;
  private pending: EventTrigger[] = [];
  private burstStart = 0;
  private burstTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly handlers: EventHandlers,
    opts: EventSourceOptions = {},
  ) {
    this.uri = opts.uri ?? 'qemu:///system';
    this.command = opts.command ?? ['virsh'];
    if (this.command.length === 0 || !this.command[0]) throw new Error('LibvirtEvents: options.command must name a program');
    this.spawn = opts.spawn ?? spawnEventProcess;
    this.o = {
      debounceMs: opts.debounceMs ?? EVENT_DEFAULTS.debounceMs,
      maxWaitMs: opts.maxWaitMs ?? EVENT_DEFAULTS.maxWaitMs,
      settleMs: opts.settleMs ?? EVENT_DEFAULTS.settleMs,
      backoffInitialMs: opts.backoffInitialMs ?? EVENT_DEFAULTS.backoffInitialMs,
      backoffMaxMs: opts.backoffMaxMs ?? EVENT_DEFAULTS.backoffMaxMs,
      stableMs: opts.stableMs ?? EVENT_DEFAULTS.stableMs,
    };
  }

  /** 'up' once a pair of streams has settled, 'down' between a loss and the next settled pair. */
  get state(): 'idle' | 'connecting' | 'up' | 'down' | 'stopped' {
    if (this.stopped) return 'stopped';
    if (!this.started) return 'idle';
    if (this.conn?.settled && !this.conn.lost) return 'up';
    return this.everConnected ? 'down' : 'connecting';
  }

  /** pids of the running stream processes. */
  get pids(): number[] {
    return (this.conn?.lost ? [] : this.conn?.streams ?? []).flatMap((s) => (s.proc.pid === undefined ? [] : [s.proc.pid]));
  }

  start(): void {
    if (this.started) throw new Error('LibvirtEvents: already started');
    this.started = true;
    this.connect();
  }

  /** Kills the streams, drops what is pending; resolves once every process has exited. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.burstTimer);
    this.pending = [];
    if (this.conn) this.drop(this.conn);
    while (this.running.size) await Promise.all([...this.running]);
  }

  private connect(): void {
    const conn: Connection = { streams: [], settled: false, lost: false, timers: [] };
    this.conn = conn;
    for (const kind of ['domain', 'network'] as const) {
      const proc = this.spawn(this.command, ['-c', this.uri, ...STREAM_ARGS[kind]]);
      const stream: Stream = { proc, errors: [] };
      conn.streams.push(stream);
      const out = new LineSplitter();
      proc.onStdout((chunk) => {
        for (const line of out.push(chunk)) {
          const t = parseEventLine(kind, line);
          if (t) this.trigger(t);
        }
      });
      const err = new LineSplitter();
      proc.onStderr((chunk) => {
        for (const line of err.push(chunk)) {
          if (!line.startsWith('error: ')) continue;
          if (stream.errors.length < 3) stream.errors.push(virshMessage(line));
          if (isConnectionNotice(line)) this.lose(conn, `virsh ${STREAM_ARGS[kind][0]}: ${virshMessage(line)}`);
        }
      });
      const exited = new Promise<void>((resolve) =>
        proc.onExit((why) => {
          resolve();
          const said = stream.errors.length ? `: ${stream.errors.join(' | ')}` : '';
          this.lose(conn, `virsh ${STREAM_ARGS[kind][0]} ended (${why})${said}`);
        }),
      );
      this.running.add(exited);
      void exited.then(() => this.running.delete(exited));
    }
    conn.timers.push(setTimeout(() => this.settle(conn), this.o.settleMs));
  }

  private settle(conn: Connection): void {
    if (conn.lost || this.stopped) return;
    conn.settled = true;
    this.outageReported = false;
    conn.timers.push(setTimeout(() => (this.failures = 0), this.o.stableMs));
    const first = !this.everConnected;
    this.everConnected = true;
    this.call(() => (first ? this.handlers.connected?.() : this.handlers.reconnected?.()));
  }

  /** The pair is gone (a process ended or virsh said the connection dropped): kill the rest, retry after the backoff. */
  private lose(conn: Connection, why: string): void {
    if (conn.lost || this.stopped || conn !== this.conn) return;
    this.drop(conn);
    if (!this.outageReported) {
      this.outageReported = true;
      this.call(() => this.handlers.disconnected?.(why));
    }
    const delay = Math.min(this.o.backoffInitialMs * 2 ** this.failures, this.o.backoffMaxMs);
    this.failures = Math.min(this.failures + 1, 30);
    this.call(() => this.handlers.retrying?.(why, delay));
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
  }

  private drop(conn: Connection): void {
    conn.lost = true;
    for (const t of conn.timers) clearTimeout(t);
    for (const s of conn.streams) s.proc.kill();
  }

  private trigger(t: EventTrigger): void {
    if (this.stopped) return;
    if (!this.pending.some((p) => p.kind === t.kind && p.event === t.event && p.lifecycle === t.lifecycle)) this.pending.push(t);
    const now = Date.now();
    if (this.burstTimer === undefined) this.burstStart = now;
    clearTimeout(this.burstTimer);
    const wait = Math.max(0, Math.min(this.o.debounceMs, this.burstStart + this.o.maxWaitMs - now));
    this.burstTimer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.burstTimer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length && !this.stopped) this.call(() => this.handlers.sync(batch));
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      try {
        this.handlers.handlerError?.(err);
      } catch {
        /* nothing left to tell */
      }
    }
  }
}

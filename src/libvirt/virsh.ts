// Runs virsh: one-shot (a fresh `virsh CMD ARGS…` per call, argv only) or
// batched (one long-lived `virsh` reading commands on stdin, one connection
// for many calls). virtwire's only way to libvirt; the CLI and the watcher
// use it, never a hook (libvirt waits for its hooks).
//
// How a batch call is framed. virsh reads stdin with GNU readline when stdin
// is not a tty too: readline echoes the prompt and the line to stdout (for a
// long line, a horizontally scrolled window of it), and runs its key bindings
// on the input (a TAB completes file names, C-a moves the cursor). virsh
// tells a command's success only by an `error: …` line on stderr. So each call
// is sent as two lines (N = the call's number, TAG = a random nonce per virsh
// process, unknown to whoever wrote the data we read):
//
//   echo --err TAG-BN; echo --split 'TAG,BN'; CMD ARGS…; echo --split 'TAG,EN'; echo --err TAG-EN
//   echo --err TAG-GN
//
// - stdout: the call's output is what lies between "TAG\nBN\n" and
//   "TAG\nEN\n" (`--split` prints each comma-separated part on its own line).
//   readline's echo of the line never holds those, since the line itself
//   holds no newline and spells them with a comma.
// - stderr: the command's own messages lie between `error: TAG-BN` and
//   `error: TAG-EN`; anything outside (the asynchronous "Disconnected from …"
//   of virsh's event thread) is a notice, not the command's error.
// - virsh drops a whole line it cannot parse (an unknown option) and says why
//   on stderr; the second line's `error: TAG-GN` then still ends the call.
// - Commands on one line run one after another even when one fails (checked
//   on virsh 9.0 and 11.3).
// - A call failed when its stderr holds an `error: ` line that is not a
//   connection notice: virsh has no per-command exit status in this mode (a
//   command that fails without a message, like `event --timeout` running
//   out, passes; one-shot sees its exit status).
// - virsh dead mid-call (killed, crashed): a read-only call is repeated once
//   in a fresh virsh, any other fails as 'connection' marked mayHaveApplied.
//   Past its time bound virsh is killed ('timeout'). The next call starts a
//   new virsh. After a libvirtd restart virsh reconnects by itself.
//
// Arguments are single-quoted in virsh's own syntax (vshCommandStringGetArg:
// '…' is literal, \' outside quotes is a quote). A line cannot carry control
// characters (readline edits with them, a newline ends the line): such a call
// runs one-shot, where argv carries anything but a NUL. A NUL, or a lone
// UTF-16 surrogate (no UTF-8 for it), is refused in both modes. A probe at
// the start of every batch process (`echo` of quotes, backslash, `#`, `;`,
// non-ASCII and bidi characters) must come back byte for byte, or this
// client falls back to one-shot for good.
//
// Environment: LC_ALL=C (libvirt's untranslated messages, which errors.ts
// maps), a fixed PATH, TERM=dumb and INPUTRC=/dev/null (readline's defaults,
// whatever /etc/inputrc says), and XDG_CACHE_HOME=/dev/null with
// VIRSH_HISTSIZE=0: interactive virsh otherwise writes every command it read
// — XML included — to ~/.cache/libvirt/virsh/history when it exits (checked:
// with /dev/null it cannot create the directory, says so on stderr at exit,
// and writes nothing).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { classify, hasErrorLine, isConnectionNotice, LibvirtError, virshMessage } from './errors.js';

export interface VirshOptions {
  /** libvirt connection URI (default qemu:///system). */
  uri?: string;
  /**
   * The argv that runs virsh, before its own options (default ['virsh']): e.g.
   * ['nsenter', '-t', PID, '-n', '-m', '-p', '-r', '-w', '--', 'virsh'] reaches
   * a libvirtd in other namespaces.
   */
  command?: readonly string[];
  /** 'batch' (default): one long-lived virsh; 'oneshot': a fresh virsh per call. */
  mode?: 'batch' | 'oneshot';
  /** Default bound of every call, in ms (default 30 000). virsh is killed when it runs out. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Changes nothing: may be repeated (once) in a fresh virsh when the batch process died during it. */
  readOnly?: boolean;
  timeoutMs?: number;
  /** virsh's stdin (a nameless file: see anonymousInput). The call then runs one-shot (in batch mode stdin carries the commands). */
  input?: string;
  /** Run this call in a fresh virsh, even in batch mode. */
  oneShot?: boolean;
}

export interface VirshStats {
  batchCalls: number;
  oneShotCalls: number;
  /** Batch processes started (the first one included). */
  batchStarts: number;
  /** Why this client gave up batch mode, if it did. */
  fallback?: string;
  /** Connection notices virsh printed between or during calls (latest 50). */
  notices: string[];
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ENV = { LC_ALL: 'C', PATH, TERM: 'dumb', INPUTRC: '/dev/null', VIRSH_HISTSIZE: '0', XDG_CACHE_HOME: '/dev/null' };
const DEFAULT_TIMEOUT_MS = 30_000;
const CLOSE_GRACE_MS = 2_000;
/** Must come back byte for byte from a batch virsh before it serves any call. */
export const BATCH_PROBE = `a'b"c\\d #e;f $g!h\`i ü日本🎉 \u0085\u202e\u2028 {}()|&<>*?~^%=+,:@[]`;

/**
 * virsh commands this client does not run: they end or redirect the batch
 * session (quit, exit, connect, cd), or want a terminal (console, the *edit
 * commands start an editor on virsh's stdin).
 */
const REFUSED = /^(quit|exit|connect|cd|console|edit|[a-z-]+-edit)$/;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Why no virsh (argv or line) can carry this argument, or undefined. */
export function uncarriable(arg: string): string | undefined {
  if (arg.includes('\0')) return 'holds a NUL character';
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(arg)) return 'holds a lone UTF-16 surrogate (no UTF-8 encoding)';
  return undefined;
}

/** The argument as one word of virsh's interactive syntax, or undefined when a line cannot carry it (control characters). */
export function batchWord(arg: string): string | undefined {
  if (/[\x00-\x1f\x7f]/.test(arg)) return undefined;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

function decodeOutput(bytes: Buffer, command: readonly string[]): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new LibvirtError('other', 'virsh printed output that is not UTF-8', command);
  }
}

/** Starts `command… args…` (virsh, or a wrapper ending in virsh) with virsh's fixed environment, in its own process group. */
export function spawnVirsh(command: readonly string[], args: readonly string[], stdin: 'pipe' | 'ignore' | number): ChildProcess {
  const [file, ...pre] = command as [string, ...string[]];
  // Its own process group: a timeout kills the whole group (a wrapper such
  // as nsenter --pid forks, and does not pass signals on).
  return spawn(file, [...pre, ...args], { stdio: [stdin, 'pipe', 'pipe'], env: ENV, detached: true });
}

/** SIGKILLs the child's whole process group (spawnVirsh made it a group leader); a no-op once it is gone. */
export function killGroup(child: ChildProcess): void {
  if (!child.pid) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

export function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit status ${code}`;
}

// ------------------------------------------------------------------ one-shot

interface OneShotOutcome {
  stdout: Buffer;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  spawnError?: string;
}

/**
 * A read-only descriptor of `content` with no name: written to a 0600 file in
 * a private directory that is removed at once. It becomes virsh's stdin, so
 * `virsh define --file /dev/stdin` works even when virsh runs in another
 * mount namespace (/dev/stdin reopens the descriptor, not a path). A pipe
 * would not do: Node's child stdio "pipes" are sockets, and opening
 * /dev/stdin on a socket fails (ENXIO).
 */
async function anonymousInput(content: string): Promise<number> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'virtwire-virsh-'));
  try {
    const file = path.join(dir, 'input');
    await fsp.writeFile(file, content, { mode: 0o600, flag: 'wx' });
    return openSync(file, 'r');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function runOneShot(command: readonly string[], uri: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<OneShotOutcome> {
  const stdin = input === undefined ? 'ignore' : await anonymousInput(input);
  return new Promise((resolve) => {
    const child = spawnVirsh(command, ['-q', '-c', uri, ...args], stdin);
    if (typeof stdin === 'number') closeSync(stdin);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: string | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e.code === 'ENOENT' ? `${command[0]}: not installed` : e.message;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), code, signal, timedOut, spawnError });
    });
  });
}

// ------------------------------------------------------------------ batch

type BatchOutcome =
  | { kind: 'done'; parsed: boolean; stdout: Buffer; stderr: string; notices: string[]; connectionLost: boolean }
  /** sent: whether the call had been written to virsh before it was found gone. */
  | { kind: 'dead'; why: string; stderr: string; sent: boolean }
  | { kind: 'timeout' };

/** One long-lived `virsh -q -c URI` reading commands on stdin; one call at a time. */
class BatchSession {
  readonly child: ChildProcess;
  private readonly tag = `vw-${randomBytes(12).toString('hex')}`;
  private seq = 0;
  private out: Buffer = Buffer.alloc(0);
  private err: Buffer = Buffer.alloc(0);
  private gone: string | undefined;
  private wake: (() => void) | undefined;

  constructor(command: readonly string[], uri: string) {
    this.child = spawnVirsh(command, ['-q', '-c', uri], 'pipe');
    this.child.stdout?.on('data', (b: Buffer) => {
      this.out = this.out.length ? Buffer.concat([this.out, b]) : b;
      this.wake?.();
    });
    this.child.stderr?.on('data', (b: Buffer) => {
      this.err = this.err.length ? Buffer.concat([this.err, b]) : b;
      this.wake?.();
    });
    this.child.on('error', (e: NodeJS.ErrnoException) => {
      this.gone ??= e.code === 'ENOENT' ? `${command[0]}: not installed` : e.message;
      this.wake?.();
    });
    this.child.on('close', (code, signal) => {
      this.gone ??= exitText(code, signal);
      this.wake?.();
    });
    this.child.stdin?.on('error', () => undefined); // EPIPE after a death: seen as 'close'
    // Idle, the process must not keep Node alive (a call in flight holds its timer).
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as { unref?: () => void } | null)?.unref?.();
  }

  get alive(): boolean {
    return this.gone === undefined;
  }

  async exec(args: readonly string[], timeoutMs: number): Promise<BatchOutcome> {
    if (this.gone) return { kind: 'dead', why: this.gone, stderr: this.takeAllStderr(), sent: false };
    const n = ++this.seq;
    const words = args.map((a) => batchWord(a) as string);
    const t = this.tag;
    this.child.stdin?.write(
      `echo --err ${t}-B${n}; echo --split '${t},B${n}'; ${words.join(' ')}; echo --split '${t},E${n}'; echo --err ${t}-E${n}\n` +
        `echo --err ${t}-G${n}\n`,
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.take(n);
      if (r) return r;
      if (this.gone) return { kind: 'dead', why: this.gone, stderr: this.takeAllStderr(), sent: true };
      const left = deadline - Date.now();
      if (left <= 0) {
        this.kill('timed out');
        return { kind: 'timeout' };
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Call n's outcome once both streams hold all of it; consumes it. */
  private take(n: number): BatchOutcome | undefined {
    const t = this.tag;
    const errG = Buffer.from(`error: ${t}-G${n}\n`);
    const gi = this.err.indexOf(errG);
    if (gi < 0) return undefined;
    const errB = Buffer.from(`error: ${t}-B${n}\n`);
    const errE = Buffer.from(`error: ${t}-E${n}\n`);
    const ei = this.err.indexOf(errE);
    let stdout = Buffer.alloc(0);
    let outEnd = 0;
    let before: string;
    let own: string;
    let after = '';
    const parsed = ei >= 0 && ei < gi;
    if (parsed) {
      // stdout and stderr are separate pipes: wait for stdout's end marker too.
      const outB = Buffer.from(`${t}\nB${n}\n`);
      const outE = Buffer.from(`${t}\nE${n}\n`);
      const bi = this.out.indexOf(outB);
      const ee = bi < 0 ? -1 : this.out.indexOf(outE, bi + outB.length);
      if (ee < 0) return undefined;
      stdout = Buffer.from(this.out.subarray(bi + outB.length, ee));
      outEnd = ee + outE.length;
      const bj = Math.max(0, this.err.indexOf(errB));
      before = this.err.subarray(0, bj).toString('utf8');
      own = this.err.subarray(bj + errB.length, ei).toString('utf8');
      after = this.err.subarray(ei + errE.length, gi).toString('utf8');
    } else {
      // The line was not run (virsh said why); its stdout holds only readline's echo.
      before = '';
      own = this.err.subarray(0, gi).toString('utf8');
    }
    this.err = Buffer.from(this.err.subarray(gi + errG.length));
    this.out = parsed ? Buffer.from(this.out.subarray(outEnd)) : Buffer.alloc(0);
    const lines = (s: string) => s.split('\n').filter((l) => l !== '');
    const notices = [...lines(before), ...lines(own).filter(isConnectionNotice), ...lines(after)];
    const stderr = lines(own).filter((l) => !isConnectionNotice(l)).map((l) => `${l}\n`).join('');
    const connectionLost = notices.some(isConnectionNotice) || /Failed to reconnect/.test(stderr);
    return { kind: 'done', parsed, stdout, stderr, notices, connectionLost };
  }

  /** What virsh said on stderr that is not a marker (after it died). */
  private takeAllStderr(): string {
    const s = this.err.toString('utf8');
    this.err = Buffer.alloc(0);
    return s.split('\n').filter((l) => !l.includes(this.tag)).join('\n');
  }

  kill(why: string): void {
    this.gone ??= why;
    killGroup(this.child);
  }

  /** `quit`, then a kill if virsh has not exited within CLOSE_GRACE_MS. */
  async close(): Promise<void> {
    if (this.gone) return;
    this.child.stdin?.end('quit\n');
    const deadline = Date.now() + CLOSE_GRACE_MS;
    while (!this.gone && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    if (!this.gone) this.kill('closed');
  }
}

// ------------------------------------------------------------------ the client

export class Virsh {
  readonly uri: string;
  readonly command: readonly string[];
  private readonly timeoutMs: number;
  private readonly wantBatch: boolean;
  private session: BatchSession | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  readonly stats: VirshStats = { batchCalls: 0, oneShotCalls: 0, batchStarts: 0, notices: [] };

  constructor(opts: VirshOptions = {}) {
    this.uri = opts.uri ?? 'qemu:///system';
    this.command = opts.command ?? ['virsh'];
    if (this.command.length === 0 || !this.command[0]) throw new Error('Virsh: options.command must name a program');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.wantBatch = (opts.mode ?? 'batch') === 'batch';
  }

  /** 'batch' while calls can use a long-lived virsh; 'oneshot' otherwise (chosen, or fallen back to: see stats.fallback). */
  get mode(): 'batch' | 'oneshot' {
    return this.wantBatch && !this.stats.fallback ? 'batch' : 'oneshot';
  }

  /** pid of the running batch process (the first program of `command`), if one runs. */
  get batchPid(): number | undefined {
    return this.session?.alive ? this.session.child.pid : undefined;
  }

  /**
   * Runs `virsh CMD ARGS…` and returns its stdout (exact, UTF-8). Throws a
   * LibvirtError with the kind mapped from virsh's message. Calls of one
   * client run one after another.
   */
  run(args: readonly string[], opts: CallOptions = {}): Promise<string> {
    const next = this.tail.then(() => this.runNow(args, opts));
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Ends the batch process (after the calls already queued). */
  close(): Promise<void> {
    this.closed = true;
    const done = this.tail.then(async () => {
      await this.session?.close();
      this.session = undefined;
    });
    this.tail = done.catch(() => undefined);
    return done;
  }

  private async runNow(args: readonly string[], opts: CallOptions): Promise<string> {
    if (this.closed) throw new LibvirtError('other', 'this virsh client was closed', args);
    if (args.length === 0) throw new LibvirtError('invalid-argument', 'no virsh command given', args);
    if (REFUSED.test(args[0] as string)) throw new LibvirtError('invalid-argument', `virsh ${args[0]} is not run through this client (it ends or redirects the session, or wants a terminal)`, args);
    for (const [i, a] of args.entries()) {
      const why = uncarriable(a);
      if (why) throw new LibvirtError('invalid-argument', `argument ${i + 1} ${why}; virsh cannot be given it`, args);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    // /dev/stdin: in a batch virsh, stdin is the command stream.
    const oneShot = this.mode === 'oneshot' || opts.oneShot || opts.input !== undefined || args.some((a) => batchWord(a) === undefined || a === '/dev/stdin');
    return oneShot ? this.oneShot(args, opts, timeoutMs) : this.batch(args, opts, timeoutMs);
  }

  private async oneShot(args: readonly string[], opts: CallOptions, timeoutMs: number): Promise<string> {
    this.stats.oneShotCalls++;
    const r = await runOneShot(this.command, this.uri, args, opts.input, timeoutMs);
    if (r.spawnError) throw new LibvirtError('other', `cannot run virsh: ${r.spawnError}`, args);
    if (r.timedOut) throw new LibvirtError('timeout', `no answer within ${timeoutMs} ms; virsh was killed`, args, !opts.readOnly);
    if (r.code !== 0) {
      const msg = virshMessage(r.stderr) || `virsh ended with ${exitText(r.code, r.signal)}`;
      const kind = r.signal ? 'connection' : classify(msg);
      throw new LibvirtError(kind, msg, args, r.signal ? !opts.readOnly : false);
    }
    return decodeOutput(r.stdout, args);
  }

  private async batch(args: readonly string[], opts: CallOptions, timeoutMs: number): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const s = await this.liveSession(args, timeoutMs);
      if (!s) return this.oneShot(args, opts, timeoutMs);
      this.stats.batchCalls++;
      const r = await s.exec(args, timeoutMs);
      if (r.kind === 'done') {
        this.note(r.notices);
        return this.batchResult(s, args, r, timeoutMs);
      }
      this.session = undefined;
      if (r.kind === 'timeout') throw new LibvirtError('timeout', `no answer within ${timeoutMs} ms; virsh was killed`, args, !opts.readOnly);
      // Gone before the call was written (it died while idle): nothing ran. A
      // read-only call is safe to repeat once in a fresh virsh anyway.
      if (attempt < 2 && (!r.sent || (opts.readOnly && attempt === 0))) continue;
      const said = virshMessage(r.stderr);
      throw new LibvirtError('connection', `virsh ${r.why} during the call${said ? `: ${said}` : ''}`, args, !opts.readOnly);
    }
  }

  private async batchResult(s: BatchSession, args: readonly string[], r: Extract<BatchOutcome, { kind: 'done' }>, timeoutMs: number): Promise<string> {
    if (r.parsed && !hasErrorLine(r.stderr)) return decodeOutput(r.stdout, args);
    const msg = virshMessage(r.stderr) || 'virsh failed without a message';
    let kind = classify(msg);
    // virsh's lookup says only "failed to get domain" whatever went wrong: if
    // the connection dropped meanwhile, "not found" is not known. One `uri`
    // makes virsh show it (it reconnects and says so, or fails to).
    if ((kind === 'no-domain' || kind === 'no-network') && (r.connectionLost || (await this.connectionLostSince(s, timeoutMs)))) kind = 'connection';
    throw new LibvirtError(kind, msg, args);
  }

  private async connectionLostSince(s: BatchSession, timeoutMs: number): Promise<boolean> {
    const c = await s.exec(['uri'], timeoutMs);
    if (c.kind !== 'done') return true;
    this.note(c.notices);
    return c.connectionLost || hasErrorLine(c.stderr);
  }

  /** The running batch session, a new one (probed), or undefined when batch mode is given up. */
  private async liveSession(args: readonly string[], timeoutMs: number): Promise<BatchSession | undefined> {
    if (this.session?.alive) return this.session;
    this.session = undefined;
    const s = new BatchSession(this.command, this.uri);
    this.stats.batchStarts++;
    const r = await s.exec(['echo', BATCH_PROBE], timeoutMs);
    if (r.kind === 'timeout') throw new LibvirtError('timeout', `virsh did not start within ${timeoutMs} ms`, args);
    if (r.kind === 'dead') {
      // Interactive virsh exits when it cannot connect at start: that is the call's error.
      const msg = virshMessage(r.stderr) || `virsh ${r.why} at start`;
      if (/^cannot run|not installed/.test(r.why)) throw new LibvirtError('other', `cannot run virsh: ${r.why}`, args);
      throw new LibvirtError(classify(msg) === 'other' ? 'connection' : classify(msg), msg, args);
    }
    const out = r.stdout.toString('utf8');
    if (!r.parsed || hasErrorLine(r.stderr) || (out !== BATCH_PROBE && out !== `${BATCH_PROBE}\n`)) {
      this.stats.fallback = `virsh's interactive mode did not echo the probe back intact (${r.parsed ? `got ${JSON.stringify(out)}` : virshMessage(r.stderr)}); every call runs one-shot`;
      await s.close();
      return undefined;
    }
    this.note(r.notices);
    this.session = s;
    return s;
  }

  private note(lines: string[]): void {
    if (lines.length === 0) return;
    this.stats.notices.push(...lines);
    this.stats.notices.splice(0, Math.max(0, this.stats.notices.length - 50));
  }
}

// qemu `prepare` served by the long-running watcher, so that a VM start pays
// no Node start-up (issue 12: Node's own start-up is more than the 10 % a
// start may cost here). The shim (hooks/qemu) hands the watcher the domain XML
// and waits for one line; the watcher runs the very handler the hook runs
// (handleQemuHook). Any doubt on the shim's side — no watcher, a dead one, no
// answer in time, the answer "node" — and the shim runs Node as before.
//
// The channel, all in RUNDIR/prepare (root's, 0700):
//   requests  a FIFO the watcher reads; a request is "ID\n" (the shim's pid)
//             (prepare), or "ID OP UUID", OP stopped or release: that
//             VM's teardown (below)
//   alive     flock(2)-locked while a watcher serves: one serves at a time
//   server    "PID STARTTIME" of the serving watcher (field 22 of its
//             /proc/PID/stat): the shim checks it with shell builtins, so a
//             dead watcher, or its pid reused, never makes a start wait
//   ID.xml    the domain XML, written by the shim
//   ID.answer a FIFO the shim holds open for reading; the watcher writes
//             "ok", "refused <the one line to show>" or "node"
//   UUID.applying  the start goes on before the watcher has even read the
//             XML: "ok" is sent as soon as the watcher holds the ledger lock,
//             with this file there, empty; the watcher then runs the hook's
//             prepare under that lock (parse, plan, checks, claim, apply) and
//             removes the file, or writes into it the line a refusal shows.
//             The shim's `start` (right before QEMU runs) waits for the lock
//             if it is empty and fails the start on a line, or on a file still
//             empty once the lock is free (the watcher died). So all of the
//             watcher's work overlaps libvirt's own between prepare and start,
//             and every refusal of a served start comes at `start`, with the
//             line the hook gives at `prepare` when it runs Node itself.
// A teardown request runs the VM's teardown script (what its start added) as
// the shim would, through the watcher's long-lived nft (host/nft-session.ts:
// a short-lived nft that deletes waits out an RCU grace period at its exit),
// and answers "ok", or "node": the shim then runs the teardown itself.
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, chmodSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { writeTextAtomic } from '../atomic.js';
import { spawnSync } from 'node:child_process';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { withLock } from '../state/lock.js';
import { errorMessage, oneLine } from '../errors.js';
import type { HookResult } from './qemu-handler.js';

export interface PrepareChannel {
  dir: string;
  requests: string;
  alive: string;
  server: string;
}

export function prepareChannel(runDir: string): PrepareChannel {
  const dir = join(runDir, 'prepare');
  return { dir, requests: join(dir, 'requests'), alive: join(dir, 'alive'), server: join(dir, 'server') };
}

/** This process as the shim checks it: "PID STARTTIME", STARTTIME being field 22 of /proc/PID/stat. */
export function processStamp(pid: number | 'self' = 'self'): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces and ")": field 3 comes first.
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).trim().split(' ');
  return `${pid === 'self' ? process.pid : pid} ${fields[19]}`;
}

/** Where the shim's `start` looks for a VM whose prepare was answered before it was applied. */
export function applyingMarker(runDir: string, uuid: string): string {
  return join(prepareChannel(runDir).dir, `${uuid}.applying`);
}

/** What the shim reads back: its first line decides. */
export type PrepareAnswer = 'ok' | 'node' | `refused ${string}`;

export interface PrepareServerOptions {
  runDir: string;
  /**
   * The hook's handler for `prepare` with this XML on stdin (the watcher:
   * handleQemuHook on a fresh hook context), run holding `ledgerLock`,
   * after the shim was answered.
   */
  prepare: (xml: string) => Promise<HookResult>;
  /** The ledger's lock file (state/ledger.ts): the shim's `start` waits for it. */
  ledgerLock: string;
  /** The one line a start refused by this error shows (a handler that threw, a lock not had in time). */
  refusalLine: (err: unknown) => string;
  /** A VM's teardown at stopped/release (lifecycle.ts teardownVm); false: not done, the shim does it. */
  teardown?: (uuid: string, op: 'stopped' | 'release') => Promise<boolean>;
  /** Whether the hook must run Node itself this time (plugins: Node loads them afresh on every run). */
  mustRunNode?: () => boolean;
  log: { info: (m: string) => void; error: (m: string) => void };
}

/** "PID" (prepare, its XML in PID.xml) or "PID stopped|release UUID" (a teardown). */
const REQUEST = /^([1-9][0-9]{0,9})(?: (stopped|release) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))?$/;

/**
 * The domain's UUID: its first <uuid> element, as the shim reads it at
 * `start` (only <name> comes before it in libvirt's XML, and XML escapes a
 * "<" in a name). Undefined: none in the usual form.
 */
function domainUuidIn(xml: string): string | undefined {
  return /<uuid>([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})<\/uuid>/.exec(xml.slice(0, 4096))?.[1];
}

/** How long a served prepare waits for the ledger lock (the hook's own run waits as long). */
const LOCK_WAIT_S = 60;

interface Teardown { op: 'stopped' | 'release'; uuid: string }

export class PrepareServer {
  private readonly ch: PrepareChannel;
  private socket: Socket | undefined;
  private release: (() => void) | undefined;
  private held: Promise<unknown> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private pending = '';

  constructor(private readonly o: PrepareServerOptions) {
    this.ch = prepareChannel(o.runDir);
  }

  /**
   * Opens the channel; resolves true once the watcher serves (the alive lock
   * held), false when it cannot (another watcher serves: it keeps doing so).
   */
  async start(): Promise<boolean> {
    mkdirSync(this.ch.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.ch.dir, 0o700);
    if (!lstatSync(this.ch.requests, { throwIfNoEntry: false })?.isFIFO()) {
      rmSync(this.ch.requests, { force: true });
      const r = spawnSync('mkfifo', ['-m', '600', this.ch.requests], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      if (r.status !== 0) throw new Error(`cannot make the FIFO ${this.ch.requests}: ${r.stderr?.trim() || r.error?.message || `mkfifo exit ${r.status}`}`);
    }
    // Read-write: the FIFO never reads as closed, and opening it never waits for a writer.
    const fd = openSync(this.ch.requests, constants.O_RDWR | constants.O_NONBLOCK);
    const socket = new Socket({ fd, readable: true, writable: false });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.received(chunk));
    socket.on('error', (err) => this.o.log.error(`serving qemu prepare: reading ${this.ch.requests}: ${errorMessage(err)}`));
    this.socket = socket;
    const since = Date.now();
    // Taken once requests are read; `server`, which shims look for before they send, is written last.
    const acquired = new Promise<boolean>((resolve) => {
      this.held = withLock(this.ch.alive, () => {
        resolve(true);
        return new Promise<void>((r) => { this.release = r; });
      }, 2).catch((err: unknown) => {
        resolve(false);
        this.o.log.info(`not serving qemu prepare: ${errorMessage(err)}`);
      });
    });
    if (!(await acquired)) {
      this.closeSocket();
      return false;
    }
    this.answerStale(since);
    writeTextAtomic(this.ch.server, `${processStamp()}\n`, 'the prepare server\'s name', this.o.runDir);
    return true;
  }

  /** Stops serving: the server file and the lock go first (new shims run Node), then requests already queued are answered. */
  async stop(): Promise<void> {
    if (this.release) rmSync(this.ch.server, { force: true });
    this.release?.();
    await this.held;
    this.closeSocket();
    await this.queue;
  }

  private closeSocket(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private received(chunk: string): void {
    this.pending += chunk;
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      const m = REQUEST.exec(line);
      if (!m) {
        this.o.log.error(`serving qemu prepare: ignored a request that is not a shim's: ${JSON.stringify(line.slice(0, 60))}`);
        continue;
      }
      const [, id, op, uuid] = m as unknown as [string, string, Teardown['op'] | undefined, string | undefined];
      const teardown = op && uuid ? { op, uuid } : undefined;
      // One at a time, in order: both take the ledger lock anyway.
      this.queue = this.queue.then(() => this.serve(id, teardown)).catch((err: unknown) => this.o.log.error(`serving qemu prepare: ${errorMessage(err)}`));
    }
    if (this.pending.length > 128) this.pending = '';
  }

  private async serve(id: string, teardown: Teardown | undefined): Promise<void> {
    const xmlFile = join(this.ch.dir, `${id}.xml`);
    const answerFile = join(this.ch.dir, `${id}.answer`);
    let fd: number;
    try {
      // Non-blocking: fails (ENXIO, ENOENT) when the shim no longer waits — it runs Node itself.
      fd = openSync(answerFile, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      rmSync(xmlFile, { force: true });
      return;
    }
    let answered = false;
    // The request's files go once it is answered: a served prepare goes on after that.
    const removeFiles = (): void => {
      rmSync(xmlFile, { force: true });
      rmSync(answerFile, { force: true });
    };
    try {
      let answer: PrepareAnswer = 'node';
      try {
        if (!fstatSync(fd).isFIFO()) throw new Error(`${answerFile} is not a FIFO`);
        if (teardown !== undefined) {
          if (await this.o.teardown?.(teardown.uuid, teardown.op)) answer = 'ok';
        } else {
          const st = lstatSync(xmlFile);
          if (!st.isFile() || st.uid !== process.getuid?.()) throw new Error(`${xmlFile} is not a regular file of this user`);
          const xml = readFileSync(xmlFile, 'utf8');
          const uuid = domainUuidIn(xml);
          // No UUID where libvirt puts it: the hook's own run decides (and says what is wrong).
          if (uuid !== undefined && !this.o.mustRunNode?.()) answer = await this.answerAtOnce(fd, uuid, xml, () => { answered = true; removeFiles(); }) ?? answer;
        }
      } catch (err) {
        if (!answered) this.o.log.error(`serving qemu prepare: ${errorMessage(err)}; the hook runs it itself`);
        else this.o.log.error(`serving qemu prepare: after its "ok": ${errorMessage(err)}`);
      }
      if (!answered) writeSync(fd, `${answer}\n`);
    } catch (err) {
      // EPIPE: the shim gave up meanwhile and runs Node, which converges from what this left.
      this.o.log.error(`serving qemu prepare: could not answer request ${id}: ${errorMessage(err)}`);
    } finally {
      closeSync(fd);
      if (!answered) removeFiles();
    }
  }

  /**
   * Under the ledger lock: the marker, then "ok" (the shim may reach `start`
   * at once, and waits for this lock there), then the hook's prepare; once
   * it is done the marker goes, or carries the refusal's line. The lock not
   * had in time: the answer is the refusal, as the hook's own run would refuse.
   */
  private async answerAtOnce(fd: number, uuid: string, xml: string, onAnswered: () => void): Promise<PrepareAnswer | undefined> {
    const marker = applyingMarker(this.o.runDir, uuid);
    let locked = false;
    try {
      await withLock(this.o.ledgerLock, () => this.prepareAnswered(fd, marker, xml, () => { locked = true; }, onAnswered), LOCK_WAIT_S);
    } catch (err) {
      if (locked) throw err;
      return `refused ${oneLine(this.o.refusalLine(err))}`;
    }
    return undefined;
  }

  /** Holding the ledger lock: the marker, "ok", the hook's prepare, the marker settled. */
  private async prepareAnswered(fd: number, marker: string, xml: string, onLocked: () => void, onAnswered: () => void): Promise<void> {
    onLocked();
    writeFileSync(marker, '', { mode: 0o600 });
    try {
      writeSync(fd, 'ok\n');
    } catch (err) {
      rmSync(marker, { force: true }); // the shim gave up waiting: it runs Node, and nothing may refuse its start
      throw err;
    }
    onAnswered();
    let line: string | undefined;
    try {
      const r = await this.o.prepare(xml);
      if (r.exitCode !== 0) line = r.stderr ?? 'virtwire: refused';
    } catch (err) {
      this.o.log.error(`serving qemu prepare: after its "ok": ${errorMessage(err)}`);
      line = this.o.refusalLine(err);
    }
    try {
      if (line === undefined) rmSync(marker, { force: true });
      else writeTextAtomic(marker, `${oneLine(line)}\n`, 'a refused start\'s line', this.o.runDir);
    } catch (err) {
      // The marker stays empty: the shim's start refuses all the same, with a less precise line.
      this.o.log.error(`serving qemu prepare: ${errorMessage(err)}`);
    }
  }

  /**
   * Requests a dead watcher left (files older than this one's start: until
   * it names itself in `server`, shims find no live watcher there, run Node
   * and write none): any shim still waiting on one is told to run Node; the
   * files go.
   */
  private answerStale(since: number): void {
    for (const name of readdirSync(this.ch.dir)) {
      const file = join(this.ch.dir, name);
      if ((lstatSync(file, { throwIfNoEntry: false })?.mtimeMs ?? since) >= since) continue;
      if (name.endsWith('.answer')) {
        try {
          const fd = openSync(file, constants.O_WRONLY | constants.O_NONBLOCK);
          try { writeSync(fd, 'node\n'); } finally { closeSync(fd); }
        } catch {
          // nobody waits on it
        }
        rmSync(file, { force: true });
      } else if (name.endsWith('.xml')) {
        rmSync(file, { force: true });
      }
    }
  }
}

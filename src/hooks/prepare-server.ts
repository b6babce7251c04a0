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
//   UUID.applying  the start goes on before the host has the VM's forwards:
//             "ok" is sent once the checks against the other VMs passed, with
//             this file there, empty; the watcher goes on under the ledger
//             lock — the claim recorded, the host's sockets checked, then
//             applied — then removes it, or writes into it the line a
//             refusal shows. The shim's `start` (right before QEMU runs) waits
//             for the lock if it is empty and fails the start on a line, or on
//             a file still empty once the lock is free (the watcher died).
//             So the read of the host's sockets, the nft commit and the look
//             at libvirt's firewall overlap libvirt's own work between prepare
//             and start.
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

/** The handler's side of an early "ok" (see EarlyAnswer in src/engine/lifecycle.ts): `settled` gets the refusal's line. */
export interface EarlyOk {
  claimed(uuid: string): void;
  settled(refusalLine: string | undefined): void;
}

export interface PrepareServerOptions {
  runDir: string;
  /**
   * The hook's handler for `prepare` with this XML on stdin (the watcher:
   * handleQemuHook on a fresh hook context), with `early` to answer before
   * the host has the VM's forwards.
   */
  prepare: (xml: string, early: EarlyOk) => Promise<HookResult>;
  /** A VM's teardown at stopped/release (lifecycle.ts teardownVm); false: not done, the shim does it. */
  teardown?: (uuid: string, op: 'stopped' | 'release') => Promise<boolean>;
  /**
   * Starts taking the ledger lock as a prepare request arrives, for the
   * prepare to run under (state/lock.ts lockAhead); returns what drops it
   * if the prepare took none.
   */
  lockAhead?: () => () => Promise<void>;
  /** Whether the hook must run Node itself this time (plugins: Node loads them afresh on every run). */
  mustRunNode?: () => boolean;
  log: { info: (m: string) => void; error: (m: string) => void };
}

/** "PID" (prepare, its XML in PID.xml) or "PID stopped|release UUID" (a teardown). */
const REQUEST = /^([1-9][0-9]{0,9})(?: (stopped|release) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))?$/;

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
    // Meanwhile the XML is read and parsed and the VM planned: the lock is there when the claim needs it.
    const dropAhead = teardown === undefined ? this.o.lockAhead?.() : undefined;
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
          if (!this.o.mustRunNode?.()) {
            const r = await this.o.prepare(xml, this.earlyOk(fd, () => { answered = true; }));
            answer = r.exitCode === 0 ? 'ok' : `refused ${oneLine(r.stderr ?? 'virtwire: refused')}`;
          }
        }
      } catch (err) {
        if (!answered) this.o.log.error(`serving qemu prepare: ${errorMessage(err)}; the hook runs it itself`);
        else this.o.log.error(`serving qemu prepare: after the early "ok": ${errorMessage(err)}`);
      }
      if (!answered) writeSync(fd, `${answer}\n`);
    } catch (err) {
      // EPIPE: the shim gave up meanwhile and runs Node, which converges from what this left.
      this.o.log.error(`serving qemu prepare: could not answer request ${id}: ${errorMessage(err)}`);
    } finally {
      closeSync(fd);
      rmSync(xmlFile, { force: true });
      rmSync(answerFile, { force: true });
      // Not awaited: held elsewhere, the lock may take a while to come, and a request that needs
      // none (a VM nothing concerns) must not wait behind it.
      dropAhead?.().catch(() => undefined);
    }
  }

  /**
   * "ok" before the host has the VM's forwards: the marker first (the shim
   * may reach `start` at once), then the answer; settled, the marker goes or
   * carries the refusal's line. Both run under the ledger lock (prepareVm),
   * which is what the shim's `start` waits for.
   */
  private earlyOk(fd: number, onAnswered: () => void): EarlyOk {
    let marker: string | undefined;
    return {
      claimed: (uuid) => {
        const file = applyingMarker(this.o.runDir, uuid);
        writeFileSync(file, '', { mode: 0o600 });
        try {
          writeSync(fd, 'ok\n');
        } catch (err) {
          rmSync(file, { force: true }); // the shim gave up waiting: it runs Node, and nothing may refuse its start
          throw err;
        }
        marker = file;
        onAnswered();
      },
      settled: (line) => {
        if (marker === undefined) return; // not answered early: the refusal goes back as the answer
        try {
          if (line === undefined) rmSync(marker, { force: true });
          else writeTextAtomic(marker, `${oneLine(line)}\n`, 'a refused start\'s line', this.o.runDir);
        } catch (err) {
          // The marker stays empty: the shim's start refuses all the same, with a less precise line.
          this.o.log.error(`serving qemu prepare: ${errorMessage(err)}`);
        }
      },
    };
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

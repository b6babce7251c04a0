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
//   server    "PID FD" of the serving watcher: FD is its open file of
//             `requests` (opened close-on-exec: no child holds it). The
//             shim checks /proc/PID/fd/FD is that FIFO with shell builtins,
//             so a dead watcher, or its pid reused, never makes a start wait
//   pool/     answer FIFOs made ahead (src/hooks/answer-pool.ts): a shim
//             that claimed slot K sends "ID:K" for "ID", and reads its
//             answer from pool/K.fifo instead of ID.answer
//   ID.answer a FIFO the shim holds open for reading; the watcher writes
//             "ok", "refused <the one line to show>" or "node"
//   ID.taken  made (O_EXCL) by the watcher before it reads the domain XML
//             straight from the shim's stdin (the pipe libvirt writes, which
//             the shim keeps on fd 6 for it: /proc/ID/fd/6): the shim starts
//             no process to read it, and writes no
//             file. A shim left without an answer tries to make it too:
//             whoever made it reads stdin. Should the watcher have taken it
//             and answer nothing (it died, or hung for the shim's whole
//             wait), the XML is gone: the shim refuses the start, which the
//             user runs again.
//   ID.xml    the XML the watcher took, written back whole before it answers
//             "node" (the handler threw): the shim hands it to Node. With
//             ID.taken, the shim removes both on that path; the watcher on
//             every other.
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
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, chmodSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { writeTextAtomic } from '../atomic.js';
import { spawnSync } from 'node:child_process';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { withLock } from '../state/lock.js';
import { errorMessage, oneLine, quoted } from '../errors.js';
import type { HookResult } from './qemu-handler.js';
import { AnswerPool, POOL_SLOTS } from './answer-pool.js';

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

/** The `server` file's line: this process, and its fd of the requests FIFO (see the top of this file). */
export function serverStamp(requestsFd: number): string {
  return `${process.pid} ${requestsFd}`;
}

/**
 * Whether a watcher serves now: the shim's own check (hooks/qemu vw_watcher),
 * in Node — `server` names a live process whose FD is the requests FIFO.
 */
export function watcherServes(runDir: string): boolean {
  const ch = prepareChannel(runDir);
  try {
    const m = /^([1-9][0-9]*) ([0-9]+)\n?$/.exec(readFileSync(ch.server, 'utf8'));
    if (!m) return false;
    const held = statSync(`/proc/${m[1]}/fd/${m[2]}`);
    const fifo = statSync(ch.requests);
    return fifo.isFIFO() && held.dev === fifo.dev && held.ino === fifo.ino;
  } catch {
    return false;
  }
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
  /** How long libvirt may take to write the XML and close the hook's stdin (default 20 s). */
  xmlReadMs?: number;
  /** Whether the hook must run Node itself this time (plugins: Node loads them afresh on every run). */
  mustRunNode?: () => boolean;
  log: { info: (m: string) => void; error: (m: string) => void };
}

/**
 * "PID" (a prepare) or "PID stopped|release UUID" (a teardown); "PID:K"
 * instead of "PID" when the answer goes to slot K of the pool.
 */
const REQUEST = /^([1-9][0-9]{0,9})(?::([0-9]))?(?: (stopped|release) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))?$/;

interface Teardown { op: 'stopped' | 'release'; uuid: string }

export class PrepareServer {
  private readonly ch: PrepareChannel;
  private socket: Socket | undefined;
  private release: (() => void) | undefined;
  private held: Promise<unknown> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private pending = '';
  private readonly pool: AnswerPool;

  constructor(private readonly o: PrepareServerOptions) {
    this.ch = prepareChannel(o.runDir);
    this.pool = new AnswerPool(this.ch.dir);
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
    this.pool.open('node');
    writeTextAtomic(this.ch.server, `${serverStamp(fd)}\n`, 'the prepare server\'s name', this.o.runDir);
    return true;
  }

  /** Stops serving: the server file and the lock go first (new shims run Node), then requests already queued are answered. */
  async stop(): Promise<void> {
    if (this.release) rmSync(this.ch.server, { force: true });
    this.release?.();
    await this.held;
    this.closeSocket();
    await this.queue;
    this.pool.close();
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
      const [, id, k, op, uuid] = m as unknown as [string, string, string | undefined, Teardown['op'] | undefined, string | undefined];
      const teardown = op && uuid ? { op, uuid } : undefined;
      const slot = k === undefined || Number(k) >= POOL_SLOTS ? undefined : Number(k);
      if (k !== undefined && slot === undefined) {
        this.o.log.error(`serving qemu prepare: ignored a request for slot ${k}, which the pool does not have`);
        continue;
      }
      if (slot !== undefined) this.pool.queued(slot);
      // One at a time, in order: both take the ledger lock anyway.
      this.queue = this.queue.then(() => this.serve(id, slot, teardown)).catch((err: unknown) => this.o.log.error(`serving qemu prepare: ${errorMessage(err)}`));
    }
    if (this.pending.length > 128) this.pending = '';
  }

  private async serve(id: string, slot: number | undefined, teardown: Teardown | undefined): Promise<void> {
    let answeredTo: string | undefined;
    try {
      answeredTo = await this.serveOn(id, slot, teardown);
    } finally {
      if (slot !== undefined) this.pool.done(slot, answeredTo);
    }
  }

  /** Serves one request; the pid the answer went to, if one went. */
  private async serveOn(id: string, slot: number | undefined, teardown: Teardown | undefined): Promise<string | undefined> {
    const files = requestFiles(this.ch.dir, id);
    // A slot's request whose shim no longer holds the slot (it gave up, exited, and the slot was freed) is not answered.
    if (slot !== undefined && this.pool.claimant(slot) !== id) return undefined;
    const answerFile = slot === undefined ? files.answer : this.pool.fifo(slot);
    let fd: number;
    try {
      // Non-blocking: fails (ENXIO, ENOENT) when the shim no longer waits — it runs Node itself.
      fd = openSync(answerFile, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      return undefined;
    }
    if (teardown === undefined) {
      // Written for this request only, right before its answer: one a killed shim of the same pid left is not its.
      rmSync(files.xml, { force: true });
      // Nor is an ID.taken older than this request (its answer FIFO, or its claim of a slot): a shim makes its own only once it stopped waiting.
      const taken = lstatSync(files.taken, { throwIfNoEntry: false });
      const since = slot === undefined ? fstatSync(fd).ctimeMs : this.pool.claimedAtMs(slot) ?? 0;
      if (taken !== undefined && taken.mtimeMs < since) rmSync(files.taken, { force: true });
    }
    let sentTo: string | undefined;
    let answered = false;
    // Left for the shim, which hands the XML in it to Node: the one answer after which it reads them.
    let xmlForNode = false;
    // Meanwhile the XML is read and parsed and the VM planned: the lock is there when the claim needs it.
    const dropAhead = teardown === undefined ? this.o.lockAhead?.() : undefined;
    try {
      let answer: PrepareAnswer = 'node';
      let xml: string | undefined;
      try {
        if (!fstatSync(fd).isFIFO()) throw new Error(`${answerFile} is not a FIFO`);
        if (teardown !== undefined) {
          if (await this.o.teardown?.(teardown.uuid, teardown.op)) answer = 'ok';
        } else if (!this.o.mustRunNode?.()) {
          xml = await takeShimStdin(id, files.taken, this.o.xmlReadMs ?? XML_READ_MS);
          if (xml !== undefined) {
            const r = await this.o.prepare(xml, this.earlyOk(fd, () => { answered = true; sentTo = id; }));
            answer = r.exitCode === 0 ? 'ok' : `refused ${oneLine(r.stderr ?? 'virtwire: refused')}`;
          }
        }
      } catch (err) {
        if (err instanceof UnreadXml) {
          answer = `refused ${err.message}`;
          this.o.log.error(`serving qemu prepare: ${err.message}`);
        } else if (!answered) this.o.log.error(`serving qemu prepare: ${errorMessage(err)}; the hook runs it itself`);
        else this.o.log.error(`serving qemu prepare: after the early "ok": ${errorMessage(err)}`);
      }
      if (!answered && answer === 'node' && xml !== undefined) {
        try {
          writeTextAtomic(files.xml, xml, 'the domain XML for the hook\'s Node run', this.o.runDir);
          xmlForNode = true;
        } catch (err) {
          answer = `refused virtwire: the watcher could not hand this start's domain XML back to the hook (${oneLine(errorMessage(err))}); start the VM again`;
        }
      }
      if (!answered) {
        // Before the write: a partial one may reach the shim too.
        sentTo = id;
        writeSync(fd, `${answer}\n`);
      }
    } catch (err) {
      // EPIPE: the shim gave up meanwhile, and refuses the start or runs Node, which converges from what this left.
      xmlForNode = false;
      this.o.log.error(`serving qemu prepare: could not answer request ${id}: ${errorMessage(err)}`);
    } finally {
      closeSync(fd);
      if (slot === undefined) rmSync(files.answer, { force: true });
      if (!xmlForNode) for (const f of [files.xml, files.taken]) rmSync(f, { force: true });
      // Not awaited: held elsewhere, the lock may take a while to come, and a request that needs
      // none (a VM nothing concerns) must not wait behind it.
      dropAhead?.().catch(() => undefined);
    }
    return sentTo;
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
   * and write none): any shim still waiting on one is told "node" — it runs
   * Node on its stdin, or refuses the start if the dead watcher had taken
   * that (its ID.taken, left for it) — and a dead shim's files go.
   */
  private answerStale(since: number): void {
    const stale = (file: string): boolean => (lstatSync(file, { throwIfNoEntry: false })?.mtimeMs ?? since) < since;
    const names = readdirSync(this.ch.dir);
    const waiting = new Set<string>();
    for (const name of names) {
      if (!name.endsWith('.answer') || !stale(join(this.ch.dir, name))) continue;
      const id = name.slice(0, -'.answer'.length);
      try {
        const fd = openSync(join(this.ch.dir, name), constants.O_WRONLY | constants.O_NONBLOCK);
        try { writeSync(fd, 'node\n'); waiting.add(id); } finally { closeSync(fd); }
      } catch {
        // nobody waits on it
      }
      rmSync(join(this.ch.dir, name), { force: true });
    }
    for (const name of names) {
      const m = /^(\d+)\.(?:xml|taken)$/.exec(name);
      if (m && !waiting.has(m[1] as string) && stale(join(this.ch.dir, name))) rmSync(join(this.ch.dir, name), { force: true });
    }
  }
}

/** A request's files in the channel's directory (see the top of this file). */
function requestFiles(dir: string, id: string): { answer: string; taken: string; xml: string } {
  return { answer: join(dir, `${id}.answer`), taken: join(dir, `${id}.taken`), xml: join(dir, `${id}.xml`) };
}

/**
 * '"NAME" ' of the VM a waiting shim runs for (libvirt runs it as
 * `HOOK NAME prepare begin -`, through its #! interpreter), or nothing when
 * its command line does not say.
 */
function shimVmName(id: string): string {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${id}/cmdline`, 'utf8').split('\0');
  } catch {
    return '';
  }
  if (argv[argv.length - 1] === '') argv.pop();
  const n = argv.length;
  return n >= 5 && argv[n - 3] === 'prepare' && argv[n - 2] === 'begin' && argv[n - 1] === '-' ? `${quoted(argv[n - 4] as string)} ` : '';
}

/** The XML could not be read whole from the shim's stdin, which the watcher took: the start is refused with this line. */
class UnreadXml extends Error {}

/** The shim's fd holding the pipe its XML comes on (hooks/qemu, `exec 6<&0`). */
const SHIM_XML_FD = 6;

/** How long libvirt may take to write the XML and close the hook's stdin, unless told. */
const XML_READ_MS = 20_000;

/**
 * The domain XML libvirt writes to the shim's stdin, read to its end through
 * /proc/ID/fd/6 (the shim's copy of its stdin: dash's `read <&7` moves fd 0
 * while it waits): a new open of the same pipe, non-blocking here, while the
 * shim waits for its answer and never reads it. Only one side may read it:
 * whichever makes `taken` (O_EXCL) first — here before reading, the shim
 * when it stops waiting without an answer. Anything but an anonymous pipe
 * (the shim run by hand on a file, a terminal, a named FIFO) is left to the
 * shim: undefined, and nothing taken.
 */
async function takeShimStdin(id: string, taken: string, readMs: number): Promise<string | undefined> {
  const path = `/proc/${id}/fd/${SHIM_XML_FD}`;
  let src: number;
  try {
    if (!/^pipe:\[\d+\]$/.test(readlinkSync(path))) return undefined;
    src = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    // No fd 6: a shim of an older install. Anything else (EACCES: a watcher with fewer capabilities
    // than the hook) is worth a line in the log, as every start would then run Node.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot open the hook's stdin ${path}: ${errorMessage(err)}`);
  }
  try {
    if (!fstatSync(src).isFIFO()) {
      closeSync(src);
      return undefined;
    }
    // Exclusive: a shim that gave up waiting made it first, and reads its stdin itself.
    closeSync(openSync(taken, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
  } catch (err) {
    closeSync(src);
    throw err;
  }
  const socket = new Socket({ fd: src, readable: true, writable: false });
  const chunks: Buffer[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      // The refusal names the VM for the log too, where the watcher's lines carry no hook's arguments.
      const unread = (what: string): UnreadXml => new UnreadXml(`virtwire: VM ${shimVmName(id)}not started: ${what}; start it again`);
      const timer = setTimeout(() => reject(unread(`libvirt did not finish writing its domain XML to the hook within ${readMs / 1000} s`)), readMs);
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => { clearTimeout(timer); resolve(); });
      socket.on('error', (err) => { clearTimeout(timer); reject(unread(`the watcher could not read its domain XML from the hook (${oneLine(errorMessage(err))})`)); });
    });
  } finally {
    socket.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

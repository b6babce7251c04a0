// Answer FIFOs the watcher makes ahead, so that a shim asking it (a served
// prepare or teardown: src/hooks/prepare-server.ts) starts no `mkfifo` —
// a process costs a start 1.5–6 ms here, more than the rest of the shim's
// channel. In RUNDIR/prepare/pool:
//   K.fifo   slot K's FIFO (K = 0 … SLOTS-1), made by the watcher
//   K.claim  "PID\n": the shim PID holds slot K. Made by the shim with the
//            shell's noclobber (O_EXCL), so one shim holds a slot; removed
//            only by the watcher (a shim has no builtin to remove a file),
//            and only once the slot can carry no answer to the wrong shim:
//            - answered, once its shim no longer holds the FIFO (on its
//              fd 7): an answer it has not read yet would go to the next
//              claimant (a FIFO hands its bytes to whoever reads first);
//            - never answered (no request came: the shim was killed between
//              claim and request), once its process is gone;
//            - holding no pid (the shim was killed between making it and
//              writing its pid, microseconds), once it is a minute old.
// A shim that finds no slot free, or no pool (an older watcher), makes its
// own PID.answer FIFO as before.
import { closeSync, constants, lstatSync, mkdirSync, chmodSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** Slots the shim tries, in order (hooks/qemu `vw_ask` lists them: keep in sync). */
export const POOL_SLOTS = 8;

/** A claim with no pid in it older than this was left by a shim killed as it made it. */
const EMPTY_CLAIM_MS = 60_000;

/** The shim's fd of its answer FIFO (hooks/qemu: `exec 7<>`). */
const SHIM_ANSWER_FD = 7;

export class AnswerPool {
  readonly dir: string;
  /** Slots answered, by the pid they were answered to: freed by `sweep` once that shim let go. */
  private readonly answered = new Map<number, string>();
  /** Slots with a request queued or being served: never swept. */
  private readonly busy = new Set<number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerDelayMs = 0;

  constructor(prepareDir: string) {
    this.dir = join(prepareDir, 'pool');
  }

  fifo(slot: number): string {
    return join(this.dir, `${slot}.fifo`);
  }

  private claim(slot: number): string {
    return join(this.dir, `${slot}.claim`);
  }

  /**
   * Makes the pool's FIFOs (one mkfifo for those missing). Claims a dead
   * watcher left: a shim still waiting on one is told `staleAnswer` (it goes
   * on without a watcher), and the slot is freed once it let go; a dead
   * shim's is freed now.
   */
  open(staleAnswer: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    const missing: string[] = [];
    for (let k = 0; k < POOL_SLOTS; k++) {
      const st = lstatSync(this.fifo(k), { throwIfNoEntry: false });
      if (st?.isFIFO()) continue;
      if (st) rmSync(this.fifo(k), { force: true, recursive: true });
      missing.push(this.fifo(k));
    }
    if (missing.length > 0) {
      const r = spawnSync('mkfifo', ['-m', '600', ...missing], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      if (r.status !== 0) throw new Error(`cannot make the answer FIFOs in ${this.dir}: ${r.stderr?.trim() || r.error?.message || `mkfifo exit ${r.status}`}`);
    }
    for (let k = 0; k < POOL_SLOTS; k++) {
      const pid = this.claimant(k);
      if (pid === undefined) {
        this.freeIfEmptyAndOld(k);
        continue;
      }
      if (this.holds(pid, k)) {
        try {
          const fd = openSync(this.fifo(k), constants.O_WRONLY | constants.O_NONBLOCK);
          try { writeSync(fd, `${staleAnswer}\n`); } finally { closeSync(fd); }
        } catch {
          // it let go meanwhile
        }
        this.answered.set(k, pid);
      } else {
        this.free(k, pid);
      }
    }
    this.sweepSoon();
  }

  /** The pid in slot K's claim, if it holds a well-formed one. */
  claimant(slot: number): string | undefined {
    let text: string;
    try {
      text = readFileSync(this.claim(slot), 'utf8');
    } catch {
      return undefined;
    }
    return /^[1-9][0-9]{0,9}\n$/.test(text) ? text.slice(0, -1) : undefined;
  }

  /** When slot K's claim was made: its request is no older. */
  claimedAtMs(slot: number): number | undefined {
    return lstatSync(this.claim(slot), { throwIfNoEntry: false })?.mtimeMs;
  }

  /** A request for slot K is queued: the slot stays as it is until `done`. */
  queued(slot: number): void {
    this.busy.add(slot);
  }

  /** Slot K's request is over; `answeredTo`: the pid an answer went to, or undefined when none went. */
  done(slot: number, answeredTo: string | undefined): void {
    this.busy.delete(slot);
    if (answeredTo !== undefined) this.answered.set(slot, answeredTo);
    this.sweepSoon();
  }

  /** Stops the sweeps; the claims stay for the next watcher (`open`). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Sweeps off the answers' way — a shim lets go of its slot as it exits,
   * ~ms after its answer — and again, less and less often (up to each
   * second), while an answered slot is still held.
   */
  private sweepSoon(delayMs = 50): void {
    if (this.timer !== undefined && this.timerDelayMs <= delayMs) return;
    clearTimeout(this.timer);
    this.timerDelayMs = delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweep();
      if (this.answered.size > 0) this.sweepSoon(Math.min(delayMs * 2, 1000));
    }, delayMs);
    this.timer.unref();
  }

  /** Frees what no shim can still read from (see the top of this file). */
  sweep(): void {
    for (let k = 0; k < POOL_SLOTS; k++) {
      if (this.busy.has(k)) continue;
      const pid = this.claimant(k);
      const to = this.answered.get(k);
      if (pid === undefined || (to !== undefined && to !== pid)) {
        // Removed, or claimed anew after a free: nothing of ours to keep track of.
        this.answered.delete(k);
        if (pid === undefined) this.freeIfEmptyAndOld(k);
        continue;
      }
      if (to !== undefined ? !this.holds(pid, k) : !processExists(pid)) this.free(k, pid);
    }
  }

  /** Whether the shim PID has slot K's FIFO open as its answer fd. */
  private holds(pid: string, slot: number): boolean {
    try {
      const a = statSync(`/proc/${pid}/fd/${SHIM_ANSWER_FD}`);
      const b = statSync(this.fifo(slot));
      return a.dev === b.dev && a.ino === b.ino;
    } catch {
      return false;
    }
  }

  /** A claim holding no pid: freed once old enough that no shim can still be writing its pid into it. */
  private freeIfEmptyAndOld(slot: number): void {
    const at = this.claimedAtMs(slot);
    if (at !== undefined && Date.now() - at > EMPTY_CLAIM_MS && this.claimant(slot) === undefined) rmSync(this.claim(slot), { force: true });
  }

  private free(slot: number, pid: string): void {
    // Still the same claim: a shim may have claimed the slot anew between a read and here only after a free.
    if (this.claimant(slot) === pid) rmSync(this.claim(slot), { force: true });
    this.answered.delete(slot);
  }
}

function processExists(pid: string): boolean {
  return lstatSync(`/proc/${pid}`, { throwIfNoEntry: false }) !== undefined;
}

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * An exclusive lock held by a kernel flock(2) on `file`. Node cannot call
 * flock itself, so a tiny `flock FILE cat` child holds it: the lock is ours
 * once `cat` echoes our byte, and it is released when we close cat's stdin —
 * or by the kernel if we die, so a crashed hook never leaves a stale lock.
 * A long-lived process may hold it through a helper instead
 * (holdLocksThroughHelpers): the same flock, without a child per lock.
 */
export async function withLock<T>(file: string, fn: () => Promise<T>, timeoutSec = 60): Promise<T> {
  if (helpersOn) {
    let helper = helpers.get(file);
    if (!helper?.alive) helpers.set(file, (helper = new LockHelper(file)));
    const held = await helper.with(fn, timeoutSec);
    if (held.ran) return held.value as T;
    // The helper is gone (killed): this call takes the lock the usual way; the next starts a new helper.
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  closeSync(openSync(file, 'a', 0o600));
  const child = spawn('flock', ['--exclusive', '--wait', String(timeoutSec), file, 'cat'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const acquired = await new Promise<boolean>((resolve) => {
    child.stdout.once('data', () => resolve(true));
    child.on('error', () => resolve(false));
    void exited.then(() => resolve(false));
    child.stdin.write('L');
  });
  if (!acquired) {
    child.kill();
    throw new Error(`could not lock ${file} within ${timeoutSec} s: ${stderr.trim() || 'timed out'} (another virtwire process holds it, or util-linux's flock is missing)`);
  }
  try {
    return await fn();
  } finally {
    child.stdin.end();
    await exited;
  }
}

// ---- long-lived processes -------------------------------------------------

let helpersOn = false;
const helpers = new Map<string, LockHelper>();

/**
 * For a long-lived process (the watcher, which serves the qemu hook's
 * prepare): each lock file gets one small shell that takes and drops the
 * flock on request. Starting a `flock` child from a big Node process costs
 * it ~3 ms of its own time per lock; the shell's fork of `flock` costs far
 * less, off Node's thread. Off again (and the shells ended) with `false`.
 */
export function holdLocksThroughHelpers(on = true): void {
  helpersOn = on;
  if (on) return;
  for (const h of helpers.values()) h.close();
  helpers.clear();
}

/*
 * The helper holds the lock file open as fd 9 and runs `flock -w N 9` or
 * `flock -u 9` per request: the lock belongs to that open file, so it stays
 * after `flock` exits, and goes when the shell does (its stdin closed when
 * this process exits or dies). A fixed script; N is checked to be a number.
 */
const HELPER = [
  'exec 9>>"$1" || exit 1',
  'while IFS= read -r op; do',
  '  case "$op" in',
  '    L[0-9]*) if flock -w "${op#L}" 9; then echo locked; else echo failed; fi ;;',
  '    U) flock -u 9; echo unlocked ;;',
  '    *) exit 2 ;;',
  '  esac',
  'done',
].join('\n');

class LockHelper {
  alive = true;
  private readonly child: ChildProcessWithoutNullStreams;
  private queue: Promise<unknown> = Promise.resolve();
  private waiting: ((line: string | undefined) => void) | undefined;
  private buffered = '';

  constructor(private readonly file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    closeSync(openSync(file, 'a', 0o600));
    this.child = spawn('sh', ['-c', HELPER, 'virtwire-lock', file], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' } });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const w = this.waiting;
        this.waiting = undefined;
        w?.(line);
      }
    });
    this.child.stdin.on('error', () => undefined);
    this.child.on('error', () => undefined);
    this.child.on('close', () => {
      this.alive = false;
      const w = this.waiting;
      this.waiting = undefined;
      w?.(undefined);
    });
    // Never what keeps this process running, except while it waits for an answer (ask).
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  }

  /** One request, one line back (undefined: the helper is gone). This process stays up while it waits. */
  private ask(op: string): Promise<string | undefined> {
    if (!this.alive) return Promise.resolve(undefined);
    const stdout = this.child.stdout as unknown as { ref?: () => void; unref?: () => void };
    stdout.ref?.();
    return new Promise<string | undefined>((resolve) => {
      this.waiting = resolve;
      this.child.stdin.write(`${op}\n`);
    }).finally(() => stdout.unref?.());
  }

  /** Runs fn holding the lock; `ran: false` when the helper is gone before fn could run. One holder at a time in this process. */
  with<T>(fn: () => Promise<T>, timeoutSec: number): Promise<{ ran: boolean; value?: T }> {
    if (!Number.isInteger(timeoutSec) || timeoutSec < 0) throw new Error(`lock timeout must be whole seconds, got ${timeoutSec}`);
    const turn = this.queue.then(async () => {
      const got = await this.ask(`L${timeoutSec}`);
      if (got === undefined) return { ran: false };
      if (got !== 'locked') throw new Error(`could not lock ${this.file} within ${timeoutSec} s: timed out (another virtwire process holds it)`);
      try {
        return { ran: true, value: await fn() };
      } finally {
        await this.ask('U');
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  close(): void {
    this.alive = false;
    this.child.stdin.end();
  }
}

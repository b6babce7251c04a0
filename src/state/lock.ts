import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
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
    const held = await helperFor(file).with(fn, timeoutSec);
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

/**
 * Starts taking `file`'s lock now, for a withLock on it that is coming: the
 * watcher takes the ledger lock as a prepare request arrives, while it
 * parses the domain and plans it (a helper's round trip took 0.4–6 ms of a
 * served start here). The next withLock on `file` in this process runs
 * under it. Returns what drops it if none came (a VM nothing concerns):
 * call it once done, either way. Only with helpers (holdLocksThroughHelpers),
 * when nothing else of this process waits for or holds the lock; otherwise
 * it does nothing, and withLock takes the lock as usual.
 */
export function lockAhead(file: string, timeoutSec = 60): () => Promise<void> {
  if (!helpersOn) return () => Promise.resolve();
  const h = helperFor(file);
  return h.takeAhead(timeoutSec) ? () => h.dropAhead() : () => Promise.resolve();
}

/** The file's live helper, a new one if it has none or it died. */
function helperFor(file: string): LockHelper {
  let helper = helpers.get(file);
  if (!helper?.alive) helpers.set(file, (helper = new LockHelper(file, helperKind)));
  return helper;
}

// ---- long-lived processes -------------------------------------------------

let helpersOn = false;
const helpers = new Map<string, LockHelper>();
export type HelperKind = 'perl' | 'sh';
let helperKind: HelperKind = 'sh';
const PERL = '/usr/bin/perl';

/**
 * For a long-lived process (the watcher, which serves the qemu hook's
 * prepare): each lock file gets one small helper that takes and drops the
 * flock on request. Starting a `flock` child from a big Node process costs
 * it ~3 ms of its own time per lock. The helper is Perl where it is there
 * (Debian's perl-base is Essential): its flock(2) is a call, not a process,
 * so taking and dropping the lock costs no fork at all; else a shell that
 * forks `flock` each time, still off Node's thread. Off again (and the
 * helpers ended) with `false`.
 */
export function holdLocksThroughHelpers(on = true, kind: HelperKind = existsSync(PERL) ? 'perl' : 'sh'): void {
  helpersOn = on;
  helperKind = kind;
  if (on) return;
  for (const h of helpers.values()) h.close();
  helpers.clear();
}

/*
 * Both helpers hold the lock file open and answer one line per request line:
 * "L<N>" takes the lock waiting at most N seconds ("locked" or "failed"),
 * "U" drops it ("unlocked"). The lock belongs to that open file, so it goes
 * when the helper does (its stdin closed when this process exits or dies).
 * Fixed scripts: the file is an argument, N is checked to be a number.
 *
 * Perl: flock(2) itself; a wait is bounded by alarm(2), whose signal
 * interrupts the call (Perl's handlers are not SA_RESTART).
 */
const PERL_HELPER = [
  'use Fcntl qw(:flock);',
  'open(my $fh, ">>", $ARGV[1]) or exit 1;',
  '$| = 1;',
  'while (my $op = <STDIN>) {',
  '  chomp $op;',
  '  if ($op =~ /^L([0-9]+)$/) {',
  '    my $wait = $1;',
  '    my $ok = $wait == 0 ? flock($fh, LOCK_EX | LOCK_NB) : eval {',
  '      local $SIG{ALRM} = sub { die "timeout\\n" };',
  '      alarm($wait);',
  '      my $r = flock($fh, LOCK_EX);',
  '      alarm(0);',
  '      $r;',
  '    };',
  '    alarm(0);',
  '    print($ok ? "locked\\n" : "failed\\n");',
  '  } elsif ($op eq "U") {',
  '    flock($fh, LOCK_UN);',
  '    print("unlocked\\n");',
  '  } else {',
  '    exit 2;',
  '  }',
  '}',
].join('\n');

/*
 * The shell holds the lock file open as fd 9 and runs `flock -w N 9` or
 * `flock -u 9` per request: the lock stays after `flock` exits.
 */
const SH_HELPER = [
  'exec 9>>"$1" || exit 1',
  'while IFS= read -r op; do',
  '  case "$op" in',
  '    L[0-9]*) if flock -w "${op#L}" 9; then echo locked; else echo failed; fi ;;',
  '    U) flock -u 9; echo unlocked ;;',
  '    *) exit 2 ;;',
  '  esac',
  'done',
].join('\n');

function checkTimeout(timeoutSec: number): void {
  if (!Number.isInteger(timeoutSec) || timeoutSec < 0) throw new Error(`lock timeout must be whole seconds, got ${timeoutSec}`);
}

class LockHelper {
  alive = true;
  private readonly child: ChildProcessWithoutNullStreams;
  private queue: Promise<unknown> = Promise.resolve();
  /** Turns queued or running (with, dropAhead): a lock taken ahead is sent only when there are none. */
  private turns = 0;
  /** The answer to an "L" sent before its holder came (takeAhead): the next turn's. */
  private ahead: Promise<string | undefined> | undefined;
  private waiting: ((line: string | undefined) => void) | undefined;
  private buffered = '';

  constructor(private readonly file: string, kind: HelperKind) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    closeSync(openSync(file, 'a', 0o600));
    // The last two arguments name it (virtwire-lock FILE) for ps, and for the tests.
    const argv = kind === 'perl' ? [PERL, '-e', PERL_HELPER, 'virtwire-lock', file] : ['sh', '-c', SH_HELPER, 'virtwire-lock', file];
    this.child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' } });
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
    checkTimeout(timeoutSec);
    return this.turn(async () => {
      const ahead = this.ahead;
      this.ahead = undefined;
      const got = await (ahead ?? this.ask(`L${timeoutSec}`));
      if (got === undefined) return { ran: false };
      if (got !== 'locked') throw new Error(`could not lock ${this.file} within ${timeoutSec} s: timed out (another virtwire process holds it)`);
      try {
        return { ran: true, value: await fn() };
      } finally {
        await this.ask('U');
      }
    });
  }

  /** Sends "L" now, for the next turn, when no turn is queued or running; false when it did not. */
  takeAhead(timeoutSec: number): boolean {
    checkTimeout(timeoutSec);
    if (this.ahead || this.turns > 0 || !this.alive) return false;
    this.ahead = this.ask(`L${timeoutSec}`);
    return true;
  }

  /** Drops a lock taken ahead that no turn took: a turn of its own, so no two requests are ever in flight. */
  dropAhead(): Promise<void> {
    return this.turn(async () => {
      const ahead = this.ahead;
      this.ahead = undefined;
      if ((await ahead) === 'locked') await this.ask('U');
    });
  }

  private turn<T>(job: () => Promise<T>): Promise<T> {
    this.turns++;
    const run = this.queue.then(job).finally(() => { this.turns--; });
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.alive = false;
    this.child.stdin.end();
  }
}

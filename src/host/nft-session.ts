// One long-lived `nft -i` for the watcher, fed one `include "FILE"` at a time
// (a script given as text is written to the session's scratch file first).
//
// Why not `nft -f FILE` per change: a transaction that deletes anything (a
// VM's teardown deletes its elements) leaves nf_tables work to free them
// after an RCU grace period, and the kernel flushes that work — waits out the
// grace period — when a netfilter netlink socket closes (NETLINK_URELEASE).
// So every short-lived nft that deletes waits ~12 ms here at its exit, more
// than the rest of its run. A socket that stays open never waits: the
// kernel's worker frees the elements in the background. And a start's
// additions cost no process: ~0.4 ms for one element here, against ~4 ms
// for an nft process.
//
// Each interactive line is one nft run: an included file is one transaction.
// Success prints nothing; errors go to stderr (merged into stdout here). The
// end of a run is marked by the next line, a list of a table that does not
// exist, named by this session and a counter: nft echoes that command back in
// its error, which nothing else prints. A `list` line is read the same way:
// its output is the listing, with the handle of each chain and rule (nft
// runs with -a): how a start checks libvirt's chains, and moves virtwire's
// accept in them, with no process (host/libvirt-firewall.ts
// placeAcceptsThroughSession).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export interface NftSessionResult {
  ok: boolean;
  /** nft's error output for the included file ('' when ok). */
  errors: string;
}

export interface NftListResult {
  ok: boolean;
  /** The listing, or nft's error. */
  output: string;
}

// HOME: `nft -i` keeps its command history in $HOME/.nft.history (in / with no
// HOME); under /dev/null it can write none.
const ENV = { LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/dev/null' };
/** What `include` can take here: an absolute path nft's parser reads as one string. */
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]+$/;
/** What `list` runs: a table or chain named by identifiers. */
const LIST_COMMAND = /^list (?:table|chain) (?:ip|ip6|inet) [A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)?$/;

interface Pending {
  child: ChildProcess;
  sentinel: string;
  /** Called with nft's output for the run, or undefined when nft went away. */
  done: (output: string | undefined) => void;
}

export class NftSession {
  private child: ChildProcess | undefined;
  private output = '';
  private readonly id = randomBytes(4).toString('hex');
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private pending: Pending | undefined;

  /**
   * `scratch`: the file `run` writes each script to (root's, in virtwire's
   * run directory). `nft`: how to run nft, ['nft'] on the host (a test runs
   * it in its netns); the session adds `-a -i`.
   */
  constructor(private readonly scratch: string, private readonly nft: readonly string[] = ['nft']) {}

  /** Runs FILE as one nft transaction; one at a time, in call order. */
  include(file: string, timeoutMs = 15_000): Promise<NftSessionResult> {
    if (!SAFE_PATH.test(file)) return Promise.reject(new Error(`nft session: not a path it includes: ${JSON.stringify(file)}`));
    return this.enqueue(() => this.runFile(file, timeoutMs));
  }

  /**
   * nft's text listing of one table or chain (`list table ip filter`), in call
   * order with the runs: `ok` false when nft answered with an error (`output`
   * then holds it: "No such file or directory" for a table or chain that is
   * not there). Only a plain `list` of names: nothing else goes in the line.
   */
  list(command: string, timeoutMs = 15_000): Promise<NftListResult> {
    if (!LIST_COMMAND.test(command)) return Promise.reject(new Error(`nft session: not a listing it runs: ${JSON.stringify(command)}`));
    return this.enqueue(async () => {
      const output = await this.runLine(command, command, timeoutMs);
      return { ok: !/^Error: /m.test(output), output };
    });
  }

  /** Runs a script as one nft transaction (as `nft -f -` would), through the scratch file; in call order with include. */
  run(script: string, timeoutMs = 15_000): Promise<NftSessionResult> {
    if (!SAFE_PATH.test(this.scratch)) return Promise.reject(new Error(`nft session: not a path it includes: ${JSON.stringify(this.scratch)}`));
    return this.enqueue(() => {
      writeFileSync(this.scratch, script, { mode: 0o600 });
      return this.runFile(this.scratch, timeoutMs);
    });
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the session (its nft exits on end of input). */
  close(): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin?.end();
  }

  private async runFile(file: string, timeoutMs: number): Promise<NftSessionResult> {
    const errors = (await this.runLine(`include "${file}"`, file, timeoutMs)).trim();
    return { ok: errors === '', errors };
  }

  /** One interactive line, then the sentinel: resolves with nft's output for the line. */
  private runLine(line: string, what: string, timeoutMs: number): Promise<string> {
    const child = this.alive();
    const sentinel = `vw-end-${this.id}-${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        child.kill('SIGKILL');
        reject(new Error(`nft session: no end of run within ${timeoutMs} ms (${what})`));
      }, timeoutMs);
      this.pending = {
        child,
        sentinel,
        done: (output) => {
          clearTimeout(timer);
          this.pending = undefined;
          if (output === undefined) reject(new Error(`nft session: nft exited (${what})`));
          else resolve(output);
        },
      };
      child.stdin?.write(`${line}\nlist table inet ${sentinel}\n`);
    });
  }

  /**
   * The sentinel's error block ("Error: …", the echoed command, a caret
   * line) ends the run: what came before it is the run's own output.
   */
  private consume(): void {
    const p = this.pending;
    if (!p) return;
    const echoLine = `list table inet ${p.sentinel}\n`;
    const echo = this.output.indexOf(echoLine);
    if (echo < 0) return;
    const caretEnd = this.output.indexOf('\n', echo + echoLine.length);
    if (caretEnd < 0) return;
    const before = this.output.slice(0, echo);
    this.output = this.output.slice(caretEnd + 1);
    const errorLine = before.lastIndexOf('Error:');
    p.done(errorLine < 0 ? before : before.slice(0, before.lastIndexOf('\n', errorLine) + 1));
  }

  private alive(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    this.output = '';
    // stderr into stdout, in order: a fixed script, nft's argv passed as arguments.
    const child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', ...this.nft, '-a', '-i'], { env: ENV, stdio: ['pipe', 'pipe', 'ignore'] });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      this.output += d;
      this.consume();
    });
    child.stdin?.on('error', () => undefined);
    const gone = (): void => {
      if (this.child === child) this.child = undefined;
      if (this.pending?.child === child) this.pending.done(undefined);
    };
    child.on('error', gone);
    child.on('close', gone);
    this.child = child;
    return child;
  }
}

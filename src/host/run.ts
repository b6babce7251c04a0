import { spawn } from 'node:child_process';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program with an argv (never a shell string), bounded in time. The
 * one place virtwire starts host commands, so tests can record them.
 */
export type Runner = (argv: readonly string[], opts?: { input?: string; timeoutMs?: number; env?: Readonly<Record<string, string>> }) => Promise<RunResult>;

const ENV = { LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

/**
 * node:child_process directly, not execa: the hooks run this several times
 * per VM start, and execa is most of what a hook bundle would load.
 * The environment is only LC_ALL and PATH (and `env`, for drop-ins); a command that outlives its time
 * is killed (SIGKILL) and reported as timed out.
 */
export const runCommand: Runner = (argv, opts = {}) => new Promise((resolve) => {
  const [file, ...args] = argv;
  if (!file) throw new Error('runCommand: empty argv');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(file, args, { env: { ...ENV, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let timedOut = false;
  let failure: NodeJS.ErrnoException | undefined;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  // A command that exits without reading its input (EPIPE) is judged by its exit status.
  child.stdin.on('error', () => undefined);
  child.on('error', (e: NodeJS.ErrnoException) => { failure = e; });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    const stdout = Buffer.concat(out).toString('utf8');
    const stderr = Buffer.concat(err).toString('utf8');
    if (failure || timedOut || code === null) {
      const why = timedOut ? `timed out after ${timeoutMs} ms` : failure?.code === 'ENOENT' ? 'not installed' : failure ? failure.message : `killed by ${signal ?? 'a signal'}`;
      resolve({ exitCode: 127, stdout, stderr: `${file}: ${why}` });
      return;
    }
    resolve({ exitCode: code, stdout, stderr });
  });
  child.stdin.end(opts.input ?? '');
});

/** Runs and throws with the command's own stderr when it fails. */
export async function mustRun(run: Runner, argv: readonly string[], input?: string): Promise<string> {
  const r = await run(argv, { input });
  if (r.exitCode !== 0) {
    throw new Error(`${argv.slice(0, 3).join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
  }
  return r.stdout;
}

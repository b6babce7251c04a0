import { execa } from 'execa';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program with an argv (never a shell string), bounded in time. The
 * one place virtwire starts host commands, so tests can record them.
 */
export type Runner = (argv: readonly string[], opts?: { input?: string; timeoutMs?: number }) => Promise<RunResult>;

export const runCommand: Runner = async (argv, opts = {}) => {
  const [file, ...args] = argv;
  if (!file) throw new Error('runCommand: empty argv');
  const r = await execa(file, args, {
    input: opts.input ?? '',
    timeout: opts.timeoutMs ?? 30_000,
    reject: false,
    env: { LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    extendEnv: false,
    stripFinalNewline: false,
  });
  if (r.failed && r.exitCode === undefined) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 30_000} ms` : (r as { code?: string }).code === 'ENOENT' ? 'not installed' : r.shortMessage;
    return { exitCode: 127, stdout: String(r.stdout ?? ''), stderr: `${file}: ${why}` };
  }
  return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
};

/** Runs and throws with the command's own stderr when it fails. */
export async function mustRun(run: Runner, argv: readonly string[], input?: string): Promise<string> {
  const r = await run(argv, { input });
  if (r.exitCode !== 0) {
    throw new Error(`${argv.slice(0, 3).join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
  }
  return r.stdout;
}

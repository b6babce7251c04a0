// Runs a hook as libvirt does: its input on an anonymous pipe (Node's stdio
// 'pipe' is a socketpair, which the qemu shim's served prepare tells apart).
import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Spawns argv with `input` on an anonymous pipe as its stdin: dash writes it
 * as a here-document, then execs argv, so the child's pid is argv's. `input`
 * gets a final newline if it has none, and may be up to 128 KiB (it goes as
 * one argument). No environment unless `env` gives one.
 */
export function spawnOnPipe(argv: readonly string[], input: string, opts: { env?: NodeJS.ProcessEnv; stdout?: 'ignore' | 'pipe' } = {}): ChildProcess {
  const body = input.endsWith('\n') ? input.slice(0, -1) : input;
  return spawn('dash', ['-c', 'vw_in=$1; shift; exec "$@" <<VW_EOF\n$vw_in\nVW_EOF\n', 'dash', body, ...argv], { env: opts.env ?? {}, stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'] });
}

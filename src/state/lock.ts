import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * An exclusive lock held by a kernel flock(2) on `file`. Node cannot call
 * flock itself, so a tiny `flock FILE cat` child holds it: the lock is ours
 * once `cat` echoes our byte, and it is released when we close cat's stdin —
 * or by the kernel if we die, so a crashed hook never leaves a stale lock.
 */
export async function withLock<T>(file: string, fn: () => Promise<T>, timeoutSec = 60): Promise<T> {
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

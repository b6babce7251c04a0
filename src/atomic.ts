import { mkdirSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { UserError } from './errors.js';

// Files replaced whole: the ledger, the allocation store, the watcher's state, caches.

/**
 * Write to a temp file, fsync, rename: readers see the old or the new file,
 * never half of one. A failed write (a full disk) leaves no temp file and
 * says so in one line naming `what` the file is (and `df -h <mount>` on ENOSPC).
 */
export function writeJsonAtomic(file: string, value: unknown, what: string, mount: string): void {
  writeTextAtomic(file, `${JSON.stringify(value, null, 1)}\n`, what, mount);
}

/** writeJsonAtomic for text. */
export function writeTextAtomic(file: string, text: string, what: string, mount: string): void {
  const dir = file.slice(0, file.lastIndexOf('/'));
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(tmp, text, { mode: 0o644 });
    const fd = openSync(tmp, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`cannot write ${what} ${file}: ${code ?? (err as Error).message}${code === 'ENOSPC' ? ` (no space left on the device holding it; free space there: df -h ${mount})` : ''}`);
  }
}

import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, renameSync, writeSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { oneLine } from './errors.js';

const MAX_BYTES = 1024 * 1024;
const KEEP = 3;
/** Linux's O_CLOEXEC (Node's fs.constants lacks it; libuv sets it anyway). */
const O_CLOEXEC = 0o2000000;
/**
 * Never through a symlink (O_NOFOLLOW: a link planted at the log's path must
 * not make root append to its target), never waiting on a FIFO (O_NONBLOCK),
 * every line one append (O_APPEND) so concurrent hooks never interleave.
 */
const APPEND_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC;

export interface LogOptions {
  /** Rotate at this size (default 1 MiB). */
  maxBytes?: number;
  /** Old files kept: FILE.1 … FILE.keep (default 3). */
  keep?: number;
}

/**
 * Appends one line per action to the log file. Never throws: logging must
 * not break a hook. A log path that is not a regular file owned by us (root)
 * with one link — a symlink, a hard link to another file, a FIFO — is not
 * written at all. Writers only append; rotate() is separate and must run
 * under the ledger lock, so that only one process rotates at a time.
 */
export class Log {
  private readonly maxBytes: number;
  private readonly keep: number;

  constructor(private readonly file: string, private readonly tag: string, opts: LogOptions = {}) {
    this.maxBytes = opts.maxBytes ?? MAX_BYTES;
    this.keep = opts.keep ?? KEEP;
  }

  info(message: string): void {
    this.write('info', message);
  }

  /** Something works, but not as the admin may think (e.g. a stale record): worth reading. */
  warn(message: string): void {
    this.write('warning', message);
  }

  error(message: string): void {
    this.write('error', message);
  }

  private write(level: string, message: string): void {
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o755 });
      const fd = openSync(this.file, APPEND_FLAGS, 0o640);
      try {
        if (!this.isOurs(fstatSync(fd))) return;
        writeSync(fd, `${new Date().toISOString()} ${this.tag}[${process.pid}] ${level}: ${oneLine(message)}\n`);
      } finally {
        closeSync(fd);
      }
    } catch {
      // Logging is best effort.
    }
  }

  /**
   * Moves FILE to FILE.1 (FILE.1 to FILE.2 …, dropping the oldest) once it
   * reached the size limit. Call it while holding the ledger lock
   * (withLock(ledger.lockFile, …)): two processes rotating at once would
   * shift the files twice and lose one. Never throws.
   */
  rotate(): void {
    try {
      const st = lstatSync(this.file);
      if (!this.isOurs(st) || st.size < this.maxBytes) return;
      for (let i = this.keep - 1; i >= 1; i--) {
        try { renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`); } catch { /* absent */ }
      }
      renameSync(this.file, `${this.file}.1`);
    } catch {
      // Absent, or not ours: nothing to rotate.
    }
  }

  private isOurs(st: Stats): boolean {
    return st.isFile() && st.nlink === 1 && st.uid === (process.getuid?.() ?? 0);
  }
}

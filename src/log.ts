import { appendFileSync, renameSync, statSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { oneLine } from './errors.js';

const MAX_BYTES = 1024 * 1024;
const KEEP = 3;

/**
 * Appends one line per action to the log file, rotating at 1 MiB (keeps 3
 * old files). Never throws: logging must not break a hook.
 */
export class Log {
  constructor(private readonly file: string, private readonly tag: string) {}

  info(message: string): void {
    this.write('info', message);
  }

  error(message: string): void {
    this.write('error', message);
  }

  private write(level: string, message: string): void {
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      this.rotate();
      appendFileSync(this.file, `${new Date().toISOString()} ${this.tag}[${process.pid}] ${level}: ${oneLine(message)}\n`, { mode: 0o640 });
    } catch {
      // Logging is best effort.
    }
  }

  private rotate(): void {
    let size = 0;
    try {
      size = statSync(this.file).size;
    } catch {
      return;
    }
    if (size < MAX_BYTES) return;
    for (let i = KEEP - 1; i >= 1; i--) {
      try { renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`); } catch { /* absent */ }
    }
    renameSync(this.file, `${this.file}.1`);
  }
}

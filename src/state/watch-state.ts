// The watcher's own state, for `virtwire status`: whether it runs, whether
// it is connected to libvirt, and when it last reconciled everything.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../atomic.js';

export interface WatchState {
  pid: number;
  startedAt: string;
  connected: boolean;
  lastReconcile?: string;
}

const FILE = 'watch.json';

export function writeWatchState(runDir: string, s: WatchState): void {
  try {
    writeJsonAtomic(join(runDir, FILE), s, "the watcher's state", runDir);
  } catch {
    // Status only: the watcher's work does not depend on it.
  }
}

/** The watcher's state if one runs now (its pid alive and a virtwire process), else undefined. */
export function readWatchState(runDir: string): WatchState | undefined {
  let s: WatchState;
  try {
    s = JSON.parse(readFileSync(join(runDir, FILE), 'utf8')) as WatchState;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(s.pid) || s.pid <= 0) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${s.pid}/cmdline`, 'utf8');
    return cmdline.includes('virtwire') ? s : undefined;
  } catch {
    return undefined;
  }
}

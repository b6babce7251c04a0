import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedForward } from '../plan/types.js';
import type { AcceptTarget } from '../host/libvirt-firewall.js';

export const LEDGER_SCHEMA = 1;
export const NAT_BINDING_VERSION = 1;

/**
 * What virtwire applied (or reserved, between prepare and start) for one VM.
 * Cleanup works from this alone, even after templates change or vanish.
 */
export interface VmEntry {
  schema: number;
  uuid: string;
  name: string;
  state: 'reserved' | 'applied';
  binding: 'nat';
  bindingVersion: number;
  forwards: ResolvedForward[];
  updatedAt: string;
}

/** Host-wide objects virtwire created and shares between VMs. */
export interface HostEntry {
  schema: number;
  table: boolean;
  mark: number | null;
  accepts: AcceptTarget[];
  updatedAt: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Files under the run dir (/run/virtwire): vms/<uuid>.json, host.json, lock. Callers hold the lock. */
export class Ledger {
  constructor(readonly dir: string) {}

  get lockFile(): string {
    return join(this.dir, 'lock');
  }

  private vmFile(uuid: string): string {
    if (!UUID.test(uuid)) throw new Error(`invalid uuid ${JSON.stringify(uuid)}`);
    return join(this.dir, 'vms', `${uuid}.json`);
  }

  /** Cheap check for hooks with nothing to do. */
  hasVm(uuid: string): boolean {
    return existsSync(this.vmFile(uuid));
  }

  getVm(uuid: string): VmEntry | undefined {
    return readJson<VmEntry>(this.vmFile(uuid));
  }

  listVms(): VmEntry[] {
    let names: string[];
    try {
      names = readdirSync(join(this.dir, 'vms'));
    } catch {
      return [];
    }
    return names.filter((n) => n.endsWith('.json') && UUID.test(n.slice(0, -5)))
      .map((n) => readJson<VmEntry>(join(this.dir, 'vms', n)))
      .filter((e): e is VmEntry => e !== undefined)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  putVm(entry: VmEntry): void {
    writeAtomic(this.vmFile(entry.uuid), entry);
  }

  removeVm(uuid: string): boolean {
    const f = this.vmFile(uuid);
    if (!existsSync(f)) return false;
    rmSync(f, { force: true });
    return true;
  }

  getHost(): HostEntry {
    return readJson<HostEntry>(join(this.dir, 'host.json')) ?? { schema: LEDGER_SCHEMA, table: false, mark: null, accepts: [], updatedAt: '' };
  }

  putHost(entry: HostEntry): void {
    writeAtomic(join(this.dir, 'host.json'), entry);
  }
}

function readJson<T>(file: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    // Never happens with atomic writes; a hand-edited file must not crash a hook.
    return undefined;
  }
}

/** Write to a temp file, fsync, rename: readers see the old or the new file, never half of one. */
function writeAtomic(file: string, value: unknown): void {
  const dir = file.slice(0, file.lastIndexOf('/'));
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 1)}\n`, { mode: 0o644 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
}

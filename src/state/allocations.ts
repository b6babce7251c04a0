// The define-time allocation store: host ports `virtwire apply` allocated to
// VMs' NICs from forwards.autoPorts, and the DHCP host reservations it made.
// One JSON file in the persistent state dir (/var/lib/virtwire), replaced
// atomically: the CLI writes it under the reservation lock, hooks read it
// without one. A file that cannot be read is set aside, never emptied.
import { readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PortRange } from '../model/ports.js';
import { MAC, UUID } from '../model/ids.js';
import { writeJsonAtomic } from '../atomic.js';

export const ALLOCATIONS_SCHEMA = 1;

/** A run of host ports allocated to one NIC, under the key its binding chose (`auto:tcp:80`, `block`). */
export interface PortAllocation {
  key: string;
  ports: PortRange;
}

/** A DHCP host reservation `virtwire apply` made: the only kind a release deletes. */
/** A DHCP host reservation apply made: IPv4 `<host mac ip>`, or IPv6 `<host id name ip>` (for the NIC `mac`). */
export interface MadeReservation {
  network: string;
  mac: string;
  ip: string;
  /** IPv6 only: the DHCPv6 client id (DUID) and the name it was made under. */
  id?: string;
  name?: string;
}

export interface VmAllocations {
  name: string;
  /** By NIC MAC (lower case). */
  nics: Record<string, PortAllocation[]>;
  reservations: MadeReservation[];
  updatedAt: string;
}

export interface Allocations {
  schema: number;
  /** By domain UUID. */
  vms: Record<string, VmAllocations>;
}

export type StoreRead = { kind: 'ok'; data: Allocations } | { kind: 'corrupt'; reason: string };

export function emptyAllocations(): Allocations {
  return { schema: ALLOCATIONS_SCHEMA, vms: {} };
}

export class AllocationStore {
  constructor(readonly dir: string) {}

  get file(): string {
    return join(this.dir, 'allocations.json');
  }

  /** Without a lock: the file is replaced atomically. An absent file is an empty store. */
  read(): StoreRead {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'ok', data: emptyAllocations() };
      return { kind: 'corrupt', reason: `unreadable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return { kind: 'corrupt', reason: 'not valid JSON' };
    }
    const problem = allocationsProblem(v);
    return problem ? { kind: 'corrupt', reason: problem } : { kind: 'ok', data: v as Allocations };
  }

  /**
   * For a writer (the CLI, under the reservation lock): the store, with a
   * file that cannot be read moved aside to `allocations.json.corrupt-<ms>`
   * and said so in `setAside` (the caller reports it). Then the store is empty.
   */
  readForUpdate(): { data: Allocations; setAside?: string } {
    const r = this.read();
    if (r.kind === 'ok') return { data: r.data };
    let to = `${this.file}.corrupt-${Date.now()}`;
    while (existsSync(to)) to += '-1';
    renameSync(this.file, to);
    return { data: emptyAllocations(), setAside: `${this.file} was unreadable (${r.reason}): set aside as ${to}; allocations start afresh` };
  }

  write(data: Allocations): void {
    writeJsonAtomic(this.file, data, "virtwire's allocation store", '/var/lib');
  }
}

/** The ports allocated to a VM's NIC under `key`, if any. */
export function allocatedPorts(data: Allocations, uuid: string, mac: string, key: string): PortRange | undefined {
  const vm = own(data.vms, uuid);
  return vm && own(vm.nics, mac)?.find((a) => a.key === key)?.ports;
}

/** A record's own property (never one inherited from Object.prototype). */
export function own<T>(rec: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(rec, key) ? rec[key] : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;

/** Shape check: root's file, but a truncated or hand-edited one must not reach a hook's plan. */
function allocationsProblem(v: unknown): string | undefined {
  if (!isObject(v)) return 'not an object';
  if (v.schema !== ALLOCATIONS_SCHEMA) return `schema is not ${ALLOCATIONS_SCHEMA}`;
  if (!isObject(v.vms)) return 'no vms';
  for (const [uuid, vm] of Object.entries(v.vms)) {
    if (!UUID.test(uuid)) return `bad UUID ${JSON.stringify(uuid)}`;
    if (!isObject(vm) || typeof vm.name !== 'string' || typeof vm.updatedAt !== 'string' || !isObject(vm.nics) || !Array.isArray(vm.reservations)) return `bad entry for ${uuid}`;
    for (const [mac, list] of Object.entries(vm.nics)) {
      if (!MAC.test(mac) || !Array.isArray(list)) return `bad NIC ${JSON.stringify(mac)} of ${uuid}`;
      for (const a of list as unknown[]) {
        if (!isObject(a) || typeof a.key !== 'string' || !isObject(a.ports) || !isPort(a.ports.lo) || !isPort(a.ports.hi) || a.ports.lo > a.ports.hi) return `bad allocation of NIC ${mac} of ${uuid}`;
      }
    }
    for (const r of vm.reservations as unknown[]) {
      if (!isObject(r) || typeof r.network !== 'string' || typeof r.mac !== 'string' || !MAC.test(r.mac) || typeof r.ip !== 'string'
        || (r.id !== undefined && typeof r.id !== 'string') || (r.name !== undefined && typeof r.name !== 'string')) return `bad reservation of ${uuid}`;
    }
  }
  return undefined;
}

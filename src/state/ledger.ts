import { readFileSync, readdirSync, renameSync, rmSync, existsSync } from 'node:fs';
import { deepFrozen } from '../frozen.js';
import { join } from 'node:path';
import type { ResolvedForward } from '../model/forward.js';
import type { AcceptTarget, LinkObject, TapVlan, VfSettings } from '../model/host.js';
import { writeJsonAtomic, writeTextAtomic } from '../atomic.js';
import { UUID } from '../model/ids.js';

/** 2: one record per NIC. 1 (the port-forward release): one binding per VM, forwards flat; still read. */
export const LEDGER_SCHEMA = 2;

/** What virtwire applied for one NIC: which binding (and its version) did it, and what the host holds for it. */
export interface NicEntry {
  mac: string;
  /** The template that won the NIC (entries written before the define-time release have none). */
  template?: string;
  binding: string;
  bindingVersion: number;
  network?: string;
  forwards: ResolvedForward[];
  /** Host links the NIC needs while the VM runs (macvtap's VLAN sub-interface and host shim). */
  links?: LinkObject[];
  /** The VLAN qemu start sets on its tap (bridge binding where libvirt does not). */
  tapVlan?: TapVlan;
  /** The SR-IOV VF it holds: its settings are set at qemu start, and the VF reset when no VM holds it. */
  vf?: VfSettings;
  /** Its binding's drop-in executables (hooks.d/BINDING/{start,release}) and the environment they get. */
  dropin?: { hooks: Array<'start' | 'release'>; env: Record<string, string> };
}

/** Every VF a VM holds. */
export function entryVfs(e: Pick<VmEntry, 'nics'>): VfSettings[] {
  return e.nics.flatMap((n) => (n.vf ? [n.vf] : []));
}

/** Whether a VM's qemu `start` has work (a tap VLAN to set). */
export function entryHasStartWork(e: Pick<VmEntry, 'nics'>): boolean {
  return e.nics.some((n) => n.tapVlan !== undefined || n.vf !== undefined || n.dropin?.hooks.includes('start') === true);
}

/** Every host link a VM needs, all NICs together. */
export function entryLinks(e: Pick<VmEntry, 'nics'>): LinkObject[] {
  return e.nics.flatMap((n) => n.links ?? []);
}

/**
 * What virtwire applied (or reserved, inside prepare until nft has it) for one VM.
 * Cleanup works from this alone, even after templates change or vanish.
 */
export interface VmEntry {
  schema: number;
  uuid: string;
  name: string;
  state: 'reserved' | 'applied';
  nics: NicEntry[];
  updatedAt: string;
}

/** Every forward of a VM, all NICs together. */
export function entryForwards(e: Pick<VmEntry, 'nics'>): ResolvedForward[] {
  return e.nics.flatMap((n) => n.forwards);
}

/** A schema-1 entry (binding and forwards per VM) as a schema-2 one: its forwards grouped by the NIC each names. */
function fromSchema1(v: { binding?: unknown; bindingVersion?: unknown; forwards: ResolvedForward[] } & Omit<VmEntry, 'nics' | 'schema'>): VmEntry {
  const nics = new Map<string, NicEntry>();
  for (const f of v.forwards) {
    const n = nics.get(f.nic) ?? { mac: f.nic, binding: typeof v.binding === 'string' ? v.binding : 'nat', bindingVersion: typeof v.bindingVersion === 'number' ? v.bindingVersion : 1, network: f.network, forwards: [] };
    n.forwards.push(f);
    nics.set(f.nic, n);
  }
  return { schema: LEDGER_SCHEMA, uuid: v.uuid, name: v.name, state: v.state, nics: [...nics.values()], updatedAt: v.updatedAt };
}

/**
 * A host link virtwire keeps for the VMs that need it. `created`: virtwire
 * made it, so removes it once no VM needs it; a link that was there already
 * is used and never removed. Recorded before it is created, so a hook killed
 * in between still knows to remove it.
 */
export interface HeldLink {
  link: LinkObject;
  created: boolean;
}

/** Host-wide objects virtwire created and shares between VMs. */
export interface HostEntry {
  schema: number;
  table: boolean;
  mark: number | null;
  accepts: AcceptTarget[];
  /**
   * The table's layout (tableLayout: its chains, rules and mark) when it was
   * last written whole: while the live table is that, a VM's elements alone
   * may be added to it.
   */
  layout?: string;
  /** By link name; how many VMs use one is counted from their entries (entryLinks), never stored. */
  links?: Record<string, HeldLink>;
  /** VFs some VM held since their last reset, by "PF/INDEX": reset once no entry holds them. */
  vfs?: Record<string, VfSettings>;
  updatedAt: string;
}

/** A VM file that cannot be read as an entry. It is never dropped: set aside as `<uuid>.json.corrupt…` and reported. */
export interface CorruptEntry {
  uuid: string;
  /** Where it is now. */
  file: string;
  reason: string;
}

const CORRUPT = /^([0-9a-f-]{36})\.json\.corrupt(?:-\d+)?$/;

/**
 * Files under the run dir (/run/virtwire): vms/<uuid>.json, teardown/<uuid>.nft,
 * host.json, lock. Writers hold the lock.
 */
export class Ledger {
  constructor(readonly dir: string) {}

  get lockFile(): string {
    return join(this.dir, 'lock');
  }

  /**
   * Serializes `virtwire apply`'s DHCP reservations (two applies never hand
   * out one address). Not the ledger lock: a live net-update runs the network
   * hook, which takes the ledger lock while libvirt waits for it.
   */
  get reserveLockFile(): string {
    return join(this.dir, 'reserve.lock');
  }

  private get vmsDir(): string {
    return join(this.dir, 'vms');
  }

  private vmFile(uuid: string): string {
    if (!UUID.test(uuid)) throw new Error(`invalid uuid ${JSON.stringify(uuid)}`);
    return join(this.vmsDir, `${uuid}.json`);
  }

  /** Cheap check for hooks with nothing to do. */
  hasVm(uuid: string): boolean {
    return existsSync(this.vmFile(uuid));
  }

  getVm(uuid: string): VmEntry | undefined {
    const r = readEntry(this.vmFile(uuid), uuid);
    return typeof r === 'object' ? r : undefined;
  }

  /** Every readable entry, and the files that are not (still in place, or already set aside). */
  readVms(): { entries: VmEntry[]; corrupt: CorruptEntry[] } {
    const entries: VmEntry[] = [];
    const corrupt: CorruptEntry[] = [];
    const names = this.vmFileNames();
    forgetParsedBut(this.vmsDir, names);
    for (const n of names) {
      const file = join(this.vmsDir, n);
      const set = CORRUPT.exec(n);
      if (set) { corrupt.push({ uuid: set[1] as string, file, reason: 'set aside earlier' }); continue; }
      if (!n.endsWith('.json') || !UUID.test(n.slice(0, -5))) continue;
      const r = readEntry(file, n.slice(0, -5));
      if (typeof r === 'object') entries.push(r);
      else if (r !== 'gone') corrupt.push({ uuid: n.slice(0, -5), file, reason: r });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { entries, corrupt };
  }

  listVms(): VmEntry[] {
    return this.readVms().entries;
  }

  /**
   * Moves unreadable entries aside (`<uuid>.json.corrupt`), so they are kept
   * for the admin and never mistaken for a VM with no forwards. Returns every
   * corrupt file, including ones set aside before. Caller holds the lock.
   */
  setAsideCorrupt(): CorruptEntry[] {
    const out: CorruptEntry[] = [];
    for (const c of this.readVms().corrupt) {
      if (CORRUPT.test(c.file.slice(c.file.lastIndexOf('/') + 1))) { out.push(c); continue; }
      let to = `${c.file}.corrupt`;
      if (existsSync(to)) to = `${to}-${Date.now()}`;
      renameSync(c.file, to);
      out.push({ ...c, file: to });
    }
    return out;
  }

  /** Forgets set-aside copies for a VM once its entry is rebuilt. */
  dropCorrupt(uuid: string): void {
    for (const n of this.vmFileNames()) if (CORRUPT.exec(n)?.[1] === uuid) rmSync(join(this.vmsDir, n), { force: true });
  }

  private get teardownDir(): string {
    return join(this.dir, 'teardown');
  }

  /**
   * A VM's teardown script (nft-script.ts renderTeardown), which the qemu
   * hook shim runs at stopped/release with no Node: hooks/qemu reads these
   * paths too, keep them in step.
   */
  teardownFile(uuid: string): string {
    if (!UUID.test(uuid)) throw new Error(`invalid uuid ${JSON.stringify(uuid)}`);
    return join(this.teardownDir, `${uuid}.nft`);
  }

  hasTeardown(uuid: string): boolean {
    return existsSync(this.teardownFile(uuid));
  }

  /** Writes (atomically, only when it changed) or, for undefined, removes a VM's teardown script. */
  putTeardown(uuid: string, script: string | undefined): void {
    const file = this.teardownFile(uuid);
    if (script === undefined) { rmSync(file, { force: true }); return; }
    let now: string | undefined;
    try { now = readFileSync(file, 'utf8'); } catch { now = undefined; }
    if (now !== script) writeTextAtomic(file, script, "virtwire's ledger", '/run');
  }

  /**
   * A VM whose qemu `start` has work for Node (a tap VLAN): the shim runs
   * Node at `start` only when this marker exists (hooks/qemu reads the path).
   */
  startMarker(uuid: string): string {
    if (!UUID.test(uuid)) throw new Error(`invalid uuid ${JSON.stringify(uuid)}`);
    return join(this.dir, 'start', uuid);
  }

  putStartMarker(uuid: string, on: boolean): void {
    const file = this.startMarker(uuid);
    if (!on) { rmSync(file, { force: true }); return; }
    if (!existsSync(file)) writeTextAtomic(file, `virtwire: VM ${uuid} has work at qemu start\n`, "virtwire's ledger", '/run');
  }

  /** UUIDs with a start marker. */
  startMarkerUuids(): string[] {
    let names: string[];
    try { names = readdirSync(join(this.dir, 'start')); } catch { return []; }
    return names.filter((n) => UUID.test(n));
  }

  /** UUIDs with a teardown script. */
  teardownUuids(): string[] {
    let names: string[];
    try { names = readdirSync(this.teardownDir); } catch { return []; }
    return names.filter((n) => n.endsWith('.nft') && UUID.test(n.slice(0, -4))).map((n) => n.slice(0, -4));
  }

  putVm(entry: VmEntry): void {
    const file = this.vmFile(entry.uuid);
    // Compact: 200 forwards on a dual-stack network make ~90 KB so, ~160 KB indented, and a start
    // writes its entry twice.
    const text = `${JSON.stringify(entry)}\n`;
    writeTextAtomic(file, text, "virtwire's ledger", '/run');
    // As a read of this text would give it (the next read compares the text): one object fewer to parse.
    parsed.set(file, { text, entry: deepFrozen(entry) });
  }

  removeVm(uuid: string): boolean {
    const f = this.vmFile(uuid);
    if (!existsSync(f)) return false;
    rmSync(f, { force: true });
    return true;
  }

  getHost(): HostEntry {
    const h = readJson(join(this.dir, 'host.json'));
    return isHostEntry(h) ? h : { schema: LEDGER_SCHEMA, table: false, mark: null, accepts: [], updatedAt: '' };
  }

  putHost(entry: HostEntry): void {
    writeAtomic(join(this.dir, 'host.json'), entry);
  }

  private vmFileNames(): string[] {
    try {
      return readdirSync(this.vmsDir).sort();
    } catch {
      return [];
    }
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Entries parsed, by file, with the text they came from: a VM's start reads
 * its own fresh entry several times, and the watcher every running VM's on
 * every start. Parsing is most of a read (~1 ms for a 200-forward entry);
 * reading the bytes and comparing them is a small part of that, and never
 * hands out an entry the file no longer holds. One object is handed out
 * again and again, so it is frozen, all the way down: a caller that changed
 * it would change every later read (callers spread an entry into a new one).
 */
const parsed = new Map<string, { text: string; entry: VmEntry }>();

/** Drops parsed entries of `dir` whose files are gone. */
function forgetParsedBut(dir: string, names: readonly string[]): void {
  const present = new Set(names.map((n) => join(dir, n)));
  for (const file of parsed.keys()) if (file.startsWith(`${dir}/`) && !present.has(file)) parsed.delete(file);
}

/** The entry, 'gone' if the file vanished meanwhile, or why it is not an entry; parsed once per text of the file. */
function readEntry(file: string, uuid: string): VmEntry | 'gone' | string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    parsed.delete(file);
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : `unreadable: ${(err as Error).message}`;
  }
  const hit = parsed.get(file);
  if (hit?.text === text) return hit.entry;
  const r = entryOf(text, uuid);
  if (typeof r === 'object') parsed.set(file, { text, entry: deepFrozen(r) });
  else parsed.delete(file);
  return r;
}

function entryOf(text: string, uuid: string): VmEntry | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not valid JSON';
  }
  const problem = entryProblem(v, uuid);
  if (problem) return problem;
  const e = v as VmEntry & { forwards?: ResolvedForward[] };
  return Array.isArray(e.nics) ? e : fromSchema1(e as Parameters<typeof fromSchema1>[0]);
}

/** Shape check: a ledger file is root's, but a truncated or hand-edited one must not crash a hook. */
function entryProblem(v: unknown, uuid: string): string | undefined {
  if (typeof v !== 'object' || v === null) return 'not an object';
  const e = v as Partial<VmEntry>;
  if (e.uuid !== uuid) return 'uuid does not match the file name';
  if (typeof e.name !== 'string') return 'no name';
  if (e.state !== 'reserved' && e.state !== 'applied') return 'bad state';
  const isObjects = (a: unknown): boolean => Array.isArray(a) && a.every((x) => typeof x === 'object' && x !== null);
  const old = (v as { forwards?: unknown }).forwards;
  if (e.nics !== undefined) {
    if (!isObjects(e.nics) || !e.nics.every((n) => typeof n.mac === 'string' && typeof n.binding === 'string' && isObjects(n.forwards) && (n.links === undefined || isObjects(n.links)))) return 'bad nics';
  } else if (!isObjects(old)) return 'bad forwards';
  if (typeof e.updatedAt !== 'string') return 'no updatedAt';
  return undefined;
}

function isHostEntry(v: unknown): v is HostEntry {
  const h = v as Partial<HostEntry> | undefined;
  if (typeof h !== 'object' || h === null || typeof h.table !== 'boolean' || !Array.isArray(h.accepts)) return false;
  // Links are removed from what this records: a hand-edited or truncated record must not reach `ip`.
  const vfs = h.vfs;
  if (vfs !== undefined && (typeof vfs !== 'object' || vfs === null || !Object.entries(vfs).every(([k, v]) =>
    typeof v === 'object' && v !== null && typeof v.pf === 'string' && Number.isInteger(v.index) && k === `${v.pf}/${v.index}`))) return false;
  const links = h.links;
  if (links === undefined) return true;
  return typeof links === 'object' && links !== null && Object.entries(links).every(([name, held]) =>
    typeof held === 'object' && held !== null && typeof held.created === 'boolean' && typeof held.link === 'object' && held.link !== null && held.link.name === name);
}

function writeAtomic(file: string, value: unknown): void {
  writeJsonAtomic(file, value, "virtwire's ledger", '/run');
}

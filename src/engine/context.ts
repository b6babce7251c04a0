import { networkInterfaces } from 'node:os';
import type { Paths } from '../paths.js';
import type { Runner } from '../host/run.js';
import type { HostSocket } from '../host/listening.js';
import type { NftSession } from '../host/nft-session.js';
import { Ledger } from '../state/ledger.js';
import { Log } from '../log.js';
import type { NetworkInfo } from '../xml/network.js';
import { readLeases, readNetworkStatus, readRunning, type Lease, type Running, type RunningDomain } from '../host/libvirt-status.js';
import { loadConfig, DEFAULT_CONFIG } from '../policy/config.js';
import { UserError, errorMessage } from '../errors.js';
import { AllocationStore, allocatedPorts, type StoreRead } from '../state/allocations.js';
import type { PortRange } from '../model/ports.js';
import { rebuildCorrupt } from './reserve.js';
import type { DomainInfo } from '../xml/domain.js';

/** Everything a hook touches outside itself, so tests can point it at temp dirs and a recording runner. */
export interface HookContext {
  paths: Paths;
  run: Runner;
  ledger: Ledger;
  log: Log;
  /** The host's sockets that receive connections: read concurrently (see host/listening.ts), never failing. */
  hostSockets: () => Promise<HostSocket[]>;
  /** The host's own addresses (every interface of this network namespace). */
  hostAddresses: () => string[];
  /** The live network from libvirt's status file — never the libvirt API (the daemon is waiting for us). */
  network: (name: string) => NetworkInfo | undefined;
  /** Domains libvirt runs now, from its status files: their UUIDs (liveness: never by name) and the parsed domains. */
  running: () => Running;
  /** Just the UUIDs: the cheap read, for liveness. */
  runningUuids: () => Set<string>;
  /** DHCP leases on a live network. */
  leases: (network: string) => Lease[];
  /** The watcher's long-lived nft (host/nft-session.ts): nft scripts go through it when it is there. */
  nft?: NftSession;
  /** Host ports `virtwire apply` allocated to a VM's NIC under a key (the allocation store, read without a lock). */
  allocated: (uuid: string, mac: string, key: string) => PortRange | undefined;
}

export interface HostProbes {
  hostSockets: () => Promise<HostSocket[]>;
  hostAddresses?: () => string[];
}

export function makeContext(paths: Paths, run: Runner, probes: HostProbes, tag: string): HookContext {
  const log = new Log(paths.logFile, tag);
  const network = (name: string): NetworkInfo | undefined => readNetworkStatus(paths.libvirtRunDir, name);
  return {
    paths,
    run,
    ledger: new Ledger(paths.runDir),
    log,
    hostSockets: probes.hostSockets,
    hostAddresses: probes.hostAddresses ?? hostInterfaceAddresses,
    network,
    running: () => readRunning(paths.libvirtRunDir, true, (m) => log.error(m)),
    runningUuids: () => readRunning(paths.libvirtRunDir, false).uuids,
    leases: (name) => readLeases(paths.libvirtLibDir, network(name)?.bridge),
    allocated: allocationReader(paths.stateDir),
  };
}

/**
 * The context for one operation (a hook run, one apply of the watcher):
 * each network's status file read and parsed once, however many NICs,
 * forwards and checks ask for it — with 200 forwards the re-reads were most
 * of a start. Not for longer: a long-lived caller (the watcher) takes a new
 * one per operation, so it never plans from a network that changed since.
 */
export function forOneOperation(ctx: HookContext): HookContext {
  const networks = new Map<string, NetworkInfo | undefined>();
  const leases = new Map<string, Lease[]>();
  const network = (name: string): NetworkInfo | undefined => {
    if (!networks.has(name)) networks.set(name, ctx.network(name));
    return networks.get(name);
  };
  return {
    ...ctx,
    network,
    leases: (name) => {
      let l = leases.get(name);
      if (!l) leases.set(name, (l = readLeases(ctx.paths.libvirtLibDir, network(name)?.bridge)));
      return l;
    },
  };
}

/**
 * Reads the allocation store once, on first use (it is replaced atomically:
 * no lock). An unreadable store refuses what needs it, with the fix.
 */
export function allocationReader(stateDir: string): HookContext['allocated'] {
  let read: StoreRead | undefined;
  const store = new AllocationStore(stateDir);
  return (uuid, mac, key) => {
    read ??= store.read();
    if (read.kind === 'corrupt') {
      throw new UserError(`virtwire's allocation store ${store.file} is unreadable (${read.reason}); run: virtwire apply --all (it sets the file aside and allocates again)`);
    }
    return allocatedPorts(read.data, uuid, mac, key);
  };
}

/** Addresses of every interface in this network namespace (getifaddrs). */
export function hostInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.replace(/%.*$/, '')));
}

/**
 * The conntrack mark for operations that must not fail (stopped, release,
 * reconnect, network re-assert): a virtwire.yaml broken after the VM started
 * must not leave its forwards behind, so fall back to the mark in use.
 */
export function markForCleanup(ctx: HookContext): number {
  try {
    return loadConfig(ctx.paths.configFile).firewall.mark;
  } catch (err) {
    const inUse = ctx.ledger.getHost().mark ?? DEFAULT_CONFIG.firewall.mark;
    ctx.log.error(`${errorMessage(err)}; using the mark in use (0x${inUse.toString(16)}) to clean up`);
    return inUse;
  }
}

/**
 * Before a hook converges: rebuilds corrupt ledger entries of running VMs
 * (see engine rebuildCorrupt), so an unreadable file never silently drops
 * a running VM's forwards. `self` is a running VM whose live XML the hook
 * holds. Returns notes for the log. Caller holds the lock.
 */
export function recoverLedger(ctx: HookContext, runningUuids: ReadonlySet<string>, self?: DomainInfo): string[] {
  const domains = (): RunningDomain[] => [...ctx.running().domains.filter((d) => d.domain.uuid !== self?.uuid), ...(self ? [{ domain: self }] : [])];
  const r = rebuildCorrupt(ctx, domains, runningUuids);
  return [...r.notes, ...r.unresolved.map((u) => u.message)];
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Paths } from '../paths.js';
import type { Runner } from '../host/run.js';
import type { HostSocket } from '../host/listening.js';
import { Ledger } from '../state/ledger.js';
import { Log } from '../log.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import { loadConfig, DEFAULT_CONFIG } from '../policy/config.js';
import { errorMessage } from '../errors.js';

/** Everything a hook touches outside itself, so tests can point it at temp dirs and a recording runner. */
export interface HookContext {
  paths: Paths;
  run: Runner;
  ledger: Ledger;
  log: Log;
  hostSockets: () => HostSocket[];
  /** The live network from libvirt's status file — never the libvirt API (the daemon is waiting for us). */
  network: (name: string) => NetworkInfo | undefined;
}

export function makeContext(paths: Paths, run: Runner, hostSockets: () => HostSocket[], tag: string): HookContext {
  return {
    paths,
    run,
    ledger: new Ledger(paths.runDir),
    log: new Log(paths.logFile, tag),
    hostSockets,
    network: (name) => readNetworkStatus(paths.libvirtRunDir, name),
  };
}

export function readNetworkStatus(libvirtRunDir: string, name: string): NetworkInfo | undefined {
  if (!/^[^/\0]+$/.test(name) || name === '.' || name === '..') return undefined;
  let xml: string;
  try {
    xml = readFileSync(join(libvirtRunDir, 'network', `${name}.xml`), 'utf8');
  } catch {
    return undefined;
  }
  return parseNetwork(xml);
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

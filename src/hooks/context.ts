import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Paths } from '../paths.js';
import type { Runner } from '../host/run.js';
import type { HostSocket } from '../host/listening.js';
import { Ledger } from '../state/ledger.js';
import { Log } from '../log.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';

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

// Entry point of /etc/libvirt/hooks/network.d/virtwire. Thin: argv + stdin (the
// live network XML) → handler. Never fails the network: every error is logged
// and the exit status is 0 (entry.ts).
import { handleNetworkHook } from './network-handler.js';
import { makeContext } from '../engine/context.js';
import { guardProcess, runHook, type HookEntry } from './entry.js';
import { DEFAULT_PATHS } from '../paths.js';
import { runCommand } from '../host/run.js';
import { hostSockets } from '../host/listening.js';
import { Log } from '../log.js';
import { readAllStdin } from './stdin.js';

const TAG = 'network-hook';
const argv = process.argv.slice(2);
if (argv[1] !== 'started' && argv[1] !== 'updated') process.exit(0);
const entry: HookEntry = { driver: 'network', mayFail: () => false, handle: (ctx, a) => handleNetworkHook(ctx, a, readAllStdin) };
const deps = {
  fallbackLog: () => new Log(DEFAULT_PATHS.logFile, TAG),
  stderr: (line: string) => { process.stderr.write(`${line}\n`); },
};
guardProcess(entry, argv, deps);
// No top-level await: the hook bundles are CommonJS (build.mjs).
void runHook(entry, argv, { ...deps, makeContext: () => makeContext(DEFAULT_PATHS, runCommand, { hostSockets: () => hostSockets() }, TAG) })
  .then((code) => { process.exitCode = code; });

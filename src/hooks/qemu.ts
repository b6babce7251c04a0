// Entry point of /etc/libvirt/hooks/qemu.d/virtwire. Thin: argv + stdin → handler.
// Whatever fails here, only prepare, migrate and restore may exit non-zero (entry.ts).
import { handleQemuHook } from './qemu-handler.js';
import { makeContext } from '../engine/context.js';
import { guardProcess, qemuOpMayFail, runHook, type HookEntry } from './entry.js';
import { DEFAULT_PATHS } from '../paths.js';
import { runCommand } from '../host/run.js';
import { hostSockets } from '../host/listening.js';
import { Log } from '../log.js';
import { readAllStdin } from './stdin.js';
import { armNetworkHookUnlessServed } from './network-hook-guard.js';

const TAG = 'qemu-hook';
const argv = process.argv.slice(2);
const entry: HookEntry = {
  driver: 'qemu',
  mayFail: qemuOpMayFail,
  handle: (ctx, a) => {
    const armed = armNetworkHookUnlessServed(ctx.paths);
    if (armed) ctx.log.info(armed);
    return handleQemuHook(ctx, a, readAllStdin);
  },
};
const deps = {
  fallbackLog: () => new Log(DEFAULT_PATHS.logFile, TAG),
  stderr: (line: string) => { process.stderr.write(`${line}\n`); },
  stdout: (text: string) => { process.stdout.write(text); },
};
guardProcess(entry, argv, deps);
// No top-level await: the hook bundles are CommonJS (build.mjs).
void runHook(entry, argv, { ...deps, makeContext: () => makeContext(DEFAULT_PATHS, runCommand, { hostSockets: () => hostSockets() }, TAG) })
  .then((code) => { process.exitCode = code; });

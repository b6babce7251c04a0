// Entry point of /etc/libvirt/hooks/qemu.d/virtwire. Thin: argv + stdin → handler.
import { handleQemuHook } from './qemu-handler.js';
import { makeContext } from './context.js';
import { DEFAULT_PATHS } from '../paths.js';
import { runCommand } from '../host/run.js';
import { hostSockets } from '../host/listening.js';
import { readAllStdin } from './stdin.js';

const ctx = makeContext(DEFAULT_PATHS, runCommand, { hostSockets: () => hostSockets() }, 'qemu-hook');
const r = await handleQemuHook(ctx, process.argv.slice(2), readAllStdin);
if (r.stderr) process.stderr.write(`${r.stderr}\n`);
process.exitCode = r.exitCode;

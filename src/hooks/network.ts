// Entry point of /etc/libvirt/hooks/network.d/virtwire. Thin: argv → handler.
// stdin (the network XML, ~1 KB) is not needed: libvirt 9 and 11 accept a hook
// that exits without reading it (checked in the e2e sandbox).
import { handleNetworkHook } from './network-handler.js';
import { makeContext } from './context.js';
import { DEFAULT_PATHS } from '../paths.js';
import { runCommand } from '../host/run.js';
import { hostSockets } from '../host/listening.js';

const argv = process.argv.slice(2);
if (argv[1] !== 'started' && argv[1] !== 'updated') process.exit(0);
const r = await handleNetworkHook(makeContext(DEFAULT_PATHS, runCommand, { hostSockets: () => hostSockets() }, 'network-hook'), argv);
if (r.stderr) process.stderr.write(`${r.stderr}\n`);
process.exitCode = r.exitCode;

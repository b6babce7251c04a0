// Entry point of /etc/libvirt/hooks/network.d/virtwire. Thin: argv → handler.
import { handleNetworkHook } from './network-handler.js';
import { makeContext } from './context.js';
import { DEFAULT_PATHS } from '../paths.js';
import { runCommand } from '../host/run.js';
import { hostSockets } from '../host/listening.js';

const argv = process.argv.slice(2);
if (argv[1] !== 'started' && argv[1] !== 'updated') process.exit(0);
// libvirt writes the network XML to stdin; drain it so the daemon never sees a broken pipe.
process.stdin.resume();
const r = await handleNetworkHook(makeContext(DEFAULT_PATHS, runCommand, () => hostSockets(), 'network-hook'), argv);
if (r.stderr) process.stderr.write(`${r.stderr}\n`);
process.exitCode = r.exitCode;
process.stdin.destroy();

// A Node run of the qemu hook, or `virtwire reconcile`, that finds virtwire's
// network hook stood down with no watcher serving puts it back: the watcher
// that stood it down is gone without saying so (killed, outside systemd,
// whose unit arms it after any stop). See host/network-hook-switch.ts.
import { networkHookFile, networkHookState, switchNetworkHook } from '../host/network-hook-switch.js';
import { watcherServes } from './prepare-server.js';
import type { Paths } from '../paths.js';

/** Arms the network hook if it stands down and no watcher serves; returns a line for the log when it did. */
export function armNetworkHookUnlessServed(paths: Paths): string | undefined {
  const file = networkHookFile(paths.libvirtHooksDir);
  if (networkHookState(file) !== 'stood down' || watcherServes(paths.runDir)) return undefined;
  const r = switchNetworkHook(file, true);
  if (r === 'armed') return `${file} was stood down with no watcher serving (it stopped without arming it): armed again, so libvirt runs it when a network starts or is updated`;
  if (typeof r === 'object') return `${file} is stood down with no watcher serving, and cannot be armed (${r.refused}); run: chmod 755 ${file}`;
  return undefined;
}

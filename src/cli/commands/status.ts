import { DefineHost } from '../define-host.js';
import { readVfLive } from '../../host/sriov.js';
import { LibvirtClient } from '../../libvirt/client.js';
import { Ledger } from '../../state/ledger.js';
import { loadConfig } from '../../policy/config.js';
import { readHostView, strayElements, type HostView } from '../../engine/inspect.js';
import { errorMessage } from '../../errors.js';
import { defineCommand } from '../command.js';
import { localUri, NetworkReader, SELECT_HELP, selectDomains, templatesOf } from '../reservations.js';
import { allocationReader } from '../../engine/context.js';
import { readWatchState, type WatchState } from '../../state/watch-state.js';
import { REFUSED_HOOK_FIX, networkHookFile, networkHookState } from '../../host/network-hook-switch.js';
import { watcherServes } from '../../hooks/prepare-server.js';
import { failedStatus, renderStatus, statusFails, vmStatus, type StatusSources, type VmStatus } from '../status.js';

/** Whether `virtwire watch` runs, and when it last reconciled everything (human output only; --json keeps its VM array). */
export function watcherLine(s: WatchState | undefined): string {
  if (!s) return 'watcher: not running — VMs defined in virt-manager get no wiring until "virtwire apply" (start it: systemctl enable --now virtwire-watch, or virtwire watch)';
  const conn = s.connected ? 'connected to libvirt' : 'not connected to libvirt (retrying)';
  return `watcher: running (pid ${s.pid}, ${conn}), last full reconcile ${s.lastReconcile ?? 'not yet'}`;
}

/**
 * virtwire's network hook, when it is not simply armed (host/network-hook-switch.ts):
 * stood down by a serving watcher, stood down with none (a fault: exit 1), or
 * a file virtwire leaves alone. An absent hook says nothing (not installed).
 */
export function networkHookLine(file: string, state: ReturnType<typeof networkHookState>, serving: boolean): { line: string; fault: boolean } | undefined {
  if (state === 'stood down') {
    return serving
      ? { line: `network hook: stood down (mode 0644) while the watcher covers network starts and updates`, fault: false }
      : { line: `network hook: stood down (mode 0644) but no watcher serves: libvirt does not run it when a network starts or is updated; run "virtwire reconcile" (it arms it again)`, fault: true };
  }
  if (typeof state === 'object') return { line: `network hook: ${file} is left alone (${state.refused}); ${REFUSED_HOOK_FIX}`, fault: false };
  return undefined;
}

export const command = defineCommand({
  name: 'status',
  summary: `Per VM and NIC: template, binding, addresses, forwards; whether
the record apply left is current, and whether the host holds what
the ledger says (nft maps, libvirt's firewall); exit 1 if not.`,
  usage: 'status [VM…] [--json] [--connect CONNECT]',
  options: { json: { type: 'boolean' }, connect: { type: 'string' } },
  optionHelp: {
    json: 'Machine-readable output: a JSON array, one object per VM (README "virtwire status").',
    connect: SELECT_HELP.connect,
  },
  maxArgs: Number.MAX_SAFE_INTEGER,
  help: `For each VM named (by its exact libvirt name) or, with none named, every domain libvirt
knows, and for each of its NICs: the template that wires it now, its binding and version, its
network, its addresses (where its forwards go, its DHCP reservation), and the forwards. Then:
  record  what "virtwire apply" recorded in the domain's <metadata>: none (never applied),
          current, or stale, with how the templates now differ ("virtwire apply VM" records it);
  host    for a running VM, whether the host holds what the ledger says: each forward an element
          of virtwire's nft maps, its hairpin pair, the table's chains, virtwire's accept first in
          libvirt's firewall. ok, or one line per thing missing or extra, with the fix ("virtwire
          reconcile"; for a VM that runs with no ledger entry although templates wire it: restart
          it or "virtwire apply VM"); "not running" for a VM that does not run.
With no VM named, elements of virtwire's nft maps that no ledger entry has are listed too.
Changes nothing. Exit status: 0 when the host matches the ledger for every VM shown, 1 when a
VM could not be read or the host does not match (a stale record alone is not an error). A last
line says whether "virtwire watch" runs and when it last reconciled everything; one more, when
the watcher stood virtwire's network hook down (or stood it down and is gone: exit 1).`,
  examples: ['virtwire status', 'virtwire status web-1', `virtwire status --json | jq '.[] | select(.host.state != "ok")'`],
  async run({ values, args, paths, out, run }) {
    const client = new LibvirtClient({ uri: localUri(values.connect) });
    try {
      let sources: StatusSources;
      let selected;
      let view: Promise<HostView> | undefined;
      const hostView = (): Promise<HostView> => (view ??= readHostView(run, new Ledger(paths.runDir), paths.configFile));
      try {
        sources = { client, host: new DefineHost(client, run), vfLive: (pf, index) => readVfLive(run, pf, index), networks: new NetworkReader(client, paths), templates: templatesOf(paths), config: loadConfig(paths.configFile), hostView, allocated: allocationReader(paths.stateDir) };
        selected = await selectDomains(client, args, args.length === 0);
      } catch (err) {
        process.stderr.write(`virtwire: ${errorMessage(err)}\n`);
        return 1;
      }
      const vms: VmStatus[] = [];
      for (const s of selected) {
        if ('error' in s) { vms.push(failedStatus(s.name, s.error)); continue; }
        vms.push(await vmStatus(sources, s.domain).catch((err: unknown) => failedStatus(s.name, errorMessage(err), s.domain)));
      }
      // Leftovers that belong to no VM: only when every VM is shown (a named VM is not answerable for them).
      const strays = args.length === 0 ? await hostView().then(strayElements, (err: unknown) => [`cannot read the host: ${errorMessage(err)}`]) : [];
      if (values.json) {
        out(`${JSON.stringify(vms, null, 2)}\n`);
        for (const p of strays) process.stderr.write(`virtwire: ${p}\n`);
      } else {
        out(renderStatus(vms, strays));
        out(`${watcherLine(readWatchState(paths.runDir))}\n`);
      }
      const hookFile = networkHookFile(paths.libvirtHooksDir);
      // Not root, the serving channel (0700) is unreadable: a running watcher is taken to serve.
      const serving = watcherServes(paths.runDir) || (process.getuid?.() !== 0 && readWatchState(paths.runDir) !== undefined);
      const hook = networkHookLine(hookFile, networkHookState(hookFile), serving);
      if (hook && !values.json) out(`${hook.line}\n`);
      else if (hook?.fault) process.stderr.write(`virtwire: ${hook.line}\n`);
      return vms.some(statusFails) || strays.length || hook?.fault ? 1 : 0;
    } finally {
      await client.close();
    }
  },
});

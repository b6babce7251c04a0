import { defineCommand } from '../command.js';
import { SELECT_HELP, localUri } from '../reservations.js';
import { Watcher } from '../watch.js';
import { DEFAULT_PATHS } from '../../paths.js';

export const command = defineCommand({
  name: 'watch',
  summary: `Wire VMs as libvirt defines them and as templates change, with
no command (the virt-manager path); runs until stopped (the
virtwire-watch systemd unit runs it).`,
  usage: 'watch [--connect CONNECT]',
  options: { connect: { type: 'string' } },
  optionHelp: { connect: SELECT_HELP.connect },
  help: `Follows libvirt's domain and network events and the templates directory, and does what
"virtwire apply" does, with no command: a domain defined or changed (in virt-manager, virt-install,
virsh define) gets its reservations, host ports and recorded wiring; a running one gets its
forwards; a domain undefined gives back what it held; a template or virtwire.yaml edit is
validated first — if every file is valid, every domain is re-applied (running VMs' forwards move
live), else each problem is logged with its file:line:column and nothing changes. Events are only
triggers: the domains are re-read by UUID from libvirt after each burst. At start-up and after
every reconnect (libvirtd restarted) it applies everything, releases what domains undefined
meanwhile held, and makes the host match the ledger ("virtwire reconcile"). One line per action
on stdout (the journal under systemd) and in /var/log/virtwire.log. While it runs it also
serves the qemu hook's prepare and its teardowns at stopped/release (through
/run/virtwire/prepare), so a VM start runs no Node; when it is gone, the hook does it all itself again. Meanwhile it
also covers what the network hook does (a network started or updated) and stands that hook down (mode
0644: libvirt then forks it for no VM start or destroy), arming it again (0755) when it no longer can
or stops. Its state for
"virtwire status" is in /run/virtwire/watch.json. A bad template or VM never stops it; it exits
non-zero only on a bad command line.`,
  examples: ['virtwire watch', 'virtwire watch --connect qemu:///system'],
  async run({ values, paths, run, out }) {
    // The hooks always use the default paths: serve their prepare only when the watcher reads the same.
    const servePrepare = JSON.stringify(paths) === JSON.stringify(DEFAULT_PATHS);
    const watcher = new Watcher({ uri: localUri(values.connect), paths, run, say: (line) => out(`${line}\n`), servePrepare });
    watcher.start();
    await new Promise<void>((resolve) => {
      const stop = (): void => { resolve(); };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    await watcher.stop();
    return 0;
  },
});

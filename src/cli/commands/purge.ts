import { Ledger } from '../../state/ledger.js';
import { withLock } from '../../state/lock.js';
import { purgeHost } from '../../engine/converge.js';
import { Log } from '../../log.js';
import { defineCommand } from '../command.js';

export const command = defineCommand({
  name: 'purge',
  summary: `Remove everything virtwire applied (the nft table, every accept
it put in libvirt's firewall, the ledger), whatever the ledger
and virtwire.yaml say. Running VMs lose their forwards.`,
  usage: 'purge',
  options: {},
  optionHelp: {},
  help: `Removes everything virtwire applied: the nft table inet virtwire, every accept it put in
libvirt's firewall (whatever conntrack mark it carries), and the ledger. It reads no
configuration, so a broken or untrusted virtwire.yaml cannot keep forwards alive. Running VMs
keep running without their forwards; while the hooks are installed, a VM gets its forwards
again at its next start. "install.sh --uninstall" runs it after removing the hooks.`,
  examples: ['virtwire purge'],
  async run({ paths, out, run }) {
    const ledger = new Ledger(paths.runDir);
    const log = new Log(paths.logFile, 'cli');
    // purge reads no configuration: a broken or untrusted virtwire.yaml must not keep forwards alive.
    const done = await withLock(ledger.lockFile, async () => {
      log.rotate(); // under the ledger lock: one rotating process at a time
      return purgeHost(run, ledger);
    });
    log.info(`purge: ${done.join('; ') || 'nothing to do'}`);
    out(`${done.length ? done.map((d) => `purge: ${d}`).join('\n') : 'purge: nothing to do'}\n`);
    return 0;
  },
});

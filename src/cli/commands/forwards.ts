import { Ledger } from '../../state/ledger.js';
import { forwardRows, renderTable } from '../forwards.js';
import { defineCommand } from '../command.js';
import { DEFAULT_PATHS } from '../../paths.js';

export const command = defineCommand({
  name: 'forwards',
  summary: 'List the port forwards applied or reserved for running VMs.',
  usage: 'forwards [--json]',
  options: { json: { type: 'boolean' } },
  optionHelp: { json: 'Machine-readable output: a JSON array, one object per forward.' },
  help: `Lists the port forwards virtwire applied, or reserved at "prepare", for running VMs: one row
per forward, read from the ledger in ${DEFAULT_PATHS.runDir}: the VM, its state, the protocol,
the listen address and host port, the guest address and port, the allowed sources, and where
the forward came from (a template, or the domain's metadata). A ledger file it cannot read is
reported on stderr; "virtwire reconcile" rebuilds it.`,
  examples: ['virtwire forwards', `virtwire forwards --json | jq '.[] | select(.vm == "web-1")'`],
  async run({ values, paths, out }) {
    const ledger = new Ledger(paths.runDir);
    const rows = forwardRows(ledger);
    out(values.json ? `${JSON.stringify(rows, null, 2)}\n` : renderTable(rows));
    for (const c of ledger.readVms().corrupt) {
      process.stderr.write(`virtwire: warning: ledger file ${c.file} is unreadable (${c.reason}); its VM's forwards are not listed or applied — run "virtwire reconcile"\n`);
    }
    return 0;
  },
});

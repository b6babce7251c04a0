// The `virtwire` command. Thin: parses arguments and calls the modules below.
import { parseArgs } from 'node:util';
import { DEFAULT_PATHS, type Paths } from '../paths.js';
import { Ledger } from '../state/ledger.js';
import { withLock } from '../state/lock.js';
import { purgeHost } from '../engine/converge.js';
import { runCommand, type Runner } from '../host/run.js';
import { loadTemplates } from '../policy/load.js';
import { BINDINGS, bindingNamed } from '../bindings/registry.js';
import { formatProblem } from '../policy/yaml-doc.js';
import { forwardRows, renderTable } from './forwards.js';
import { Log } from '../log.js';
import { UserError, errorMessage, quoted } from '../errors.js';
import { makeContext, hostInterfaceAddresses } from '../engine/context.js';
import { hostSockets } from '../host/listening.js';
import { reconcile } from '../engine/lifecycle.js';
import { VERSION } from '../version.js';

export const HELP = `virtwire ${VERSION} — wire libvirt guests' networks from admin templates

Usage: virtwire <command> [options]

Commands:
  forwards [--json]          List the port forwards applied or reserved for running VMs.
  reconcile                  Restore the whole host state from the ledger (after a firewall
                             reload, "nft flush ruleset", or a crash); drops entries of VMs
                             that no longer run, rebuilds a corrupt entry of a running VM from
                             libvirt's status file. Exits 1 if something is left to fix.
  templates check [--dir D]  Validate every template; prints each problem as file:line:column,
                             and warns about a listen address this host does not have.
  purge                      Remove everything virtwire applied (the nft table, every accept
                             it put in libvirt's firewall, the ledger), whatever the ledger
                             and virtwire.yaml say. Running VMs lose their forwards.
  demo [--keep]              Show virtwire at work in a throwaway sandbox: a private libvirtd,
                             a tiny guest, and a request through a forwarded port. Needs root.
  help                       This text.

Options:
  --json          Machine-readable output (forwards).
  --dir D         Templates directory (default ${DEFAULT_PATHS.templatesDir}).
  -h, --help      This text.   -V, --version   Print the version.

Examples:
  virtwire templates check
  virtwire forwards
  virtwire forwards --json | jq '.[] | select(.vm == "web-1")'
  nft delete table inet virtwire; virtwire reconcile

Files: templates ${DEFAULT_PATHS.templatesDir}/*.yaml, settings ${DEFAULT_PATHS.configFile},
ledger ${DEFAULT_PATHS.runDir}, log ${DEFAULT_PATHS.logFile}. See README.md for the template reference.
`;

export async function main(
  argv: string[],
  paths: Paths = DEFAULT_PATHS,
  out: (s: string) => void = (s) => process.stdout.write(s),
  run: Runner = runCommand,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
  if (values.version) { out(`${VERSION}\n`); return 0; }
  const [cmd, sub] = positionals;
  if (values.help || cmd === undefined || cmd === 'help') { out(HELP); return 0; }
  const ledger = new Ledger(paths.runDir);
  switch (cmd) {
    case 'forwards': {
      const rows = forwardRows(ledger);
      out(values.json ? `${JSON.stringify(rows, null, 2)}\n` : renderTable(rows));
      for (const c of ledger.readVms().corrupt) {
        process.stderr.write(`virtwire: warning: ledger file ${c.file} is unreadable (${c.reason}); its VM's forwards are not listed or applied — run "virtwire reconcile"\n`);
      }
      return 0;
    }
    case 'templates': {
      if (sub !== 'check') throw new UserError(`unknown "templates ${sub ?? ''}": did you mean "virtwire templates check"?`);
      const dir = values.dir ?? paths.templatesDir;
      const set = loadTemplates(dir, BINDINGS);
      for (const b of set.broken) for (const p of b.problems) out(`${formatProblem(p)}\n`);
      const local = hostInterfaceAddresses();
      for (const t of set.templates) {
        const binding = bindingNamed(t.binding);
        for (const w of binding.warnings(t.settings, local)) out(`${w.where}: warning: ${w.message}\n`);
        out(`ok  ${t.file}: binding ${t.binding}, priority ${t.priority}, ${binding.summary(t.settings)}, domains ${JSON.stringify(t.match.domains)}${t.match.networks ? `, networks ${JSON.stringify(t.match.networks)}` : ''}${t.match.optIn ? ', opt-in allowed' : ''}\n`);
      }
      if (set.templates.length + set.broken.length === 0) out(`no templates in ${dir}\n`);
      return set.broken.length ? 1 : 0;
    }
    case 'reconcile': {
      const ctx = makeContext(paths, run, { hostSockets: () => hostSockets() }, 'cli');
      const { notes, unresolved } = await reconcile(ctx);
      ctx.log.info(`reconcile: ${notes.join('; ') || 'nothing to do'}`);
      for (const u of unresolved) ctx.log.error(`reconcile: ${u}`);
      out(`${notes.length ? notes.map((d) => `reconcile: ${d}`).join('\n') : 'reconcile: nothing to do'}\n`);
      for (const u of unresolved) out(`reconcile: error: ${u}\n`);
      return unresolved.length ? 1 : 0;
    }
    case 'purge': {
      const log = new Log(paths.logFile, 'cli');
      // purge reads no configuration: a broken or untrusted virtwire.yaml must not keep forwards alive.
      const done = await withLock(ledger.lockFile, async () => {
        log.rotate(); // under the ledger lock: one rotating process at a time
        return purgeHost(run, ledger);
      });
      log.info(`purge: ${done.join('; ') || 'nothing to do'}`);
      out(`${done.length ? done.map((d) => `purge: ${d}`).join('\n') : 'purge: nothing to do'}\n`);
      return 0;
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo({ keep: values.keep === true, out });
    }
    default:
      throw new UserError(`unknown command ${JSON.stringify(cmd)}; run "virtwire --help"`);
  }
}

/** Runs main with process argv; errors become one line on stderr. */
export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    const known = err instanceof UserError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`virtwire: ${known ? errorMessage(err) : `${errorMessage(err)}`}${known ? '' : ' (internal error)'}\n`);
    process.exitCode = known ? 2 : 1;
  }
}

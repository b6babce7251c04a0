import { loadTemplates } from '../../policy/load.js';
import { formatProblem } from '../../policy/yaml-doc.js';
import { UserError } from '../../errors.js';
import { hostInterfaceAddresses } from '../../engine/context.js';
import { BINDINGS, bindingNamed } from '../../bindings/registry.js';
import { loadPlugins } from '../../bindings/plugins.js';
import { DEFAULT_PATHS } from '../../paths.js';
import { defineCommand } from '../command.js';

export const command = defineCommand({
  name: 'templates',
  summary: `Validate every template; prints each problem as file:line:column,
and warns about a listen address this host does not have.`,
  usage: 'templates check [--dir DIR]',
  options: { dir: { type: 'string' } },
  optionHelp: { dir: `Templates directory (default ${DEFAULT_PATHS.templatesDir}).` },
  maxArgs: 1,
  help: `"templates check" reads every template (*.yaml) in the templates directory as the hooks do and
prints each problem as "file:line:column: what was found; what is allowed", then one "ok" line
per valid template (its binding, priority, forwards and what it matches). It warns about a
listen address this host does not have now. Exits 1 if any template has an error: such a file
refuses the start of every VM it may concern. Run as a normal user, it skips the ownership
checks (root-owned, not group- or world-writable, up to /), never the regular-file check.`,
  examples: ['virtwire templates check', 'virtwire templates check --dir ./new-templates'],
  async run({ values, args, paths, out }) {
    const [sub] = args;
    if (sub !== 'check') throw new UserError(`unknown "templates ${sub ?? ''}": did you mean "virtwire templates check"?`);
    const dir = values.dir ?? paths.templatesDir;
    loadPlugins(paths.pluginsDir);
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
  },
});

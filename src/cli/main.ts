// The `virtwire` command: a dispatcher over the table in commands/index.ts.
// It reads the command's name, parses that command's own options, and builds
// every help text from the table, so help cannot drift from the commands.
import { parseArgs } from 'node:util';
import { DEFAULT_PATHS, type Paths } from '../paths.js';
import { runCommand, type Runner } from '../host/run.js';
import { UserError, errorMessage, quoted } from '../errors.js';
import { VERSION } from '../version.js';
import { optionLabel, type Command, type OptionsConfig } from './command.js';
import { COMMANDS } from './commands/index.js';

/** Added to every command's options. */
const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const satisfies OptionsConfig;

/** `virtwire --help`: the commands' usage and summary, from the table. */
export function topHelp(commands: readonly Command[] = COMMANDS): string {
  const width = Math.max(...commands.map((c) => c.usage.length)) + 2;
  const indent = (text: string): string => text.split('\n').join(`\n  ${' '.repeat(width)}`);
  return `virtwire ${VERSION} — wire libvirt guests' networks from admin templates

Usage: virtwire <command> [options]
       virtwire <command> --help    that command's options and examples

Commands:
${commands.map((c) => `  ${c.usage.padEnd(width)}${indent(c.summary)}\n`).join('')}
Options:
  -h, --help      This text.   -V, --version   Print the version.

Examples:
${commands.map((c) => `  ${c.examples[0]}\n`).join('')}
Files: templates ${DEFAULT_PATHS.templatesDir}/*.yaml, settings ${DEFAULT_PATHS.configFile},
ledger ${DEFAULT_PATHS.runDir}, allocations ${DEFAULT_PATHS.stateDir}, log ${DEFAULT_PATHS.logFile}.
See README.md for the template reference.
`;
}

/** `virtwire <name> --help`. */
export function commandHelp(c: Command): string {
  const options: Array<[string, string]> = [
    ...Object.entries(c.options).map(([name, o]): [string, string] => [optionLabel(name, o), c.optionHelp[name] ?? '']),
    ['-h, --help', 'This text.'],
  ];
  const width = Math.max(...options.map(([l]) => l.length)) + 2;
  return `Usage: virtwire ${c.usage}

${c.help}

Options:
${options.map(([l, h]) => `  ${l.padEnd(width)}${h}\n`).join('')}
Examples:
${c.examples.map((e) => `  ${e}\n`).join('')}`;
}

export const HELP = topHelp();

/** An argument in a message: as typed when it is a plain option word, else quoted (one line, visible). */
const shown = (arg: string): string => (/^-{1,2}[A-Za-z0-9][\w-]*(=.*)?$/.test(arg) && quoted(arg) === `"${arg}"` ? arg : quoted(arg));

/** "--json, -h/--help": a command's options, for error messages. */
function optionList(c: Command): string {
  return [...Object.entries(c.options).map(([name, o]) => optionLabel(name, o).replace(', ', '/')), '-h/--help'].join(', ');
}

/** parseArgs' errors made into one line that names the command and its options. */
function optionError(c: Command, err: unknown): unknown {
  const code = (err as { code?: string }).code;
  if (!code?.startsWith('ERR_PARSE_ARGS')) return err;
  const msg = errorMessage(err);
  const opt = /'(-[^' ,]+)/.exec(msg)?.[1];
  const what = !opt
    ? msg
    : code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
      ? `unknown option ${shown(opt)}`
      : /argument missing/.test(msg)
        ? `option ${shown(opt)} needs a value`
        : /does not take an argument/.test(msg)
          ? `option ${shown(opt)} takes no value`
          : msg;
  return new UserError(`${what} for "virtwire ${c.name}" (its options: ${optionList(c)})`);
}

export async function main(
  argv: string[],
  paths: Paths = DEFAULT_PATHS,
  out: (s: string) => void = (s) => process.stdout.write(s),
  run: Runner = runCommand,
): Promise<number> {
  // virtwire's own options come before the command's name; a command's after it.
  let i = 0;
  let help = false;
  let version = false;
  for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
    const a = argv[i]!;
    if (a === '--') { i++; break; }
    if (a === '-h' || a === '--help') help = true;
    else if (a === '-V' || a === '--version') version = true;
    else throw new UserError(`unknown option ${shown(a)} before the command: a command's options go after its name ("virtwire <command> ${shown(a)}"); virtwire's own are -h/--help and -V/--version`);
  }
  if (version) { out(`${VERSION}\n`); return 0; }
  let name = argv[i];
  let rest = argv.slice(i + 1);
  if (name === 'help') { help = true; name = rest[0]; rest = []; }
  if (name === undefined) { out(HELP); return 0; }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) throw new UserError(`unknown command ${JSON.stringify(name)}; run "virtwire --help"`);
  if (help) { out(commandHelp(cmd)); return 0; }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: { ...cmd.options, ...HELP_OPTION }, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    throw optionError(cmd, err);
  }
  if (parsed.values.help) { out(commandHelp(cmd)); return 0; }
  const max = cmd.maxArgs ?? 0;
  if (parsed.positionals.length > max) {
    const extra = parsed.positionals[max]!;
    throw new UserError(`unexpected argument ${quoted(extra)} for "virtwire ${cmd.name}"; usage: virtwire ${cmd.usage}`);
  }
  return cmd.run({ values: parsed.values, args: parsed.positionals, paths, out, run });
}

/** Runs main with process argv; errors become one line on stderr. */
export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    const known = err instanceof UserError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`virtwire: ${known ? errorMessage(err) : `${errorMessage(err)}`}${known ? '' : ' (internal error)'}\n`);
    // 1 for every error, usage included: `virtwire plan` exits 2 for "something would change".
    process.exitCode = 1;
  }
}

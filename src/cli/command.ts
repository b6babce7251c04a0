// What one `virtwire` command is: its name, help and options next to the code
// that runs it. main.ts dispatches over the table in commands/index.ts and
// builds `virtwire --help` from it, so the help cannot drift from the commands.
import type { ParseArgsConfig } from 'node:util';
import type { Paths } from '../paths.js';
import type { Runner } from '../host/run.js';

/** A node:util parseArgs options config (booleans and single strings: no command uses `multiple`). */
export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** What parseArgs gives a command for its options config. */
export type OptionValues<O extends OptionsConfig> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : O[K]['type'] extends 'string' ? string : string | boolean;
};

export interface CommandContext<O extends OptionsConfig> {
  values: OptionValues<O>;
  /** Arguments after the command's name (at most `maxArgs`): templates' subcommand. */
  args: string[];
  paths: Paths;
  out: (s: string) => void;
  run: Runner;
}

export interface Command<O extends OptionsConfig = OptionsConfig> {
  name: string;
  /** For `virtwire --help`: one or a few lines (wrapped by hand, at most 66 columns). */
  summary: string;
  /** After "virtwire ": the name, its arguments and options, e.g. `forwards [--json]`. */
  usage: string;
  /** Its options, for parseArgs; -h/--help is added to every command by main. */
  options: O;
  /** One line of help per option; the type makes a missing one a compile error. */
  optionHelp: { readonly [K in keyof O]: string };
  /** How many arguments may follow the name (default 0). */
  maxArgs?: number;
  /** For `virtwire <name> --help`: what the command does, in full. */
  help: string;
  /** Command lines a user can copy; the first also goes into `virtwire --help`. */
  examples: readonly [string, ...string[]];
  run(ctx: CommandContext<O>): Promise<number>;
}

/** Checks a command object against Command, keeping its options' literal types for run(). */
export function defineCommand<const O extends OptionsConfig>(c: Command<O>): Command<O> {
  return c;
}

/** How an option appears in usage and help: `--json`, `-j, --json`, `--dir DIR`. */
export function optionLabel(name: string, o: OptionsConfig[string]): string {
  return `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${name.toUpperCase()}` : ''}`;
}

// The `virtwire` command table: every command has its help, `virtwire --help`
// lists exactly the table, and README's "## Commands" block lists exactly the
// same commands, so README, --help and the code cannot drift apart.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMMANDS } from '../../src/cli/commands/index.js';
import { optionLabel } from '../../src/cli/command.js';
import { HELP, commandHelp, main } from '../../src/cli/main.js';
import { demoBundle, loadDemo } from '../../src/cli/commands/demo.js';
import { DEFAULT_PATHS } from '../../src/paths.js';
import { VERSION } from '../../src/version.js';
import { ROOT, tempDir } from './helpers.js';

/** main() with its output collected; paths that touch nothing of the host's. */
async function cli(...argv: string[]): Promise<{ code: number; out: string }> {
  const run = tempDir();
  let out = '';
  const code = await main(argv, { ...DEFAULT_PATHS, runDir: run, stateDir: join(run, 'state'), logFile: join(run, 'log'), configFile: join(run, 'none.yaml'), templatesDir: join(run, 'templates') }, (s) => { out += s; }, async () => {
    throw new Error('no command may run a program here');
  });
  return { code, out };
}

/** The rows of a "Commands:"-style listing: "  USAGE  summary", continuation lines indented further. */
function usagesIn(listing: string, prefix: string): string[] {
  return listing.split('\n').filter((l) => l.startsWith(prefix) && l.length > prefix.length && l[prefix.length] !== ' ')
    .map((l) => l.slice(prefix.length).split(/ {2,}/)[0]!);
}

const names = COMMANDS.map((c) => c.name);
const usages = COMMANDS.map((c) => c.usage);

describe('the virtwire command table', () => {
  it('has unique names, and every command its usage, summary, help, option help and examples', () => {
    expect(new Set(names).size).toBe(names.length);
    for (const c of COMMANDS) {
      expect(c.name, c.name).toMatch(/^[a-z][a-z-]*$/);
      expect(c.usage.split(' ')[0], c.name).toBe(c.name);
      expect(c.summary.trim().length, c.name).toBeGreaterThan(20);
      expect(c.summary.split('\n').every((l) => l.length <= 66), `${c.name}: summary lines of at most 66 columns`).toBe(true);
      expect(c.help.trim().length, c.name).toBeGreaterThan(c.summary.length / 2);
      expect(Object.keys(c.optionHelp).sort(), c.name).toEqual(Object.keys(c.options).sort());
      for (const [name, o] of Object.entries(c.options)) {
        expect(c.optionHelp[name]?.trim(), `${c.name} --${name}`).toBeTruthy();
        // The usage line names every option as the help does.
        expect(c.usage, c.name).toContain(`[${optionLabel(name, o)}]`);
        expect(o.short, `${c.name} --${name}: -h is every command's --help`).not.toBe('h');
      }
      expect(Object.keys(c.options), `${c.name}: --help is added by main`).not.toContain('help');
      for (const e of c.examples) expect(e, c.name).toContain(`virtwire ${c.name}`);
    }
  });

  it('"virtwire --help" (and "virtwire", "virtwire help", "-h") lists exactly the table, in order', async () => {
    for (const argv of [['--help'], [], ['help'], ['-h']]) expect(await cli(...argv), argv.join(' ')).toEqual({ code: 0, out: HELP });
    const listing = HELP.slice(HELP.indexOf('\nCommands:\n'), HELP.indexOf('\nOptions:\n'));
    expect(usagesIn(listing, '  ')).toEqual(usages);
    for (const c of COMMANDS) expect(HELP).toContain(c.summary.split('\n')[0]);
    expect(HELP).toContain(`virtwire ${VERSION} — `);
  });

  it('README\'s "## Commands" block lists exactly the same commands, with the same usage', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Commands\n'));
    const block = /```\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block, 'README.md has a ## Commands section with a code block').toBeDefined();
    expect(usagesIn(block!, 'virtwire ')).toEqual(usages);
  });

  it('"virtwire <command> --help", "-h" and "virtwire help <command>" print that command\'s help', async () => {
    for (const c of COMMANDS) {
      const help = commandHelp(c);
      expect(help.startsWith(`Usage: virtwire ${c.usage}\n\n${c.help}\n`), c.name).toBe(true);
      for (const [name, o] of Object.entries(c.options)) expect(help, c.name).toContain(`  ${optionLabel(name, o)}`);
      expect(help, c.name).toContain('  -h, --help');
      for (const e of c.examples) expect(help, c.name).toContain(`\n  ${e}\n`);
      const sub = c.usage.split(' ')[1]?.startsWith('[') === false ? [c.usage.split(' ')[1]!] : [];
      for (const argv of [[c.name, '--help'], [c.name, ...sub, '-h'], ['help', c.name], ['--help', c.name]]) {
        expect(await cli(...argv), argv.join(' ')).toEqual({ code: 0, out: help });
      }
    }
  });

  it('a command-line error exits 1, never 2 (which `virtwire plan` means as "something would change")', async () => {
    const { run } = await import('../../src/cli/main.js');
    const argv = process.argv;
    const stderr = process.stderr.write;
    const written: string[] = [];
    try {
      for (const bad of [['plan', '--bogus'], ['plan', '--connect'], ['nope']]) {
        process.argv = ['node', 'virtwire', ...bad];
        process.stderr.write = ((s: string) => { written.push(s); return true; }) as typeof process.stderr.write;
        await run();
        process.stderr.write = stderr;
        expect(process.exitCode, bad.join(' ')).toBe(1);
      }
    } finally {
      process.argv = argv;
      process.stderr.write = stderr;
      process.exitCode = 0;
    }
    expect(written).toHaveLength(3);
  });

  it('refuses an option the command does not have with one line naming the command and its options', async () => {
    await expect(cli('forwards', '--keep')).rejects.toThrow(/^unknown option --keep for "virtwire forwards" \(its options: --json, -h\/--help\)$/);
    await expect(cli('templates', 'check', '--json')).rejects.toThrow(/^unknown option --json for "virtwire templates" \(its options: --dir DIR, -h\/--help\)$/);
    await expect(cli('purge', '-V')).rejects.toThrow(/^unknown option -V for "virtwire purge" \(its options: -h\/--help\)$/);
    await expect(cli('templates', 'check', '--dir')).rejects.toThrow(/^option --dir needs a value for "virtwire templates"/);
    await expect(cli('forwards', '--json=yes')).rejects.toThrow(/^option --json takes no value for "virtwire forwards"/);
    await expect(cli('forwards', 'web-1')).rejects.toThrow('unexpected argument "web-1" for "virtwire forwards"; usage: virtwire forwards [--json]');
    await expect(cli('forwards', 'a\u2028b')).rejects.toThrow('unexpected argument "a\\u2028b" for');
    await expect(cli('--json', 'forwards')).rejects.toThrow(/^unknown option --json before the command: a command's options go after its name/);
    await expect(cli('--\u2028x')).rejects.toThrow(/^unknown option "--\\u2028x" before/);
    for (const argv of [['nope'], ['help', 'nope']]) await expect(cli(...argv)).rejects.toThrow('unknown command "nope"; run "virtwire --help"');
    for (const msg of await Promise.all([['forwards', '--keep'], ['templates', 'x', '--dir']].map((a) => cli(...a).catch((e: Error) => e.message)))) {
      expect(msg).not.toContain('\n');
    }
  });

  it('prints the version with -V or --version, before anything else', async () => {
    for (const argv of [['-V'], ['--version'], ['-h', '-V']]) expect(await cli(...argv)).toEqual({ code: 0, out: `${VERSION}\n` });
  });

  it('runs a command with its own options (templates check --dir, with its subcommand unchanged)', async () => {
    const dir = tempDir();
    expect(await cli('templates', '--dir', dir, 'check')).toEqual({ code: 0, out: `no templates in ${dir}\n` });
    await expect(cli('templates', '--dir', dir)).rejects.toThrow('unknown "templates ": did you mean "virtwire templates check"?');
    expect(await cli('forwards')).toEqual({ code: 0, out: 'No forwards: no running VM is wired by a virtwire template.\n' });
    expect(await cli('forwards', '--json')).toEqual({ code: 0, out: '[]\n' });
  });
});

describe('virtwire demo', () => {
  it('loads dist/demo.mjs from beside the running bundle, and says so in one line when it is missing', async () => {
    expect(demoBundle('file:///usr/local/lib/virtwire/dist/virtwire.mjs')).toBe('/usr/local/lib/virtwire/dist/demo.mjs');
    const missing = join(tempDir(), 'demo.mjs');
    await expect(loadDemo(missing)).rejects.toThrow(
      `demo: ${missing} is missing (the demo is its own bundle, installed beside virtwire.mjs); run virtwire's install.sh again, or "npm run build" in a checkout`,
    );
  });

  it('plan and apply want VM names or --all (not both); plan then exits 1, never 2 ("would change")', async () => {
    expect(await cli('plan')).toEqual({ code: 1, out: '' });
    expect(await cli('plan', 'web-1', '--all')).toEqual({ code: 1, out: '' });
    await expect(cli('apply')).rejects.toThrow('name the VMs to act on, or give --all (not both)');
  });
});

describe('--connect', () => {
  it('takes a URI of a daemon on this host, and refuses a remote one with the fix', async () => {
    const { localUri } = await import('../../src/cli/reservations.js');
    expect(localUri(undefined)).toBe('qemu:///system');
    for (const uri of ['qemu:///system', 'qemu+unix:///system?socket=/run/x', 'test:///default', 'qemu:///session']) expect(localUri(uri)).toBe(uri);
    expect(() => localUri('qemu+ssh://root@kvm2/system')).toThrow('--connect "qemu+ssh://root@kvm2/system" names a remote host; virtwire acts on the firewall and state of the host it runs on: run it there (ssh HOST virtwire …)');
    expect(() => localUri('default')).toThrow('--connect "default" is not a libvirt URI such as qemu:///system');
  });
});

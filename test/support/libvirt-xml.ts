// libvirt's own judges of XML, for tests: its schema (virt-xml-validate, from
// libvirt-clients + xmllint from libxml2-utils on Debian 12 and 13) and its
// parser (virsh's in-process test driver, test:///default: no daemon, nothing
// persists). Without the tools the tests skip, except under CI=true, where
// they must run (install.sh --deps-only installs libvirt-clients, test/run.sh
// libxml2-utils).
import { execFile, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../unit/helpers.js';

const exec = promisify(execFile);

export const XML_DATA = join(ROOT, 'test', 'data', 'xml');

/** The corpus: every test/data/xml/*-in.xml, sorted, without the suffix. */
export function corpusNames(): string[] {
  return readdirSync(XML_DATA)
    .filter((f) => f.endsWith('-in.xml'))
    .map((f) => f.slice(0, -'-in.xml'.length))
    .sort();
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** virt-xml-validate and xmllint (the script runs it) are both installed. */
export const haveValidator = have('virt-xml-validate') && have('xmllint');
export const haveVirsh = have('virsh');

export interface Verdict {
  ok: boolean;
  output: string;
}

/** libvirt's RELAX NG schema check; the schema is picked from the root element. */
export async function virtXmlValidate(file: string): Promise<Verdict> {
  try {
    const r = await exec('virt-xml-validate', [file], { timeout: 60_000 });
    return { ok: true, output: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message };
  }
}

/**
 * libvirt's parser and post-parse checks (more than the schema: e.g. a
 * per-device <boot order> beside <os><boot>), through `virsh define` or
 * `net-define` on the test driver, which lives inside the virsh process.
 */
export async function libvirtDefines(file: string): Promise<Verdict> {
  const cmd = file.includes('/network-') || file.startsWith('network-') ? 'net-define' : 'define';
  return virshTest([`${cmd} ${shellWord(file)}`]);
}

/** Runs virsh commands, in one process, against a fresh test:///default. */
export async function virshTest(commands: string[]): Promise<Verdict> {
  try {
    const r = await exec('virsh', ['-q', '-c', 'test:///default', commands.join(' ; ')], { timeout: 60_000 });
    return { ok: true, output: r.stdout };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message };
  }
}

/** A word for virsh's own command-line parser (it splits on spaces, honours quotes). */
export function shellWord(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** libvirt's version as [major, minor, micro], from `virsh --version`. */
export function libvirtVersion(): [number, number, number] {
  const r = spawnSync('virsh', ['--version'], { encoding: 'utf8' });
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(r.stdout ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

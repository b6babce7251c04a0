import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseNetwork, type NetworkInfo } from '../../src/xml/network.js';
import { parseTemplate, type Template } from '../../src/policy/template.js';
import type { TemplateSet } from '../../src/policy/load.js';
import type { Paths } from '../../src/paths.js';
import { BINDINGS } from '../../src/bindings/registry.js';

/** The repository root (import.meta.dirname needs Node 20.11; Debian 12 has 18). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export function fixture(name: string): string {
  return readFileSync(join(FIXTURES, name), 'utf8');
}

export function defaultNetwork(): NetworkInfo {
  return parseNetwork(fixture('network-default.xml'));
}

const tempDirs: string[] = [];
// Registered in every test file that imports these helpers.
afterAll(() => {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * As root, temp dirs go under /run, not /tmp: /tmp is world-writable, and
 * virtwire (rightly) refuses a template whose path passes through a directory
 * others can write. Pass tmpdir() for files that must be executable.
 */
export const TEMP_BASE = process.getuid?.() === 0 ? '/run' : tmpdir();

/** A temp dir removed when the test file ends. */
export function tempDir(prefix = 'vw-unit-', base = TEMP_BASE): string {
  const d = mkdtempSync(join(base, prefix));
  tempDirs.push(d);
  return d;
}

export function writeFiles(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Parses a template that must be valid. */
export function template(name: string, yaml: string): Template {
  const r = parseTemplate(`/etc/virtwire/templates/${name}.yaml`, yaml, BINDINGS);
  if (!r.template) throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.template;
}

export function set(...templates: Template[]): TemplateSet {
  return { templates, broken: [] };
}

let macCounter = 0x10;
export interface TestNic { mac?: string; network?: string; type?: string }

/** A domain XML as libvirt would hand it to a hook; the name is escaped properly. */
export function domainXml(name: string, nics: TestNic[] = [{ network: 'default' }], metadata = '', uuid = '6f1f6a0e-0000-4000-8000-000000000001'): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
  const ifaces = nics.map((n) => {
    const mac = n.mac ?? `52:54:00:77:00:${(macCounter++).toString(16).padStart(2, '0')}`;
    const type = n.type ?? 'network';
    const src = type === 'network' ? `<source network='${esc(n.network ?? 'default')}'/>` : `<source bridge='br0'/>`;
    return `<interface type='${type}'><mac address='${mac}'/>${src}<model type='virtio'/></interface>`;
  }).join('\n    ');
  return `<domain type='qemu' id='3'>
  <name>${esc(name)}</name>
  <uuid>${uuid}</uuid>
  ${metadata ? `<metadata>${metadata}</metadata>` : ''}
  <memory unit='KiB'>196608</memory>
  <devices>
    ${ifaces}
  </devices>
</domain>`;
}

/** Paths for a hook or CLI run confined to a temp dir. */
export function testPaths(root: string): Paths {
  return {
    configFile: join(root, 'virtwire.yaml'), templatesDir: join(root, 'templates'), runDir: join(root, 'run'),
    logFile: join(root, 'virtwire.log'), libvirtRunDir: join(root, 'libvirt'), libvirtLibDir: join(root, 'libvirt-lib'), sysDir: join(root, 'sys'), hooksDir: join(root, 'hooks.d'), pluginsDir: join(root, 'plugins'),
    stateDir: join(root, 'state'), libvirtHooksDir: join(root, 'libvirt-hooks'),
  };
}

// Third-party bindings as plugins (bindings/plugins.ts): the example plugin
// (templates/plugins/bridge-mtu.cjs) loaded from a root-owned directory, its
// keys validated with file:line:column, its rewrite of a NIC; a plugin that
// is group-writable, or whose shape is wrong, is never loaded and its
// templates are refused with one line — checked by a plugin that would
// leave a mark if it ran.
import { copyFileSync, chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPlugins } from '../../src/bindings/plugins.js';
import { BINDINGS, bindingTakes } from '../../src/bindings/registry.js';
import { loadTemplates } from '../../src/policy/load.js';
import { formatProblem } from '../../src/policy/yaml-doc.js';
import { parseXmlDocument } from '../../src/xml/document.js';
import { parseDomain } from '../../src/xml/domain.js';
import { templatesForNics } from '../../src/policy/match.js';
import { rewriteWiredNics } from '../../src/engine/rewrite-nics.js';
import { ROOT, tempDir, writeFiles } from './helpers.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot && process.env.CI !== 'true')('plugins', () => {
  const root = tempDir();
  const plugins = join(root, 'plugins');
  mkdirSync(plugins, { mode: 0o755 });
  copyFileSync(join(ROOT, 'templates', 'plugins', 'bridge-mtu.cjs'), join(plugins, 'bridge-mtu.cjs'));
  chmodSync(join(plugins, 'bridge-mtu.cjs'), 0o644);
  const mark = join(root, 'evil-ran');
  const evil = `require('fs').writeFileSync(${JSON.stringify(mark)}, 'ran'); module.exports = { apiVersion: 1, name: 'evil', keys: [], parse: () => ({}), rewrite: () => {} };\n`;
  writeFileSync(join(plugins, 'evil.cjs'), evil);
  chmodSync(join(plugins, 'evil.cjs'), 0o664);
  writeFileSync(join(plugins, 'shapeless.cjs'), "module.exports = { apiVersion: 2, name: 'shapeless' };\n");
  chmodSync(join(plugins, 'shapeless.cjs'), 0o644);
  expect(loadPlugins(plugins)).toEqual(['bridge-mtu', 'evil', 'shapeless']);
  const templates = join(root, 'templates');
  writeFiles(templates, {
    'storage.yaml': 'match: {domains: ["st-*"]}\nbinding: bridge-mtu\nbridgeMtu: {bridge: br-storage, mtu: 9000}\n',
    'bad.yaml': 'match: {domains: ["x-*"]}\nbinding: bridge-mtu\nbridgeMtu: {bridge: br-storage, mtu: 10, colour: red}\n',
    'evil.yaml': 'match: {domains: ["e-*"]}\nbinding: evil\n',
    'shapeless.yaml': 'match: {domains: ["s-*"]}\nbinding: shapeless\n',
  });
  const set = loadTemplates(templates, BINDINGS);

  it('a root-owned plugin is loaded: its template is valid, its NIC rewritten by it, idempotently', () => {
    expect(set.templates.map((t) => t.name)).toEqual(['storage']);
    const t = set.templates[0]!;
    expect(BINDINGS.get('bridge-mtu')?.summary(t.settings)).toBe('bridge br-storage, MTU 9000');
    const xml = `<domain><name>st-1</name><uuid>6f1f6a0e-0000-4000-8000-0000000000f1</uuid><devices>\n    <interface type='network'>\n      <mac address='52:54:00:77:00:f1'/>\n      <source network='default'/>\n      <model type='virtio'/>\n    </interface>\n  </devices></domain>`;
    const once = (text: string): string => {
      const doc = parseXmlDocument(text);
      const domain = parseDomain(text);
      rewriteWiredNics(doc, domain, templatesForNics(domain, set, bindingTakes), { libvirtVersion: 9_000_000, domainUuid: domain.uuid });
      return String(doc);
    };
    const out = once(xml);
    expect(out).toContain("<interface type='bridge'>");
    expect(out).toContain("<source bridge='br-storage'/>");
    expect(out).toContain("<mtu size='9000'/>");
    expect(once(out)).toBe(out);
  });

  it('its problems are reported at the key, file:line:column', () => {
    const bad = set.broken.find((b) => b.name === 'bad');
    expect(bad?.problems.map(formatProblem)).toEqual([
      `${join(templates, 'bad.yaml')}:3:12: bridgeMtu: unknown key "colour"; allowed: bridge, mtu`,
      `${join(templates, 'bad.yaml')}:3:12: bridgeMtu: mtu must be a whole number from 576 to 65535`,
    ]);
  });

  it('a group-writable plugin is never loaded (its code never ran), and its templates are refused in one line', () => {
    expect(existsSync(mark)).toBe(false);
    expect(set.broken.find((b) => b.name === 'evil')?.problems.map(formatProblem)).toEqual([
      `${join(templates, 'evil.yaml')}:1:1: binding evil: its plugin is refused, and nothing of it ran: ${join(plugins, 'evil.cjs')} is not trusted: it is group-writable (mode 0664); fix: chmod go-w ${join(plugins, 'evil.cjs')}`,
    ]);
  });

  it('a plugin of the wrong shape is refused, naming what is wrong', () => {
    expect(set.broken.find((b) => b.name === 'shapeless')?.problems.map(formatProblem)).toEqual([
      `${join(templates, 'shapeless.yaml')}:1:1: binding shapeless: its plugin is not usable: ${join(plugins, 'shapeless.cjs')}: apiVersion is not 1`,
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ParseCache, decode, encode } from '../../src/policy/parse-cache.js';
import { parseTemplate } from '../../src/policy/template.js';
import { parseConfig, loadConfig } from '../../src/policy/config.js';
import { loadTemplates } from '../../src/policy/load.js';
import { BINDINGS } from '../../src/bindings/registry.js';
import { ROOT, tempDir, writeFiles } from './helpers.js';

const WEB = 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';

describe('parse cache (hooks keep parsed templates and virtwire.yaml between runs)', () => {
  it('what it keeps survives its JSON (BigInt included): every shipped template and the shipped virtwire.yaml parse to the same thing after a round trip', () => {
    const dir = join(ROOT, 'templates');
    for (const n of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      const file = join(dir, n);
      const parsed = parseTemplate(file, readFileSync(file, 'utf8'), BINDINGS);
      expect(parsed.template, n).toBeDefined();
      expect(decode(encode(parsed)), n).toEqual(parsed);
    }
    const config = join(dir, 'config', 'virtwire.yaml');
    const parsed = parseConfig(config, readFileSync(config, 'utf8'));
    expect(decode(encode(parsed))).toEqual(parsed);
  });

  it('decodes BigInts wherever they sit, and only the exact {"$bigint": digits} form', () => {
    const value = { a: [1n, { b: -2n }, [3n]], c: { $bigint: 'x' }, d: { $bigint: '4', e: 1 }, f: '5', g: null, h: [null, true] };
    expect(decode(encode(value))).toEqual(value);
    expect(decode('[{"$bigint":"18446744073709551616"}]')).toEqual([18446744073709551616n]);
    // A key named __proto__ stays the object's own data, as a plain JSON.parse leaves it.
    const odd = decode('{"__proto__":{"$bigint":"7"},"k":{"__proto__":{"polluted":true}}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(odd)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(odd.k)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reuses a parse while path and bytes are the same, parses again when the bytes change, keeps what was used recently, bounded', () => {
    const dir = tempDir();
    const templates = join(dir, 'templates');
    const cache = join(dir, 'run', 'templates.cache.json');
    writeFiles(templates, { 'web.yaml': WEB, 'db.yaml': WEB.replace('web-*', 'db-*') });
    const first = loadTemplates(templates, BINDINGS, cache);
    expect(Object.keys(JSON.parse(readFileSync(cache, 'utf8')))).toHaveLength(2);
    // A second run finds both: no parse at all (a parse that throws would show).
    let parses = 0;
    const counting = new ParseCache(cache);
    for (const n of ['db.yaml', 'web.yaml']) {
      const file = join(templates, n);
      counting.get('template', file, readFileSync(file, 'utf8'), () => { parses++; return undefined; });
    }
    expect(parses).toBe(0);
    expect(loadTemplates(templates, BINDINGS, cache)).toEqual(first);
    // An edit is parsed anew (and its error reported as such); the removed file's entry goes.
    writeFiles(templates, { 'web.yaml': WEB.replace('8080', '80800') });
    const edited = loadTemplates(templates, BINDINGS, cache);
    expect(edited.broken.map((b) => b.problems[0]?.message)).toEqual(['host: a port is 1-65535, found 80800']);
    // The edit undone: its first parse is still there (recent entries are kept, up to a bound).
    writeFiles(templates, { 'web.yaml': WEB });
    const undone = new ParseCache(cache);
    undone.get('template', join(templates, 'web.yaml'), WEB, () => { parses++; return undefined; });
    expect(parses).toBe(0);
    const keys = Object.keys(JSON.parse(readFileSync(cache, 'utf8')));
    expect(keys).toHaveLength(3);
    // Bounded: entries past the bound go, oldest first; this run's stay.
    const many = new ParseCache(cache);
    for (let i = 0; i < 70; i++) many.get('template', '/x.yaml', String(i), () => i);
    many.save();
    expect(Object.keys(JSON.parse(readFileSync(cache, 'utf8')))).toHaveLength(70);
    const next = new ParseCache(cache);
    next.get('template', '/x.yaml', 'new', () => 0);
    next.save();
    expect(Object.keys(JSON.parse(readFileSync(cache, 'utf8')))).toHaveLength(64);
  });

  it('a cache file that is not root\'s alone to write, or not JSON, is ignored: everything is parsed', () => {
    const dir = tempDir();
    const cache = join(dir, 'c.json');
    const file = join(dir, 'x.yaml');
    new ParseCache(cache).get('template', file, 'a', () => 1);
    const c = new ParseCache(cache);
    c.get('template', file, 'a', () => 1);
    c.save();
    let parses = 0;
    const count = () => { parses++; return 2; };
    expect(new ParseCache(cache).get('template', file, 'a', count)).toBe(1);
    if (process.getuid?.() === 0) {
      chmodSync(cache, 0o666);
      expect(new ParseCache(cache).get('template', file, 'a', count)).toBe(2);
      chmodSync(cache, 0o644);
    }
    writeFileSync(cache, '{"trunc');
    expect(new ParseCache(cache).get('template', file, 'a', count)).toBe(2);
    expect(parses).toBe(process.getuid?.() === 0 ? 2 : 1);
  });

  it('a broken virtwire.yaml is reported every time, never cached', () => {
    const dir = tempDir();
    const config = join(dir, 'virtwire.yaml');
    const cache = join(dir, 'config.cache.json');
    writeFileSync(config, 'firewall: {mark: nope}\n');
    for (let i = 0; i < 2; i++) expect(() => loadConfig(config, cache)).toThrow(/firewall\.mark must be a single bit/);
    writeFileSync(config, 'firewall: {mark: 0x20000000}\n');
    expect(loadConfig(config, cache).firewall.mark).toBe(0x20000000);
    expect(loadConfig(config, cache).firewall.mark).toBe(0x20000000);
  });
});

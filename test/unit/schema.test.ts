import { ROOT } from './helpers.js';
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import AjvModule from 'ajv';
import { parse } from 'yaml';
import { parseTemplate } from '../../src/policy/template.js';
import { BINDINGS } from '../../src/bindings/registry.js';

const schema = JSON.parse(readFileSync(join(ROOT, 'templates', 'schema', 'template.schema.json'), 'utf8'));
// ajv is CommonJS: its class is the default export's .default under NodeNext.
const Ajv = (AjvModule as unknown as { default: typeof AjvModule }).default ?? AjvModule;
const ajv = new (Ajv as unknown as new (o: object) => { compile: (s: object) => ((d: unknown) => boolean) & { errors?: unknown } })({ allErrors: true, strict: false, validateFormats: false });
const validate = ajv.compile(schema);

/** The JSON Schema (for editors) and virtwire's validator must agree. */
describe('template JSON Schema', () => {
  const examples = readdirSync(join(ROOT, 'templates')).filter((f) => f.endsWith('.yaml'));
  it.each(examples)('accepts shipped example %s', (f) => {
    expect(validate(parse(readFileSync(join(ROOT, 'templates', f), 'utf8'))), JSON.stringify(validate.errors)).toBe(true);
  });

  it.each([
    'match: {domains: [a]}\nbinding: nat\nforwardz: []\n',
    'match: {domains: [a]}\nbinding: bridgez\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: sctp, host: 80}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp}]\n',
    'match: {domains: [a], extra: 1}\nbinding: nat\n',
    'binding: nat\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp, host: 80, from: []}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp, host: 80, listen: "fe80::1%eth0"}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp, host: 80, from: ["fe80::%eth0/64"]}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp, host: 80, from: ["198.51.100.0/024"]}]\n',
    'match: {domains: [a]}\nbinding: nat\naddress: "fd00:77::10%virbr0"\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{proto: tcp, host: auto}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{block: 2, guest: [22], host: 80}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: [{block: 0, guest: [22]}]\n',
    'match: {domains: [a]}\nbinding: nat\nforwards: {block: 2}\n',
    'match: {domains: [a]}\nbinding: nat\naddress: ["192.168.122.10", "fd00:77::10%virbr0"]\n',
    'match: {domains: [a]}\nbinding: bridge\n',
    'match: {domains: [a]}\nbinding: bridge\nbridge: {name: br0}\nforwards: []\n',
    'match: {domains: [a]}\nbinding: nat\nbridge: {name: br0}\n',
    'match: {domains: [a]}\nbinding: bridge\nbridge: {name: br0}\nvlan: 4095\n',
    'match: {domains: [a]}\nbinding: ovs\novs: {bridge: ovsbr0}\nvlan: {native: 5}\n',
    'match: {domains: [a]}\nbinding: isolated\nisolated: {network: lab}\nvlan: 5\n',
    'match: {domains: [a]}\nbinding: macvtap\nmacvtap: {uplink: eth1, mode: vpea}\n',
    'match: {domains: [a]}\nbinding: macvtap\nmacvtap: {mode: bridge}\n',
    'match: {domains: [a]}\nbinding: bridge\nbridge: {name: br0}\nvhost: 1\n',
  ])('rejects what the validator rejects: %s', (yaml) => {
    expect(parseTemplate('/t/x.yaml', yaml, BINDINGS).template).toBeUndefined();
    expect(validate(parse(yaml))).toBe(false);
  });
});

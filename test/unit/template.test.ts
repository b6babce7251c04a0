import { ROOT } from './helpers.js';
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTemplate } from '../../src/policy/template.js';
import { formatProblem } from '../../src/policy/yaml-doc.js';

const FILE = '/etc/virtwire/templates/web.yaml';
const problems = (yaml: string, file = FILE): string[] => parseTemplate(file, yaml).problems.map(formatProblem);

describe('template validation', () => {
  it('accepts the contract shape from the issue, with defaults filled in', () => {
    const r = parseTemplate(FILE, `description: Web servers reachable on the host's address
match:
  domains: ["web-*"]
  networks: ["default"]
priority: 50
binding: nat
forwards:
  - proto: tcp
    host: 8080
    guest: 80
    listen: 203.0.113.1
    from: ["198.51.100.0/24"]
    description: web
  - proto: udp
    host: "8000-8010"
`);
    expect(r.problems).toEqual([]);
    const t = r.template!;
    expect(t.name).toBe('web');
    expect(t.priority).toBe(50);
    expect(t.match).toEqual({ domains: ['web-*'], networks: ['default'], optIn: false });
    expect(t.forwards[0]).toMatchObject({ proto: 'tcp', host: { lo: 8080, hi: 8080 }, guest: { lo: 80, hi: 80 }, listen: '203.0.113.1', allowHostConflict: false });
    expect(t.forwards[0]!.from.map((c) => c.text)).toEqual(['198.51.100.0/24']);
    expect(t.forwards[0]!.origin).toBe(`${FILE}:8:5`);
    expect(t.forwards[1]).toMatchObject({ proto: 'udp', host: { lo: 8000, hi: 8010 }, guest: { lo: 8000, hi: 8010 } });
  });

  it('accepts every shipped example template', () => {
    const dir = join(ROOT, 'templates');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) expect(problems(readFileSync(join(dir, f), 'utf8'), join(dir, f)), f).toEqual([]);
  });

  it.each([
    ['unknown top-level key, with a suggestion', 'match: {domains: [a]}\nbinding: nat\nforwardz: []\n', `${FILE}:3:1: unknown key "forwardz" (did you mean "forwards"?); allowed: description, match, priority, binding, address, forwards`],
    ['binding not yet supported', 'match: {domains: [a]}\nbinding: macvtap\n', `${FILE}:2:10: binding "macvtap" is not supported by this version of virtwire yet; supported: nat`],
    ['binding misspelled', 'match: {domains: [a]}\nbinding: nta\n', `${FILE}:2:10: binding must be one of: nat; found string "nta"`],
    ['binding missing', 'match: {domains: [a]}\n', `${FILE}:1:1: binding is required (binding: nat)`],
    ['match missing', 'binding: nat\n', `${FILE}:1:1: match is required: say which domains this template applies to (match: {domains: ["web-*"]})`],
    ['template that can never apply', 'match: {networks: [default]}\nbinding: nat\n', `${FILE}:1:1: match.domains is empty and match.optIn is not true: this template can never apply; add a glob or set optIn: true`],
    ['bad proto', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - {proto: sctp, host: 80}\n', `${FILE}:4:13: proto must be tcp or udp, found string "sctp"`],
    ['port out of range', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - proto: tcp\n    host: 70000\n', `${FILE}:5:11: host: a port is 1-65535, found 70000`],
    ['range lengths differ', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - proto: tcp\n    host: "8000-8010"\n    guest: "80-81"\n', `${FILE}:6:12: guest: a range must be as long as the host range (11 ports), found 2`],
    ['reversed range', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - proto: tcp\n    host: "90-80"\n', `${FILE}:5:11: host: a range goes low-high, found "90-80"`],
    ['host bits in CIDR', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - proto: tcp\n    host: 80\n    from: ["198.51.100.7/24"]\n', `${FILE}:6:11: from: "198.51.100.7/24" has host bits set; did you mean 198.51.100.0/24?`],
    ['loopback listen', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 80, listen: 127.0.0.1}\n', `${FILE}:4:36: listen: loopback addresses cannot be forwarded (the kernel does not route them to a guest); use a host address`],
    ['from of the other family than listen', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 80, listen: 203.0.113.1, from: ["2001:db8::/32"]}\n', `${FILE}:4:55: from: 2001:db8::/32 is IPv6 but listen 203.0.113.1 is IPv4`],
    ['overlapping forwards', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: "8000-8010"}\n  - {proto: tcp, host: 8005}\n', `${FILE}:5:5: forward tcp 8005 overlaps the forward at ${FILE}:4:5; merge them or use different host ports`],
    ['forward key typo', 'match: {domains: [a]}\nbinding: nat\nforwards:\n  - {proto: tcp, hots: 80}\n', `${FILE}:4:18: unknown key "hots" in a forward (did you mean "host"?); allowed: proto, host, guest, listen, from, description, allowHostConflict`],
    ['priority not a number', 'match: {domains: [a]}\nbinding: nat\npriority: high\n', `${FILE}:3:11: priority must be a whole number from -1000 to 1000, found string "high"`],
    ['YAML syntax error', 'match: {domains: [a]\nbinding: nat\n', `${FILE}:2:1: YAML:`],
    ['duplicate key', 'match: {domains: [a]}\nbinding: nat\nbinding: nat\n', `${FILE}:3:1: YAML: Map keys must be unique`],
  ])('%s', (_name, yaml, expected) => {
    const found = problems(yaml);
    expect(found.length).toBeGreaterThan(0);
    expect(found.some((p) => p.startsWith(expected)), found.join('\n')).toBe(true);
  });

  it('reports every problem of a file, not only the first', () => {
    const found = problems('match: {domains: [a], netwrks: [x]}\nbinding: nat\nforwards:\n  - {proto: sctp, host: 0}\n');
    expect(found).toHaveLength(3);
  });

  it('rejects a file name that cannot be a template name', () => {
    expect(problems('match: {domains: [a]}\nbinding: nat\n', '/etc/virtwire/templates/we b.yaml')[0]).toContain('is not a valid template name');
  });

  it('still reports which domains a broken template was meant for', () => {
    const r = parseTemplate(FILE, 'match: {domains: ["web-*"]}\nbinding: nat\nforwards: [{proto: tcp}]\n');
    expect(r.template).toBeUndefined();
    expect(r.domains).toEqual(['web-*']);
  });
});

import { ROOT, tempDir, writeFiles } from './helpers.js';
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTemplate, type BindingSettingsReader } from '../../src/policy/template.js';
import type { YamlFile } from '../../src/policy/yaml-doc.js';
import type { Node } from 'yaml';
import { formatProblem } from '../../src/policy/yaml-doc.js';
import { main } from '../../src/cli/main.js';
import { DEFAULT_PATHS } from '../../src/paths.js';
import { BINDINGS } from '../../src/bindings/registry.js';
import { natSettings } from '../../src/bindings/nat/settings.js';

const FILE = '/etc/virtwire/templates/web.yaml';
const problems = (yaml: string, file = FILE): string[] => parseTemplate(file, yaml, BINDINGS).problems.map(formatProblem);

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
`, BINDINGS);
    expect(r.problems).toEqual([]);
    const t = r.template!;
    expect(t.name).toBe('web');
    expect(t.priority).toBe(50);
    expect(t.match).toEqual({ domains: ['web-*'], networks: ['default'], optIn: false });
    expect(natSettings(t).forwards[0]).toMatchObject({ proto: 'tcp', host: { lo: 8080, hi: 8080 }, guest: { lo: 80, hi: 80 }, listen: '203.0.113.1', allowHostConflict: false });
    expect(natSettings(t).forwards[0]!.from.map((c) => c.text)).toEqual(['198.51.100.0/24']);
    expect(natSettings(t).forwards[0]!.origin).toBe(`${FILE}:8:5`);
    expect(natSettings(t).forwards[1]).toMatchObject({ proto: 'udp', host: { lo: 8000, hi: 8010 }, guest: { lo: 8000, hi: 8010 } });
  });

  it('accepts every shipped example template', () => {
    const dir = join(ROOT, 'templates');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) expect(problems(readFileSync(join(dir, f), 'utf8'), join(dir, f)), f).toEqual([]);
  });

  it.each([
    ['unknown top-level key, with a suggestion', 'match: {domains: [a]}\nbinding: nat\nforwardz: []\n', `${FILE}:3:1: unknown key "forwardz" (did you mean "forwards"?); allowed: description, match, priority, binding, vhost, address, forwards`],
    ['binding misspelled', 'match: {domains: [a]}\nbinding: nta\n', `${FILE}:2:10: binding must be one of: nat, bridge, ovs, isolated, macvtap, passt, sriov; found string "nta"`],
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
    const r = parseTemplate(FILE, 'match: {domains: ["web-*"]}\nbinding: nat\nforwards: [{proto: tcp}]\n', BINDINGS);
    expect(r.template).toBeUndefined();
    expect(r.domains).toEqual(['web-*']);
  });
});

const HEAD = 'match: {domains: [a]}\nbinding: nat\n';
const fwd = (field: string): string => `${HEAD}forwards:\n  - {proto: tcp, host: 80, ${field}}\n`;
const LISTEN_LOOPBACK = `${FILE}:4:36: listen: loopback addresses cannot be forwarded (the kernel does not route them to a guest); use a host address`;
const ZONE = (where: string, field: string, addr: string, zone: string): string =>
  `${FILE}:${where}: ${field}: "${addr}" has an IPv6 zone ID ("${zone}"), which names a local link and cannot be used here; write the address without it`;

/** Values that validated and then crashed every start (or silently changed meaning) before; each is now one problem at its place. */
export const REFUSALS: Array<[string, string, string[]]> = [
  ['a glob with a reversed range (threw at match time: every start an internal error)', 'match: {domains: ["[z-a]*"]}\nbinding: nat\n',
    [`${FILE}:1:19: match.domains: "[z-a]*": the range "z-a" goes from high to low and would match nothing; write "a-z"`]],
  ['a glob with a POSIX class (silently meant something else)', 'match: {domains: ["[[:digit:]]*"]}\nbinding: nat\n',
    [`${FILE}:1:19: match.domains: "[[:digit:]]*": POSIX classes like "[:digit:]" are not supported; list the characters instead, e.g. [a-zA-Z0-9]`]],
  ['a zone ID in listen (parsed as a different address, or crashed validation)', fwd('listen: "fe80::1%eth0"'), [ZONE('4:36', 'listen', 'fe80::1%eth0', '%eth0')]],
  ['a zone ID that crashed validation with a RangeError', fwd('listen: "::%x"'), [ZONE('4:36', 'listen', '::%x', '%x')]],
  ['a zone ID in from', fwd('from: ["fe80::%eth0/64"]'), [ZONE('4:34', 'from', 'fe80::%eth0', '%eth0')]],
  ['a zone ID in address', `${HEAD}address: "fd00:77::10%virbr0"\n`, [ZONE('3:10', 'address', 'fd00:77::10%virbr0', '%virbr0')]],
  ['a leading zero in an IPv4 address', fwd('listen: 203.0.113.01'),
    [`${FILE}:4:36: listen: "203.0.113.01" has a number with a leading zero, which some tools read as octal; write it without leading zeros`]],
  ['a CIDR prefix with a leading zero', fwd('from: ["198.51.100.0/024"]'), [`${FILE}:4:34: from: expected an address or CIDR like 198.51.100.0/24, found "198.51.100.0/024"`]],
  ['IPv4-mapped loopback in listen', fwd('listen: "::ffff:127.0.0.1"'), [LISTEN_LOOPBACK]],
  ['IPv4-mapped loopback in hex in listen', fwd('listen: "::ffff:7f00:1"'), [LISTEN_LOOPBACK]],
  ['::1 written out in listen', fwd('listen: "0:0:0:0:0:0:0:1"'), [LISTEN_LOOPBACK]],
  ['IPv4-compatible loopback in listen', fwd('listen: "::127.0.0.1"'), [LISTEN_LOOPBACK]],
  ['the unspecified IPv4 address in listen', fwd('listen: 0.0.0.0'),
    [`${FILE}:4:36: listen: "0.0.0.0" is the unspecified address, not one a connection is made to; omit listen to mean every host address`]],
  ['the unspecified IPv6 address in listen', fwd('listen: "::"'),
    [`${FILE}:4:36: listen: "::" is the unspecified address, not one a connection is made to; omit listen to mean every host address`]],
  ['a multicast address in listen', fwd('listen: "ff02::1"'),
    [`${FILE}:4:36: listen: "ff02::1" is a multicast address, never the destination of a connection; use one of the host's own addresses`]],
  ['the broadcast address in listen', fwd('listen: 255.255.255.255'),
    [`${FILE}:4:36: listen: "255.255.255.255" is the broadcast address, never the destination of a connection; use one of the host's own addresses`]],
  ['an IPv4-mapped address in listen', fwd('listen: "::ffff:cb00:7101"'),
    [`${FILE}:4:36: listen: "::ffff:cb00:7101" is an IPv4-mapped IPv6 address, which IPv6 rules never see (IPv4 packets stay IPv4); use 203.0.113.1`]],
  ['an IPv4-mapped CIDR in from', fwd('from: ["::ffff:198.51.100.0/120"]'),
    [`${FILE}:4:34: from: "::ffff:198.51.100.0/120" is an IPv4-mapped IPv6 range, which IPv6 rules never see (IPv4 packets stay IPv4); use 198.51.100.0/24`]],
  ['an IPv4-mapped guest address', `${HEAD}address: "::ffff:192.168.122.10"\n`,
    [`${FILE}:3:10: address: "::ffff:192.168.122.10" is an IPv4-mapped IPv6 address; write the guest's IPv4 address as 192.168.122.10`]],
  ['a loopback guest address', `${HEAD}address: 127.0.0.1\n`,
    [`${FILE}:3:10: address: "127.0.0.1" is a loopback address, not a guest's; give the guest's address in its libvirt network (e.g. 192.168.122.10)`]],
  ['an allow-list written as a mapping (was ignored: the forward admitted every source)', fwd('from: {198.51.100.0/24: null}'),
    [`${FILE}:4:34: from: expected a CIDR like 198.51.100.0/24, found a mapping`]],
  ['an empty from (was ignored: the forward admitted every source)', `${HEAD}forwards:\n  - proto: tcp\n    host: 80\n    from:\n`,
    [`${FILE}:6:10: from: expected a CIDR like 198.51.100.0/24, found nothing`]],
  ['listen written as a list (was ignored: the forward listened everywhere)', fwd('listen: [203.0.113.1]'),
    [`${FILE}:4:36: listen must be one host IP address (e.g. 203.0.113.1), found a list`]],
  ['a forward too big for one nft map', `${HEAD}forwards:\n  - proto: tcp\n    host: "20000-21023"\n    from: [${Array.from({ length: 17 }, (_, i) => `"10.${i}.0.0/16"`).join(', ')}]\n`,
    [`${FILE}:6:11: from: 17 sources for 1024 host ports make 17408 nft map elements, more than the 16384 a forward may have; use fewer, wider CIDRs or a shorter port range`]],
  ['YAML nested too deeply for the yaml library (threw a RangeError)', `match: ${'['.repeat(5000)}${']'.repeat(5000)}\nbinding: nat\n`,
    [`${FILE}:1:1: YAML: nested too deeply to read; a template needs only a few levels`]],
  ['a key with a line break (the message quoted it raw)', `${HEAD}"forwards\\n": []\n`,
    [`${FILE}:3:1: unknown key "forwards\\n" (did you mean "forwards"?); allowed: description, match, priority, binding, vhost, address, forwards`]],
  ['a value with a NEL (U+0085), which JSON leaves raw', `${HEAD}forwards: \u0085x\n`, [`${FILE}:3:11: forwards must be a list, found string "\\u0085x"`]],
];

describe('values that used to crash or mislead', () => {
  it.each(REFUSALS)('refuses %s', (_name, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });

  it('follows YAML aliases instead of calling them unsupported values', () => {
    const r = parseTemplate(FILE, 'match: &m {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - &f {proto: tcp, host: 80, from: &src ["198.51.100.0/24"]}\n  - {proto: udp, host: 81, from: *src}\n', BINDINGS);
    expect(r.problems).toEqual([]);
    expect(natSettings(r.template!).forwards.map((f) => f.from.map((c) => c.text))).toEqual([['198.51.100.0/24'], ['198.51.100.0/24']]);
  });

  it('cuts long values in messages and says how long they were', () => {
    expect(problems(fwd(`listen: "${'x'.repeat(200)}"`))).toEqual([`${FILE}:4:36: listen: "${'x'.repeat(80)}…" (200 characters) is not an IPv4 or IPv6 address`]);
  });
});

describe('virtwire templates check', () => {
  async function check(files: Record<string, string>): Promise<{ code: number; lines: string[] }> {
    const dir = writeFiles(join(tempDir(), 'templates'), files);
    const run = tempDir();
    let printed = '';
    const code = await main(['templates', 'check', '--dir', dir], { ...DEFAULT_PATHS, templatesDir: dir, runDir: run, stateDir: join(run, 'state'), logFile: join(run, 'log'), configFile: join(run, 'none.yaml') }, (s) => { printed += s; });
    return { code, lines: printed.split('\n').filter(Boolean).map((l) => l.replace(`${dir}/`, '')) };
  }

  it('reports every new refusal as file:line:column instead of crashing or printing ok', async () => {
    const files = Object.fromEntries(REFUSALS.map(([, yaml], i) => [`t${String(i).padStart(2, '0')}.yaml`, yaml]));
    const { code, lines } = await check(files);
    expect(code).toBe(1);
    const expected = REFUSALS.flatMap(([, , msgs], i) => msgs.map((m) => m.replace(`${FILE}:`, `t${String(i).padStart(2, '0')}.yaml:`)));
    expect(lines).toEqual(expected);
  });

  it('still says ok for a valid template beside them', async () => {
    const { code, lines } = await check({ 'good.yaml': 'match: {domains: ["web-[0-9]*"]}\nbinding: nat\nforwards: [{proto: tcp, host: 8080, listen: "2001:db8::1"}]\n', 'bad.yaml': 'match: {domains: ["[z-a]"]}\nbinding: nat\n' });
    expect(code).toBe(1);
    expect(lines).toEqual([
      'bad.yaml:1:19: match.domains: "[z-a]": the range "z-a" goes from high to low and would match nothing; write "a-z"',
      // 2001:db8::1 (documentation range) is not an address of this machine.
      'good.yaml:3:12: warning: listen 2001:db8::1 is not an address of this host now; the forward matches nothing until it is',
      expect.stringMatching(/^ok {2}.*good\.yaml: binding nat, priority 0, 1 forward\(s\), domains \["web-\[0-9\]\*"\]$/),
    ]);
  });
});

describe('binding settings are the binding\'s', () => {
  // A second binding beside nat, as the parser sees bindings: the keys it owns and how to read them.
  const bridgeLike = {
    name: 'bridgeish', settingsKeys: ['widget'], newSettings: () => ({ names: [] as string[] }),
    readSettingsKey: (y: YamlFile, _key: string, value: Node | null, into: { names: string[] }) => {
      const v = y.scalar(value);
      if (typeof v === 'string') into.names.push(v); else y.report(value, 'widget must be text');
    },
    finishSettings: () => {},
  };
  const catalog = new Map<string, BindingSettingsReader>([...BINDINGS, ['bridgeish', bridgeLike as BindingSettingsReader]]);
  const parse = (yaml: string) => parseTemplate(FILE, yaml, catalog);

  it('reads the keys of the chosen binding into its settings', () => {
    expect(parse('match: {domains: ["*"]}\nbinding: bridgeish\nwidget: br0\n').template?.settings).toEqual({ names: ['br0'] });
  });

  it("refuses another binding's key with one line naming the binding's own keys", () => {
    expect(parse('match: {domains: ["*"]}\nbinding: bridgeish\nforwards: []\n').problems.map(formatProblem)).toEqual([
      `${FILE}:3:1: key "forwards" is not a setting of binding bridgeish; its settings: widget`,
    ]);
    expect(parse('match: {domains: ["*"]}\nbinding: nat\nwidget: br0\n').problems.map(formatProblem)).toEqual([
      `${FILE}:3:1: key "widget" is not a setting of binding nat; its settings: address, forwards`,
    ]);
  });

  it('with no valid binding, still reports the problems of a key only one binding owns', () => {
    expect(parse('match: {domains: ["*"]}\nbinding: nope\nwidget: [x]\n').problems.map(formatProblem)).toEqual([
      `${FILE}:2:10: binding must be one of: nat, bridge, ovs, isolated, macvtap, passt, sriov, bridgeish; found string "nope"`,
      `${FILE}:3:9: widget must be text`,
    ]);
  });
});

// Property: whatever a template file holds, parseTemplate returns (problems
// with file:line:column and one-line messages, or a template) and never
// throws; what validates resolves and renders into a script nft accepts.
import { bindingTakes } from '../../src/bindings/registry.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseTemplate, type Template } from '../../src/policy/template.js';
import { globMatches } from '../../src/model/glob.js';
import { subnetOf } from '../../src/model/addr.js';
import { resolveForwards } from '../../src/engine/wiring.js';
import { templatesForNics } from '../../src/policy/match.js';
import { parseDomain } from '../../src/xml/domain.js';
import { DEFAULT_CONFIG, parseConfig } from '../../src/policy/config.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { quoted } from '../../src/errors.js';
import { defaultNetwork, domainXml } from './helpers.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { addressText, cidrText, globText, holds, hostileNumber, hostileText, isOneLine, nftAccepts, userErrorOf, w } from './fuzz.js';
import { BINDINGS } from '../../src/bindings/registry.js';

const FILE = '/etc/virtwire/templates/fuzz.yaml';
const NET = defaultNetwork();
// The host's addresses, for metadata `listen` (must be one of them).
const HOST_ADDRESSES = ['192.0.2.1', '203.0.113.1', '2001:db8:77::1'];
/** The VM templates are resolved for: its NIC has an IPv4 and an IPv6 reservation in the fixture network. */
const VM = parseDomain(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]));

const anything = fc.oneof(hostileText, hostileNumber, fc.boolean(), fc.constant(null), fc.array(hostileText, { maxLength: 2 }), fc.dictionary(hostileText, hostileText, { maxKeys: 2 }));

/**
 * The values of one field: `clean` ones (mostly valid, so templates get
 * through validation to resolution and nft) or `hostile` ones (anything).
 */
interface Field<T> { clean: fc.Arbitrary<T>; hostile: fc.Arbitrary<unknown> }
const pick = <T>(f: Field<T>, clean: boolean): fc.Arbitrary<unknown> => (clean ? f.clean : fc.oneof(w(3, f.clean), w(2, f.hostile), w(1, anything)));

const ports: Field<number | string> = {
  clean: fc.oneof(w(3, fc.integer({ min: 1, max: 65535 })), w(1, fc.tuple(fc.integer({ min: 1, max: 65000 }), fc.integer({ min: 0, max: 40 })).map(([lo, n]) => `${lo}-${lo + n}`))),
  hostile: fc.oneof(fc.constantFrom('1-1024', '1-1025', '65535', '0', '70000', ' 80 - 81 ', '80-79', '1-65535'), hostileNumber, hostileText),
};
/** Unicast addresses that are nobody's special case. */
const plainAddress = fc.oneof(
  fc.integer({ min: 1, max: 254 }).map((n) => `203.0.113.${n}`),
  fc.integer({ min: 1, max: 0xffff }).map((n) => `2001:db8::${n.toString(16)}`),
);
const listens: Field<string> = { clean: plainAddress, hostile: fc.oneof(fc.ipV4(), fc.ipV6(), addressText) };
const cidrs: Field<string> = {
  clean: fc.oneof(
    fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => subnetOf(a, p).text),
    fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, p]) => subnetOf(a, p).text),
  ),
  hostile: cidrText,
};
/** Guest addresses inside the fixture network (so they resolve), or anything. */
const guestAddresses: Field<string> = {
  clean: fc.oneof(fc.integer({ min: 2, max: 254 }).map((n) => `192.168.122.${n}`), fc.integer({ min: 2, max: 0xffff }).map((n) => `fd00:77::${n.toString(16)}`)),
  hostile: addressText,
};

/** Sometimes one more key: a misspelling, or anything. */
const withExtraKey = <T extends object>(a: fc.Arbitrary<T>, clean: boolean): fc.Arbitrary<T> =>
  clean ? a : fc.tuple(a, fc.option(fc.tuple(fc.oneof(fc.constantFrom('hots', 'forwardz', '__proto__', 'optin'), hostileText), anything), { freq: 4 }))
    .map(([o, extra]) => (extra ? { ...o, [extra[0]]: extra[1] } : o));

/** A forward that should validate: guest range as long as the host range, allow-list of listen's family. */
const cleanForward = fc.record({
  proto: fc.constantFrom('tcp', 'udp'),
  host: ports.clean,
  guestBase: fc.option(fc.integer({ min: 1, max: 65000 })),
  listen: fc.option(plainAddress),
  from: fc.option(fc.array(cidrs.clean, { minLength: 1, maxLength: 3 })),
  description: fc.option(hostileText),
  allowHostConflict: fc.option(fc.boolean()),
}).map(({ guestBase, listen, from, ...rest }) => {
  const [lo, hi = lo] = String(rest.host).split('-').map(Number) as [number, number?];
  const sameFamily = from?.filter((c) => !listen || c.includes(':') === listen.includes(':'));
  const f: Record<string, unknown> = { ...rest, listen, from: sameFamily?.length ? sameFamily : null };
  if (guestBase !== null) f.guest = lo === hi ? guestBase : `${guestBase}-${guestBase + (hi - lo)}`;
  return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== null));
});

const hostileForward = withExtraKey(fc.record({
  proto: fc.oneof(fc.constantFrom('tcp', 'udp'), hostileText),
  host: pick(ports, false),
  guest: pick(ports, false),
  listen: pick(listens, false),
  from: fc.oneof(fc.array(pick(cidrs, false), { maxLength: 4 }), pick(cidrs, false)),
  description: anything,
  allowHostConflict: anything,
}, { requiredKeys: ['proto', 'host'] }), false);

const forward = (clean: boolean): fc.Arbitrary<unknown> => (clean ? cleanForward : fc.oneof(cleanForward, hostileForward));

const template = (clean: boolean) => withExtraKey(fc.record({
  description: clean ? hostileText : anything,
  match: fc.record({
    domains: fc.array(fc.oneof(w(3, globText), w(2, fc.constantFrom('web-*', '*'))), { minLength: clean ? 1 : 0, maxLength: 3 }),
    networks: fc.array(clean ? fc.constant('default') : fc.oneof(fc.constant('default'), hostileText), { maxLength: 2 }),
    optIn: clean ? fc.boolean() : anything,
  }, { requiredKeys: clean ? ['domains'] : [] }),
  priority: clean ? fc.integer({ min: -1000, max: 1000 }) : fc.oneof(fc.integer({ min: -1000, max: 1000 }), hostileNumber, hostileText),
  binding: clean ? fc.constant('nat') : fc.oneof(fc.constant('nat'), hostileText),
  address: fc.oneof(pick(guestAddresses, clean), fc.array(pick(guestAddresses, clean), { maxLength: clean ? 1 : 3 })),
  forwards: fc.array(forward(clean), { maxLength: 5 }),
}, { requiredKeys: clean ? ['match', 'binding', 'forwards'] : ['match', 'binding'] }), clean);

/** YAML with flow collections and values written bare, as a careless admin might. */
function bareYaml(value: unknown, top = true): string {
  if (Array.isArray(value)) return `[${value.map((v) => bareYaml(v, false)).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => `${k}: ${bareYaml(v, false)}`);
    return top ? `${entries.join('\n')}\n` : `{${entries.join(', ')}}`;
  }
  return String(value);
}

/** Template text three ways: proper YAML, JSON (also YAML), bare values. */
const templateText = fc.tuple(fc.oneof(template(true), template(false)), fc.constantFrom('yaml', 'yaml', 'yaml', 'json', 'bare')).map(([t, how]) =>
  how === 'yaml' ? stringify(t) : how === 'json' ? JSON.stringify(t) : bareYaml(t));

const YAML_BITS = [
  'forwards', 'allowedHostPorts', 'firewall', 'mark', '0x10000000',
  'match', 'domains', 'binding', 'nat', 'forwards', 'proto', 'tcp', 'udp', 'host', 'guest', 'listen', 'from', 'address', 'priority', 'optIn',
  'true', '80', '8000-8010', '198.51.100.0/24', 'fe80::1%eth0', '::ffff:127.0.0.1', '[z-a]*', 'web-*',
  ':', ': ', '- ', '\n', '\n  ', '\n    ', '  ', '\t', '[', ']', '{', '}', ', ', '"', "'", '&a ', '*a', '!!str ', '!!binary ', '!!set ', '!!timestamp ',
  '? ', '#', '---\n', '...\n', '%YAML 1.2\n', '<<: ', '|\n', '>-\n', '\\', '~', 'null',
];
/** Text that is YAML-ish, mostly not valid. */
const yamlishText = fc.array(fc.oneof(w(6, fc.constantFrom(...YAML_BITS)), w(1, hostileText)), { maxLength: 60 }).map((bits) => bits.join(''));

/** The checks every parse must pass; returns the template when it validated. */
function parsesCleanly(text: string): Template | undefined {
  const r = parseTemplate(FILE, text, BINDINGS);
  const lines = text.split(/\r\n|\r|\n/).length;
  for (const p of r.problems) {
    expect(p.file).toBe(FILE);
    expect(Number.isInteger(p.line) && p.line >= 1 && p.line <= lines + 1, `line ${p.line}`).toBe(true);
    expect(Number.isInteger(p.column) && p.column >= 1, `column ${p.column}`).toBe(true);
    expect(isOneLine(p.message), p.message).toBe(true);
  }
  expect(r.template === undefined).toBe(r.problems.length > 0);
  checkGlobs(r.template?.match.domains ?? r.domains ?? []);
  return r.template;
}

/** Validated globs never throw, on any name. */
function checkGlobs(globs: readonly string[]): void {
  for (const g of globs) for (const name of ['', 'web-1', 'é😀\n"', g, `${g}x`]) globMatches(g, name);
}

/** The template's forwards for the fixture VM (whatever its globs say), or a UserError's message. */
function resolved(t: Template): ResolvedForward[] {
  const everywhere: Template = { ...t, match: { domains: ['*'], optIn: false } };
  let forwards: ResolvedForward[] = [];
  const refused = userErrorOf(() => {
    forwards = resolveForwards({ domain: VM, templates: { templates: [everywhere], broken: [] }, config: DEFAULT_CONFIG, network: (n) => (n === 'default' ? NET : undefined), hostAddresses: () => HOST_ADDRESSES }).forwards;
  });
  if (refused !== undefined) {
    expect(isOneLine(refused), refused).toBe(true);
    expect(refused.startsWith(`VM ${quoted(VM.name)}`), refused).toBe(true);
  }
  return forwards;
}

/** Matching the real template against a VM of any name returns or refuses in one line. */
function matchesAnyName(t: Template, name: string): void {
  const domain = { ...VM, name };
  const refused = userErrorOf(() => templatesForNics(domain, { templates: [t], broken: [] }, bindingTakes));
  if (refused !== undefined) expect(isOneLine(refused), refused).toBe(true);
}

describe('template parsing properties', () => {
  let ns: ScratchNetns | undefined;
  beforeAll(() => { if (canNetns || mustRunEverything) ns = new ScratchNetns(); });
  afterAll(() => ns?.delete());

  /** Parses every text, checks what validated end to end, and has nft check all their forwards in one script. */
  async function endToEnd(texts: readonly string[], names: readonly string[]): Promise<void> {
    const forwards: ResolvedForward[] = [];
    for (const text of texts) {
      const t = parsesCleanly(text);
      if (!t) continue;
      for (const name of names) matchesAnyName(t, name);
      forwards.push(...resolved(t));
    }
    if (ns && forwards.length) await nftAccepts(ns, forwards);
  }

  it('structured templates with hostile values', async () => {
    await holds(fc.asyncProperty(fc.array(templateText, { minLength: 1, maxLength: 6 }), fc.array(hostileText, { maxLength: 3 }), endToEnd), 120, 'templates with hostile values: parsed, matched, resolved, loaded by `nft -c`');
  });

  it('YAML-ish text', async () => {
    await holds(fc.asyncProperty(fc.array(yamlishText, { minLength: 1, maxLength: 8 }), fc.array(hostileText, { maxLength: 2 }), endToEnd), 120, 'YAML-ish text as templates');
  });

  it('virtwire.yaml: settings or a one-line UserError, whatever it holds', async () => {
    const config = fc.oneof(yamlishText, fc.record({
      forwards: fc.record({ allowedHostPorts: fc.array(fc.oneof(ports.clean, ports.hostile), { maxLength: 3 }) }, { requiredKeys: [] }),
      firewall: fc.record({ mark: fc.oneof(fc.constantFrom('0x10000000', 1, 3, 0x100000000, '0x0'), hostileNumber, hostileText) }, { requiredKeys: [] }),
    }, { requiredKeys: [] }).map((c) => stringify(c)));
    await holds(fc.property(config, (text) => {
      const refused = userErrorOf(() => parseConfig('/etc/virtwire/virtwire.yaml', text));
      if (refused !== undefined) expect(isOneLine(refused) && refused.startsWith('/etc/virtwire/virtwire.yaml:'), refused).toBe(true);
    }), 200, 'arbitrary virtwire.yaml');
  });

  it('validates a fair share of the structured templates (the generator reaches the end of the pipeline)', () => {
    const sample = fc.sample(templateText, { seed: 1, numRuns: 300 });
    const valid = sample.filter((text) => parseTemplate(FILE, text, BINDINGS).template);
    expect(valid.length).toBeGreaterThan(60);
    expect(valid.filter((text) => resolved(parseTemplate(FILE, text, BINDINGS).template as Template).length > 0).length).toBeGreaterThan(50);
  });
});

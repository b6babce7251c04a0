// Property: whatever a VM owner writes in the domain's <metadata> (virtwire's
// namespace, any attributes), the hook's path (parseDomain, then
// resolveForwards, which validates each forward) either refuses with a
// one-line UserError naming the VM, or yields forwards nft accepts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseDomain, METADATA_NS, type DomainInfo } from '../../src/xml/domain.js';
import { resolveForwards } from '../../src/engine/wiring.js';
import { DEFAULT_CONFIG } from '../../src/policy/config.js';
import { subnetOf } from '../../src/model/addr.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { quoted } from '../../src/errors.js';
import { defaultNetwork, domainXml, set, template } from './helpers.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { addressText, cidrText, holds, hostileText, isOneLine, nftAccepts, userErrorOf, w } from './fuzz.js';

const NET = defaultNetwork();
// The host's addresses, for metadata `listen` (must be one of them).
const HOST_ADDRESSES = ['192.0.2.1', '203.0.113.1', '2001:db8:77::1'];
const TEMPLATES = set(template('optin', 'match: {optIn: true}\npriority: 5\nbinding: nat\n'), template('web', 'match: {domains: ["web-*"]}\nbinding: nat\n'));
const MAC = '52:54:00:77:00:10';

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const metadataPort = fc.oneof(
  w(4, fc.integer({ min: 1024, max: 65535 }).map(String)),
  w(2, fc.tuple(fc.integer({ min: 1024, max: 65000 }), fc.integer({ min: 0, max: 30 })).map(([lo, n]) => `${lo}-${lo + n}`)),
  w(1, fc.constantFrom('22', '0', '65536', '1024-2048', '2048-1024', ' 2000 ', '2e3', '0x800', '')),
  w(1, hostileText),
);
const cleanCidr = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => subnetOf(a, p).text),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, p]) => subnetOf(a, p).text),
);
const VALUES: Record<string, fc.Arbitrary<string>> = {
  proto: fc.oneof(w(6, fc.constantFrom('tcp', 'udp')), w(1, fc.constantFrom('TCP', 'sctp', '')), w(1, hostileText)),
  host: metadataPort,
  guest: metadataPort,
  listen: fc.oneof(w(3, fc.integer({ min: 1, max: 254 }).map((n) => `203.0.113.${n}`)), w(1, fc.constant('2001:db8::1')), w(3, addressText), w(1, hostileText)),
  from: fc.tuple(fc.array(fc.oneof(w(4, cleanCidr), w(2, cidrText), w(1, hostileText)), { maxLength: 4 }), fc.constantFrom(' ', ',', ', ', '\t', '\n'))
    .map(([cs, sep]) => cs.join(sep)),
  description: hostileText,
  nic: fc.oneof(w(3, fc.constant(MAC)), w(1, fc.constant(MAC.toUpperCase())), w(1, fc.constant('52:54:00:00:00:01')), w(1, hostileText)),
};
const attrName = fc.oneof(
  w(12, fc.constantFrom(...Object.keys(VALUES))),
  w(1, fc.constantFrom('allowHostConflict', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'vw:host', 'xmlns:z')),
  w(1, fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,8}$/)),
);
const attribute = attrName.chain((name) => fc.tuple(fc.constant(name), Object.hasOwn(VALUES, name) ? VALUES[name] as fc.Arbitrary<string> : hostileText));
/** A forward that should pass: proto and a host port inside allowedHostPorts, nothing else. */
const plainForward = fc.tuple(fc.constantFrom('tcp', 'udp'), fc.integer({ min: 1024, max: 65535 })).map(([p, h]) => `<forward proto="${p}" host="${h}"/>`);
const forwardElement = fc.uniqueArray(attribute, { selector: ([k]) => k, maxLength: 7 })
  .map((attrs) => `<forward ${attrs.map(([k, v]) => `${k}="${xmlEscape(v)}"`).join(' ')}/>`);
const templateElement = fc.oneof(w(4, fc.constant('optin')), w(1, fc.constant('web')), w(1, hostileText)).map((n) => `<template name="${xmlEscape(n)}"/>`);
/** Unescaped bits: broken XML, entities, comments, CDATA, stray elements. */
const rawBit = fc.oneof(hostileText, fc.constantFrom('<', '&', '&amp;', '&#0;', '&#x2028;', '&bogus;', '<!-- c -->', '<![CDATA[x]]>', '<forward/>', '</forward>', '<x:forward xmlns:x="urn:other"/>', '<template/>'));

const wiring = fc.record({
  prefix: fc.constantFrom('', 'vw', 'x'),
  ns: fc.oneof(w(8, fc.constant(METADATA_NS)), w(1, fc.constantFrom(`${METADATA_NS}/`, 'urn:other', ''))),
  children: fc.oneof(
    fc.array(fc.oneof(w(3, forwardElement), w(3, plainForward), w(3, templateElement), w(1, rawBit)), { maxLength: 6 }),
    fc.tuple(fc.array(plainForward, { minLength: 1, maxLength: 3 }), fc.array(forwardElement, { maxLength: 1 })).map(([plain, odd]) => ['<template name="optin"/>', ...plain, ...odd]),
  ),
}).map(({ prefix, ns, children }) => {
  const p = prefix ? `${prefix}:` : '';
  const kids = prefix ? children.map((c) => c.replace(/^<(\/?)(forward|template)\b/, `<$1${p}$2`)) : children;
  return `<${p}wiring xmlns${prefix ? `:${prefix}` : ''}="${xmlEscape(ns)}">${kids.join('')}</${p}wiring>`;
});

const domainName = fc.oneof(w(3, fc.constant('web-1')), w(1, fc.constant('alice-vm')), w(1, hostileText));
const domain = fc.tuple(domainName, fc.array(wiring, { maxLength: 2 })).map(([name, metas]) => domainXml(name, [{ mac: MAC }], metas.join('')));

/** The hook's path for one domain XML: forwards, or a checked refusal. */
function hookPath(xml: string): ResolvedForward[] {
  let dom: DomainInfo | undefined;
  const bad = userErrorOf(() => { dom = parseDomain(xml); });
  if (bad !== undefined || !dom) {
    expect(isOneLine(bad ?? ''), bad).toBe(true);
    expect(/^(domain XML|VM ")/.test(bad ?? ''), bad).toBe(true);
    return [];
  }
  const d = dom;
  let forwards: ResolvedForward[] = [];
  const refused = userErrorOf(() => {
    forwards = resolveForwards({ domain: d, templates: TEMPLATES, config: DEFAULT_CONFIG, network: (n) => (n === 'default' ? NET : undefined), hostAddresses: () => HOST_ADDRESSES }).forwards;
  });
  if (refused !== undefined) {
    expect(isOneLine(refused), refused).toBe(true);
    expect(refused.startsWith(`VM ${quoted(d.name)}`), refused).toBe(true);
  }
  return forwards;
}

describe('domain metadata properties', () => {
  let ns: ScratchNetns | undefined;
  beforeAll(() => { if (canNetns || mustRunEverything) ns = new ScratchNetns(); });
  afterAll(() => ns?.delete());

  it('arbitrary <metadata>: a one-line UserError naming the VM, or forwards nft accepts', async () => {
    await holds(fc.asyncProperty(fc.array(domain, { minLength: 1, maxLength: 6 }), async (xmls) => {
      const forwards = xmls.flatMap(hookPath);
      if (ns && forwards.length) await nftAccepts(ns, forwards);
    }), 150, 'arbitrary domain <metadata> through the hook\'s path and `nft -c`');
  });

  it('parseDomain escapes control characters of the XML in its message (src/xml/domain.ts)', () => {
    const xml = domainXml('web-1', [{ mac: MAC }], '<a\u001b[2Jb/>');
    expect(isOneLine(userErrorOf(() => parseDomain(xml)) ?? '')).toBe(true);
  });

  it('a template name with C1 controls or U+2028 is escaped in the refusal (errors.ts quoted())', () => {
    const domain = parseDomain(domainXml('web-1', [{ mac: MAC }], `<wiring xmlns="${METADATA_NS}"><template name="\u009b2J\u2028"/></wiring>`));
    const refused = userErrorOf(() => resolveForwards({ domain, templates: TEMPLATES, config: DEFAULT_CONFIG, network: () => NET, hostAddresses: () => HOST_ADDRESSES }));
    expect(isOneLine(refused ?? '')).toBe(true);
  });

  it('a fair share of the generated domains gets forwards (the generator reaches nft)', () => {
    const sample = fc.sample(domain, { seed: 1, numRuns: 300 });
    expect(sample.filter((xml) => hookPath(xml).length > 0).length).toBeGreaterThan(30);
  });
});

// The define-time rewrite on the XML corpus (test/data/xml/domain-*-in.xml,
// virt-install / virt-manager / hand-written domains with foreign metadata,
// comments, several NICs, hostdevs), through the same steps `virtwire apply`
// takes: MACs for NICs without one, templates matched, forwards resolved,
// decisions recorded. Expected files in test/data/rewrite/NAME-out.xml,
// reviewed as the diff against the input; only UPDATE_EXPECTED=1 writes them.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseXmlDocument } from '../../src/xml/document.js';
import { parseDomain } from '../../src/xml/domain.js';
import { parseNetwork } from '../../src/xml/network.js';
import { parseTemplate } from '../../src/policy/template.js';
import { DEFAULT_CONFIG } from '../../src/policy/config.js';
import { BINDINGS } from '../../src/bindings/registry.js';
import { resolveForwards } from '../../src/engine/wiring.js';
import { recordOf, staleRecord } from '../../src/engine/record.js';
import { assignMissingMacs, rewriteDomainXml, writeRecord } from '../../src/rewrite/domain.js';
import type { RecordedNic } from '../../src/model/record.js';
import { ROOT } from './helpers.js';
import { mustRunEverything } from './netns.js';
import { corpusNames, haveValidator, haveVirsh, libvirtVersion, virshTest, virtXmlValidate, XML_DATA } from '../support/libvirt-xml.js';

const OUT_DIR = join(ROOT, 'test', 'data', 'rewrite');
const NAMES = corpusNames().filter((n) => n.startsWith('domain-'));
const NET = parseNetwork(readFileSync(join(XML_DATA, 'network-nat-dual-in.xml'), 'utf8'));

// One template for every domain on any network: binding nat with a fixed
// address in the corpus network's subnets (no reservation needed) and two forwards.
const TEMPLATE = `match: {domains: ["*"]}
binding: nat
address: [192.168.100.50, "fd00:100::50"]
forwards:
  - {proto: tcp, host: 2222, guest: 22}
  - {proto: udp, host: "6000-6001", guest: "7000-7001", from: ["198.51.100.0/24"]}
`;
const OPT_IN = 'match: {optIn: true}\npriority: 10\nbinding: nat\naddress: 192.168.100.51\nforwards: []\n';
const templates = {
  templates: [['lab.yaml', TEMPLATE], ['lab-nat.yaml', OPT_IN]].map(([file, text]) => {
    const t = parseTemplate(file as string, text as string, BINDINGS);
    if (!t.template) throw new Error(`${file}: ${JSON.stringify(t.problems)}`);
    return t.template;
  }),
  broken: [],
};

/** Deterministic MACs for NICs without one (apply uses random ones, as libvirt does). */
function counterMacs(): (taken: ReadonlySet<string>) => string {
  let n = 0;
  return (taken) => {
    for (;;) {
      const mac = `52:54:00:00:00:${(++n).toString(16).padStart(2, '0')}`;
      if (!taken.has(mac)) return mac;
    }
  };
}

/** What apply makes of a domain's XML (src/cli/wire.ts, without libvirt). */
function wire(xml: string): string {
  const doc = parseXmlDocument(xml);
  assignMissingMacs(doc, counterMacs());
  // A domain never defined (hand-written input) has no <uuid> yet: libvirt gives it one at define.
  const text = String(doc);
  const domain = parseDomain(text.includes('<uuid>') ? text : text.replace(/<\/name>/, '</name><uuid>00000000-0000-4000-8000-000000000000</uuid>'), 'corpus');
  const plan = resolveForwards({ domain, templates, config: DEFAULT_CONFIG, network: (name) => ({ ...NET, name }), hostAddresses: () => [] });
  writeRecord(doc, recordOf(plan));
  return String(doc);
}

const outFile = (name: string): string => join(OUT_DIR, `${name}-out.xml`);
const validatorState = haveValidator ? 'run' : mustRunEverything ? 'fail' : 'skip';
const virshState = haveVirsh ? 'run' : mustRunEverything ? 'fail' : 'skip';
/** libvirt 9.0 refuses this one as input (see test/data/xml/README.md). */
const defineMinMajor: Record<string, number> = { 'domain-linux-q35-uefi': 11 };

describe.each(NAMES)('%s', (name) => {
  const input = readFileSync(join(XML_DATA, `${name}-in.xml`), 'utf8');

  it('gives the checked-in test/data/rewrite/NAME-out.xml', () => {
    const out = wire(input);
    if (process.env.UPDATE_EXPECTED === '1') writeFileSync(outFile(name), out);
    expect(existsSync(outFile(name)), `${outFile(name)} is missing; review the output and create it with UPDATE_EXPECTED=1`).toBe(true);
    expect(out).toBe(readFileSync(outFile(name), 'utf8'));
    // A domain with no NIC on a libvirt network is not wired: left byte-identical.
    expect(out !== input, 'changed exactly when the domain has a network NIC').toBe(/<interface\s+type=["']network/.test(input));
  });

  it('is idempotent: rewriting its own output is byte-identical', () => {
    const once = wire(input);
    expect(wire(once)).toBe(once);
  });

  it('keeps everything it does not own byte for byte: only lines are added, inside virtwire\'s element, <metadata> or as a <mac>', () => {
    const out = wire(input).split('\n');
    const kept = input.split('\n');
    let i = 0;
    const added: string[] = [];
    for (const line of out) {
      if (i < kept.length && line === kept[i]) i++;
      else added.push(line);
    }
    expect(i, 'every input line is in the output, in order').toBe(kept.length);
    for (const line of added) expect(line.trim()).toMatch(/^(<\/?(virtwire|vw):[a-z]+[ >/]|<\/?metadata>|<mac address=)/);
  });

  it.skipIf(validatorState === 'skip')('the output passes virt-xml-validate', async () => {
    if (validatorState === 'fail') throw new Error('virt-xml-validate or xmllint is missing, and CI=true');
    const v = await virtXmlValidate(outFile(name));
    expect(v.ok, v.output).toBe(true);
  });

  const libvirtMajor = haveVirsh ? libvirtVersion()[0] : 0;
  // On a libvirt older than the file needs, the known refusal is what is checked (not a skip).
  const tooOld = haveVirsh && libvirtMajor < (defineMinMajor[name] ?? 0);
  it.skipIf(virshState === 'skip')(tooOld ? `is refused by this libvirt ${libvirtMajor}.x as input, as expected (test driver)` : 'after libvirt reformats it (define + dumpxml --inactive, test driver), a rewrite changes nothing: no redefine loop', async () => {
    if (virshState === 'fail') throw new Error('virsh is missing, and CI=true');
    // A domain never defined (hand-written) has no <uuid>: look it up by its name, which libvirt keeps.
    const key = /<uuid>([^<]+)<\/uuid>/.exec(input)?.[1] ?? parseXmlDocument(input).find('domain/name')?.text() ?? '';
    const v = await virshTest([`define '${outFile(name)}'`, `dumpxml --inactive --security-info '${key.replace(/'/g, "\\'")}'`]);
    expect(v.ok, v.output).toBe(!tooOld);
    if (tooOld) return;
    const reformatted = v.output.slice(v.output.indexOf('<domain'));
    const out = readFileSync(outFile(name), 'utf8');
    expect(reformatted.includes(':applied>'), 'the record survives libvirt').toBe(out.includes(':applied>'));
    expect(wire(reformatted)).toBe(reformatted);
  });
});

describe('the record', () => {
  const input = readFileSync(join(XML_DATA, 'domain-linux-q35-uefi-in.xml'), 'utf8');

  it('is read back from the domain XML as written', () => {
    const out = wire(input);
    const domain = parseDomain(out);
    const plan = resolveForwards({ domain, templates, config: DEFAULT_CONFIG, network: (name) => ({ ...NET, name }), hostAddresses: () => [] });
    expect(domain.metadata.record).toEqual(recordOf(plan));
    expect(staleRecord(domain, plan)).toEqual([]);
    expect(domain.metadata.record?.[0]?.forwards.map((f) => f.host)).toEqual(['2222', '2222', '6000-6001']);
  });

  it('names what changed when the templates give something else (stale)', () => {
    const domain = parseDomain(wire(input));
    const edited = { ...templates, templates: templates.templates.map((t) => parseTemplate('lab.yaml', TEMPLATE.replace('host: 2222', 'host: 2223'), BINDINGS).template ?? t) };
    const plan = resolveForwards({ domain, templates: { ...edited, templates: [edited.templates[0]!, templates.templates[1]!] }, config: DEFAULT_CONFIG, network: (name) => ({ ...NET, name }), hostAddresses: () => [] });
    expect(staleRecord(domain, plan)).toEqual([
      `NIC ${domain.nics[0]!.mac}: +tcp *:2223 -> 192.168.100.50:22, +tcp [*]:2223 -> [fd00:100::50]:22, -tcp *:2222 -> 192.168.100.50:22, -tcp [*]:2222 -> [fd00:100::50]:22`,
    ]);
  });

  it('goes when no template wires the domain any more, and nothing else of virtwire\'s element does', () => {
    const out = wire(readFileSync(join(XML_DATA, 'domain-hostdev-nics-in.xml'), 'utf8'));
    const doc = parseXmlDocument(out);
    writeRecord(doc, []);
    const cleared = String(doc);
    expect(cleared).not.toContain('applied');
    expect(cleared).toContain('<vw:forward proto="tcp" host="20022" guest="22" description="ssh &amp; scp"/>');
    expect(rewriteDomainXml(cleared, { record: [] })).toEqual({ xml: cleared, changed: false });
  });

  it('a NIC without a MAC gets a fresh one first, never one the domain uses', () => {
    const doc = parseXmlDocument(readFileSync(join(XML_DATA, 'domain-handwritten-in.xml'), 'utf8'));
    const assigned = assignMissingMacs(doc, counterMacs());
    expect(assigned).toEqual(['52:54:00:00:00:01', '52:54:00:00:00:02']);
    expect(assignMissingMacs(doc, () => { throw new Error('not asked'); })).toEqual([]);
    const record: RecordedNic[] = [{ mac: '52:54:00:00:00:02', template: 'x', binding: 'nat', bindingVersion: 1, forwards: [] }];
    writeRecord(doc, record);
    expect(parseDomain(String(doc).replace('</name>', '</name><uuid>00000000-0000-4000-8000-000000000000</uuid>')).metadata.record).toEqual(record);
  });
});

// libvirt-style checked-in expected files for in-place XML edits:
// test/data/xml/NAME-in.xml → the edits below → NAME-out.xml, byte for byte.
// Review a change here by reading the diff of NAME-in.xml against
// NAME-out.xml: only the edited lines may differ. A missing or different
// expected file fails; only an explicit UPDATE_EXPECTED=1 writes them.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseXmlDocument, type ElementSpec, type XElement, type XmlDocument } from '../../src/xml/document.js';
import { mustRunEverything } from './netns.js';
import { corpusNames, haveValidator, haveVirsh, libvirtDefines, libvirtVersion, virtXmlValidate, XML_DATA } from '../support/libvirt-xml.js';

const NS = 'https://virtwire.dev/xmlns/domain/1';

function must(found: XElement | undefined, what: string): XElement {
  if (!found) throw new Error(`test edit: no ${what}`);
  return found;
}

function nicByMac(doc: XmlDocument, mac: string): XElement | undefined {
  return doc.findAll('domain/devices/interface').find((i) => i.find('mac')?.getAttribute('address') === mac);
}

/**
 * virtwire's element in the domain's <metadata>, whatever its prefix, with
 * these children (local names; they take the element's prefix). Makes
 * <metadata> where libvirt puts it (after name, uuid, genid, title,
 * description) when the domain has none.
 */
function ensureWiring(doc: XmlDocument, children: ElementSpec[]): void {
  const dom = doc.root;
  let meta = dom.elements('metadata')[0];
  if (!meta) {
    const after = ['description', 'title', 'genid', 'uuid', 'name'].map((n) => dom.elements(n)[0]).find((e) => e !== undefined);
    meta = dom.insertElement({ name: 'metadata' }, after ? { after } : {});
  }
  const mine = meta.elements(`{${NS}}*`)[0];
  const prefixed = (prefix: string, specs: ElementSpec[]): ElementSpec[] =>
    specs.map((s) => ({ ...s, name: prefix ? `${prefix}:${s.name}` : s.name, children: s.children && prefixed(prefix, [...s.children]) }));
  if (mine) mine.replaceChildren(prefixed(mine.prefix, children));
  else meta.appendElement({ name: 'virtwire:wiring', attrs: { 'xmlns:virtwire': NS }, children: prefixed('virtwire', children) });
}

/** Each corpus file's edits, written the way the rewrite engine must: idempotent (ensure, not add). */
const EDITS: Record<string, (doc: XmlDocument) => void> = {
  // macvtap binding: the bridge NIC becomes type='direct' on eno1; metadata beside libosinfo's.
  'domain-linux-q35-uefi': (doc) => {
    ensureWiring(doc, [{ name: 'template', attrs: { name: 'web' } }, { name: 'forward', attrs: { proto: 'tcp', host: '8080', guest: '80' } }]);
    const nic = must(nicByMac(doc, '52:54:00:3c:8e:1b'), 'NIC 52:54:00:3c:8e:1b');
    nic.setAttribute('type', 'direct');
    nic.upsertElement('source', { name: 'source', attrs: { dev: 'eno1', mode: 'bridge' } });
  },
  // A second NIC (multi-line element) after the existing one.
  'domain-windows-hyperv-tpm': (doc) => {
    ensureWiring(doc, [{ name: 'template', attrs: { name: 'desktops' } }]);
    if (!nicByMac(doc, '52:54:00:9a:41:08')) {
      const devices = must(doc.find('domain/devices'), '<devices>');
      const last = devices.elements('interface').at(-1);
      devices.insertElement(
        {
          name: 'interface',
          attrs: { type: 'network' },
          children: [
            { name: 'mac', attrs: { address: '52:54:00:9a:41:08' } },
            { name: 'source', attrs: { network: 'isolated' } },
            { name: 'model', attrs: { type: 'e1000e' } },
          ],
        },
        last ? { after: last } : {},
      );
    }
  },
  // No <metadata> yet: made after <uuid>. The user-mode NIC goes; the macvtap NIC moves to eno2.
  'domain-i440fx-minimal': (doc) => {
    ensureWiring(doc, [{ name: 'template', attrs: { name: 'lab' } }]);
    doc.find("domain/devices/interface[@type='user']")?.remove();
    must(doc.find("domain/devices/interface[@type='direct']/source"), 'direct source').setAttribute('dev', 'eno2');
  },
  // An SR-IOV VF NIC with a VLAN (nested children) after the network NIC.
  'domain-aarch64-virt': (doc) => {
    ensureWiring(doc, [{ name: 'template', attrs: { name: 'arm-vf' } }]);
    if (!nicByMac(doc, '52:54:00:5e:0c:22')) {
      const devices = must(doc.find('domain/devices'), '<devices>');
      devices.insertElement(
        {
          name: 'interface',
          attrs: { type: 'hostdev', managed: 'yes' },
          children: [
            { name: 'mac', attrs: { address: '52:54:00:5e:0c:22' } },
            { name: 'driver', attrs: { name: 'vfio' } },
            { name: 'source', children: [{ name: 'address', attrs: { type: 'pci', domain: '0x0000', bus: '0x41', slot: '0x02', function: '0x3' } }] },
            { name: 'vlan', children: [{ name: 'tag', attrs: { id: '42' } }] },
          ],
        },
        { after: must(doc.find("domain/devices/interface[@type='network']"), 'network NIC') },
      );
    }
  },
  // Existing virtwire metadata under prefix vw: rewritten, with a value holding ' " & < > tab newline.
  // The OVS NIC's VLAN changes; the GPU's second function and the user-mode NIC go.
  'domain-hostdev-nics': (doc) => {
    ensureWiring(doc, [
      { name: 'template', attrs: { name: 'lab-nat' } },
      { name: 'forward', attrs: { proto: 'tcp', host: '20022', guest: '22', description: `ssh & "scp" <2>\t'x'\nline 2` } },
      { name: 'note', text: `R&D's <lab>\n"render" farm` },
    ]);
    must(doc.find("domain/devices/interface[@type='bridge']/vlan/tag"), 'vlan tag').setAttribute('id', '43');
    doc.findAll('domain/devices/hostdev').find((h) => h.find("source/address[@function='0x1']"))?.remove();
    doc.find("domain/devices/interface[@type='user']")?.remove();
  },
  // Hand-written: XML declaration, 4-space indent, double quotes, CDATA, a multi-line start tag, inline <features>.
  'domain-handwritten': (doc) => {
    ensureWiring(doc, [{ name: 'template', attrs: { name: 'router' } }]);
    const wan = must(doc.find("domain/devices/interface[@type='bridge']"), 'bridge NIC');
    if (!wan.find('mac')) wan.insertElement({ name: 'mac', attrs: { address: '52:54:00:5a:00:01' } }, { before: must(wan.find('source'), 'source') });
    must(doc.find("domain/devices/interface[@type='network']"), 'network NIC').setAttribute('trustGuestRxFilters', 'yes');
    must(doc.find('domain/features'), '<features>').upsertElement('pae', { name: 'pae' });
  },
  // DHCP reservations: one added per family, one changed, one removed.
  'network-nat-dual': (doc) => {
    const [v4, v6] = [must(doc.find("network/ip[@address='192.168.100.1']/dhcp"), 'IPv4 dhcp'), must(doc.find("network/ip[@family='ipv6']/dhcp"), 'IPv6 dhcp')];
    v4.upsertElement("host[@mac='52:54:00:5e:0c:21']", { name: 'host', attrs: { mac: '52:54:00:5e:0c:21', name: 'fedora39-arm', ip: '192.168.100.12' } });
    must(v4.elements("host[@mac='52:54:00:a1:b2:01']")[0], 'render02 host').setAttribute('ip', '192.168.100.20');
    v4.elements("host[@name='debian12']")[0]?.remove();
    v6.upsertElement("host[@name='fedora39-arm']", { name: 'host', attrs: { id: '00:03:00:01:52:54:00:5e:0c:21', name: 'fedora39-arm', ip: 'fd00:100::12' } });
  },
  // The first reservation of a network: after <range>.
  'network-isolated': (doc) => {
    must(doc.find('network/ip/dhcp'), 'dhcp').upsertElement("host[@mac='52:54:00:12:34:57']", { name: 'host', attrs: { mac: '52:54:00:12:34:57', ip: '192.168.101.10' } });
  },
  // Tabs and CRLF: the new lines must use both.
  'network-bridge': (doc) => {
    doc.root.upsertElement("portgroup[@name='web']", {
      name: 'portgroup',
      attrs: { name: 'web', default: 'yes' },
      children: [{ name: 'bandwidth', children: [{ name: 'inbound', attrs: { average: '1000', peak: '5000', burst: '1024' } }] }],
    });
  },
  'network-ovs-portgroups': (doc) => {
    must(doc.find("network/portgroup[@name='trunk']/vlan"), 'trunk vlan').upsertElement("tag[@id='30']", { name: 'tag', attrs: { id: '30' } });
    doc.root.upsertElement("portgroup[@name='vlan-20']", { name: 'portgroup', attrs: { name: 'vlan-20' }, children: [{ name: 'vlan', children: [{ name: 'tag', attrs: { id: '20' } }] }] });
  },
  'network-hostdev-pool': (doc) => {
    const forward = must(doc.find('network/forward'), '<forward>');
    forward.elements("address[@function='0x2']")[0]?.remove();
    forward.setAttribute('managed', 'yes'); // already so: no change
    forward.upsertElement("address[@function='0x3']", { name: 'address', attrs: { type: 'pci', domain: '0x0000', bus: '0x41', slot: '0x02', function: '0x3' } });
  },
  'network-macvtap-pool': (doc) => {
    must(doc.find('network/forward'), '<forward>').upsertElement("interface[@dev='enp3s0f2']", { name: 'interface', attrs: { dev: 'enp3s0f2' } });
  },
};

const NAMES = corpusNames();

function rewrite(name: string, xml: string): string {
  const doc = parseXmlDocument(xml);
  (EDITS[name] as (d: XmlDocument) => void)(doc);
  return String(doc);
}

function outFile(name: string): string {
  return join(XML_DATA, `${name}-out.xml`);
}

/** Needs libvirt newer than Debian 12's 9.0 to define (schema-valid everywhere). */
const DEFINE_MIN_MAJOR: Record<string, number> = {
  // libvirt 9.0 refuses <loader readonly=…> beside <os firmware='efi'> as input;
  // 11.3 writes and reads it (firmware resolved at define time).
  'domain-linux-q35-uefi': 11,
};

const validatorState = haveValidator ? 'run' : mustRunEverything ? 'fail' : 'skip';
const virshState = haveVirsh ? 'run' : mustRunEverything ? 'fail' : 'skip';
const libvirtMajor = haveVirsh ? libvirtVersion()[0] : 0;

describe('test/data/xml: every -in.xml has edits and an expected -out.xml, and nothing else is there', () => {
  it('pairs up', () => {
    expect(Object.keys(EDITS).sort()).toEqual(NAMES);
    const outs = readdirSync(XML_DATA).filter((f) => f.endsWith('-out.xml')).map((f) => f.slice(0, -'-out.xml'.length)).sort();
    const update = process.env.UPDATE_EXPECTED === '1';
    if (!update) expect(outs, 'every NAME-out.xml needs a NAME-in.xml').toEqual(NAMES.filter((n) => outs.includes(n)));
  });
});

describe.each(NAMES)('%s', (name) => {
  const input = readFileSync(join(XML_DATA, `${name}-in.xml`), 'utf8');

  it('gives the checked-in NAME-out.xml (review the in → out diff, not code)', () => {
    const out = rewrite(name, input);
    // Only an explicit UPDATE_EXPECTED=1 writes it: a missing expected file is a failure, never a fresh copy of the output.
    if (process.env.UPDATE_EXPECTED === '1') writeFileSync(outFile(name), out);
    expect(existsSync(outFile(name)), `${outFile(name)} is missing; review the output and create it with UPDATE_EXPECTED=1`).toBe(true);
    expect(out).toBe(readFileSync(outFile(name), 'utf8'));
    expect(out, 'the edits change something').not.toBe(input);
  });

  it('is idempotent: the same edits on the output change nothing', () => {
    const once = rewrite(name, input);
    expect(rewrite(name, once)).toBe(once);
  });

  it.skipIf(validatorState === 'skip')('input and output pass virt-xml-validate', async () => {
    if (validatorState === 'fail') throw new Error('virt-xml-validate or xmllint is missing, and CI=true: install libvirt-clients and libxml2-utils');
    for (const file of [join(XML_DATA, `${name}-in.xml`), outFile(name)]) {
      const v = await virtXmlValidate(file);
      expect(v.ok, `${file}: ${v.output}`).toBe(true);
    }
  });

  // On a libvirt older than the file needs, the known refusal is what is checked (not a skip).
  const tooOld = haveVirsh && libvirtMajor < (DEFINE_MIN_MAJOR[name] ?? 0);
  it.skipIf(virshState === 'skip')(tooOld ? `is refused by this libvirt ${libvirtMajor}.x as input, as expected (virsh define, test driver)` : 'input and output are accepted by libvirt\'s parser (virsh define, test driver)', async () => {
    if (virshState === 'fail') throw new Error('virsh is missing, and CI=true: install libvirt-clients');
    for (const file of [join(XML_DATA, `${name}-in.xml`), outFile(name)]) {
      const v = await libvirtDefines(file);
      expect(v.ok, `${file}: ${v.output}`).toBe(!tooOld);
    }
  });
});

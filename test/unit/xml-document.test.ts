import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseXmlDocument, XmlSyntaxError, XElement, type XmlDocument } from '../../src/xml/document.js';
import { parseDomain } from '../../src/xml/domain.js';
import { parseNetwork } from '../../src/xml/network.js';
import { corpusNames, haveVirsh, shellWord, virshTest, XML_DATA } from '../support/libvirt-xml.js';
import { tempDir } from './helpers.js';
import { mustRunEverything } from './netns.js';

const NS = 'https://virtwire.dev/xmlns/domain/1';

function doc(xml: string): XmlDocument {
  return parseXmlDocument(xml);
}

function corpus(name: string): string {
  return readFileSync(join(XML_DATA, `${name}-in.xml`), 'utf8');
}

function syntaxError(xml: string): XmlSyntaxError {
  try {
    parseXmlDocument(xml);
  } catch (err) {
    if (err instanceof XmlSyntaxError) return err;
    throw err;
  }
  throw new Error(`parsed: ${xml}`);
}

describe('parse: well-formed XML only, with line and column', () => {
  it.each([
    ['<a><b></a>', 'closes <b>', 1, 7],
    ['<a>', 'not closed', 1, 4],
    ["<a x='1' x='2'/>", 'appears twice', 1, 10],
    ['<a>&foo;</a>', 'undefined entity &foo;', 1, 4],
    ['<a>R & D</a>', "'&'", 1, 6],
    ['<a>&#0;</a>', 'not an XML character', 1, 4],
    ["<a x='<'/>", "'<' in the value", 1, 7],
    ['<a>\n  <v:b/>\n</a>', 'prefix "v" is not declared', 2, 3],
    ['<a/><b/>', 'second root', 1, 5],
    ['hello <a/>', 'before the root', 1, 1],
    ['<a/> tail', 'after the root', 1, 6],
    ['<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', 'internal subset', 1, 1],
    ['<a><!-- x -- y --></a>', "'--' inside a comment", 1, 4],
    ['<a>\u0001</a>', 'U+0001', 1, 4],
    ['<a/>\n<?xml version="1.0"?>', 'only at the very start', 2, 1],
    ['', 'no root element', 1, 1],
    ["<a x='1'y='2'/>", 'expected whitespace', 1, 9],
    ['<a>]]></a>', "']]>' in text", 1, 4],
    ['<a:b:c/>', 'not a valid element name', 1, 2],
    ["<a xmlns:p='urn:x' xmlns:q='urn:x' p:k='1' q:k='2'/>", 'same namespace and name', 1, 1],
  ])('%j → %s', (xml, message, line, column) => {
    const e = syntaxError(xml);
    expect(e.message).toContain(message);
    expect([e.line, e.column]).toEqual([line, column]);
  });

  it('refuses nesting deeper than libxml2 does (256)', () => {
    expect(syntaxError('<a>'.repeat(300) + '</a>'.repeat(300)).message).toContain('deeper than 256');
    expect(() => doc('<a>'.repeat(256) + '</a>'.repeat(256))).not.toThrow();
  });

  it('keeps a BOM, an XML declaration, a DOCTYPE without subset, PIs, CDATA and CRLF', () => {
    const xml = '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\r\n<!DOCTYPE domain>\r\n<?pi data?>\r\n<domain>\r\n  <x><![CDATA[<&>]]></x>\r\n</domain>\r\n<!-- end -->\r\n';
    expect(String(doc(xml))).toBe(xml);
  });
});

describe('reading: values decoded as libxml2 gives them to libvirt', () => {
  it('decodes the five entities and character references, keeps names byte for byte (no trimming)', () => {
    const d = doc("<domain><name>  a&amp;b &lt;c&gt; &apos;d&apos; &quot;e&quot;&#9;&#x1F600;&#10; </name></domain>");
    expect(d.find('domain/name')?.text()).toBe("  a&b <c> 'd' \"e\"\t\u{1F600}\n ");
  });

  it('normalizes line ends in text, and literal whitespace in attributes (char refs stay)', () => {
    const d = doc("<a x='1\t2\n3\r\n4&#9;5&#10;6&#13;7'>l1\r\nl2\rl3&#13;</a>");
    expect(d.root.getAttribute('x')).toBe('1 2 3 4\t5\n6\r7');
    expect(d.root.text()).toBe('l1\nl2\nl3\r');
  });

  it('reads CDATA as text', () => {
    expect(doc('<a>x<![CDATA[<&>]]>y</a>').root.text()).toBe('x<&>y');
  });

  it('agrees with the read-only readers (parse.ts) on every corpus file they read', () => {
    for (const name of corpusNames()) {
      const xml = corpus(name);
      const d = doc(xml);
      if (name.startsWith('network-')) {
        const n = parseNetwork(xml);
        expect(d.find('network/name')?.text()).toBe(n.name);
        expect(d.find('network/bridge')?.getAttribute('name')).toBe(n.bridge);
      } else if (d.find('domain/uuid')) {
        const info = parseDomain(xml);
        expect(d.find('domain/name')?.text()).toBe(info.name);
        expect(d.findAll('domain/devices/interface').map((i) => i.find('mac')?.getAttribute('address'))).toEqual(info.nics.map((n) => n.mac));
      }
    }
    expect(doc(corpus('domain-hostdev-nics')).find('domain/name')?.text()).toBe("lab&gpu 'render' <02>");
  });
});

describe('finding elements', () => {
  const d = doc(corpus('domain-hostdev-nics'));

  it('by path, attribute value or presence, and *', () => {
    expect(d.findAll('domain/devices/interface').map((i) => i.getAttribute('type'))).toEqual(['network', 'bridge', 'direct', 'user', 'hostdev']);
    expect(d.find("domain/devices/interface[@type='network']/source")?.getAttribute('portgroup')).toBe('mgmt');
    expect(d.findAll('domain/devices/interface[@managed]')).toHaveLength(1);
    expect(d.findAll("domain/devices/*[@managed='yes']").map((e) => e.name)).toEqual(['interface', 'hostdev', 'hostdev']);
    expect(d.findAll('network/name')).toEqual([]);
    expect(d.find('domain/devices/interface/vlan/tag')?.getAttribute('id')).toBe('42');
  });

  it("by namespace URI, whatever the prefix (virtwire's element in <metadata>)", () => {
    const mine = d.find(`domain/metadata/{${NS}}*`);
    expect(mine?.name).toBe('vw:wiring');
    expect(mine?.namespaceURI).toBe(NS);
    expect(mine?.elements(`{${NS}}template`).map((t) => t.getAttribute('name'))).toEqual(['lab-nat']);
    expect(d.find('domain/metadata/{https://example.org/xmlns/cloud/1}instance')?.getAttribute('project')).toBe('render&fx');
    const dflt = doc(`<domain><metadata><wiring xmlns="${NS}"><template name="t"/></wiring><other xmlns=""/></metadata></domain>`);
    expect(dflt.find(`domain/metadata/{${NS}}wiring/{${NS}}template`)?.getAttribute('name')).toBe('t');
    expect(dflt.find('domain/metadata/{}other')?.namespaceURI).toBeNull();
    expect(dflt.find('domain/{}metadata')?.name).toBe('metadata');
  });

  it('namespaced attributes', () => {
    const x = doc("<a xmlns:q='urn:q'><b q:k='1' k='2'/></a>").find('a/b') as XElement;
    expect(x.getAttributeNS('urn:q', 'k')).toBe('1');
    expect(x.getAttributeNS(null, 'k')).toBe('2');
  });

  it('refuses malformed paths', () => {
    for (const p of ['', 'a//b', 'a/', 'a[type]', "a[@t='x]", '{urn:x', 'a b']) expect(() => d.findAll(p), p).toThrow(/invalid XML path/);
  });
});

describe('attributes', () => {
  it('setAttribute keeps quotes and spacing of an existing one and changes only its value', () => {
    const xml = '<a>\n  <b x = "1"  y=\'2\'/>\n</a>\n';
    const d = doc(xml);
    d.find('a/b')?.setAttribute('x', 'new').setAttribute('y', "it's");
    expect(String(d)).toBe('<a>\n  <b x = "new"  y=\'it&apos;s\'/>\n</a>\n');
  });

  it('setAttribute to the value it has leaves the bytes alone, however they were spelled', () => {
    const xml = "<a n='R&#38;D &#x27;x&#39;' m='&#9;'/>";
    const d = doc(xml);
    d.root.setAttribute('n', "R&D 'x'").setAttribute('m', '\t');
    expect(String(d)).toBe(xml);
  });

  it("a new attribute goes last with its element's quotes, on its own line if the last one is", () => {
    const d = doc('<a>\n  <b x="1"/>\n  <c/>\n  <d\n    x=\'1\'/>\n</a>');
    d.find('a/b')?.setAttribute('y', '2');
    d.find('a/c')?.setAttribute('y', '2');
    d.find('a/d')?.setAttribute('y', '2');
    expect(String(d)).toBe('<a>\n  <b x="1" y="2"/>\n  <c y="2"/>\n  <d\n    x=\'1\'\n    y=\'2\'/>\n</a>');
  });

  it('encodes as libvirt does, with tab/newline/CR as character references so they survive', () => {
    const d = doc('<a/>');
    d.root.setAttribute('v', `a&b<c>d'e"f\tg\nh\ri`);
    expect(String(d)).toBe("<a v='a&amp;b&lt;c&gt;d&apos;e&quot;f&#9;g&#10;h&#13;i'/>");
    expect(doc(String(d)).root.getAttribute('v')).toBe(`a&b<c>d'e"f\tg\nh\ri`);
  });

  it('removeAttribute takes its leading whitespace, and keeps a namespace declaration still in use', () => {
    const d = doc("<a xmlns:v='urn:v' x='1' y='2'><v:b/></a>");
    expect(d.root.removeAttribute('x')).toBe(true);
    expect(d.root.removeAttribute('nope')).toBe(false);
    expect(() => d.root.removeAttribute('xmlns:v')).toThrow(/prefix "v"/);
    expect(String(d)).toBe("<a xmlns:v='urn:v' y='2'><v:b/></a>");
  });

  it('refuses invalid names, characters XML cannot carry, and undeclared prefixes', () => {
    const d = doc('<a/>');
    expect(() => d.root.setAttribute('1x', 'v')).toThrow(/not a valid XML attribute name/);
    expect(() => d.root.setAttribute('x', 'a\u0000b')).toThrow(/U\+0000/);
    expect(() => d.root.setAttribute('q:x', 'v')).toThrow(/prefix "q"/);
    expect(String(d)).toBe('<a/>');
  });
});

describe('text', () => {
  it('setText encodes as libvirt does (raw newline and tab; CR as &#13;) and is a no-op when equal', () => {
    const d = doc('<d>\n  <name>old</name>\n  <description>x&#10;y</description>\n</d>');
    d.find('d/name')?.setText(`a&b<c>d'e"f\tg`);
    d.find('d/description')?.setText('x\ny');
    expect(String(d)).toBe('<d>\n  <name>a&amp;b&lt;c&gt;d&apos;e&quot;f\tg</name>\n  <description>x&#10;y</description>\n</d>');
    d.find('d/description')?.setText('l1\r\nl2');
    expect(d.find('d/description')?.toString()).toBe('<description>l1&#13;\nl2</description>');
    expect(doc(String(d)).find('d/description')?.text()).toBe('l1\r\nl2');
    expect(() => d.root.setText('x')).toThrow(/has child elements/);
  });

  it('any string XML can carry survives setText and setAttribute, then serialize and parse', () => {
    const unit = fc.oneof(fc.constantFrom('&', '<', '>', "'", '"', '\t', '\n', '\r', ' ', ']]>', '&amp;', '\u00e9', '\u{1F600}'), fc.string({ maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 12 }).map((a) => a.join('').replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff\ufffe\uffff]/g, '')), (value) => {
        const d = doc("<domain>\n  <name>x</name>\n  <source network='n'/>\n</domain>");
        d.find('domain/name')?.setText(value);
        d.find('domain/source')?.setAttribute('network', value);
        const again = doc(String(d));
        expect(again.find('domain/name')?.text()).toBe(value);
        expect(again.find('domain/source')?.getAttribute('network')).toBe(value);
      }),
      { numRuns: 300 },
    );
  });
});

describe('inserting elements', () => {
  it("lines a new child up with its siblings, after the last one by default", () => {
    const d = doc("<domain>\n  <devices>\n    <disk type='file'/>\n    <interface type='network'/>\n  </devices>\n</domain>\n");
    d.find('domain/devices')?.appendElement({ name: 'interface', attrs: { type: 'direct' }, children: [{ name: 'source', attrs: { dev: 'eno1', mode: 'bridge' } }] });
    expect(String(d)).toBe(
      "<domain>\n  <devices>\n    <disk type='file'/>\n    <interface type='network'/>\n    <interface type='direct'>\n      <source dev='eno1' mode='bridge'/>\n    </interface>\n  </devices>\n</domain>\n",
    );
  });

  it('before or after a given sibling', () => {
    const d = doc('<i>\n  <source/>\n  <model/>\n</i>');
    const source = d.find('i/source') as XElement;
    d.root.insertElement({ name: 'mac', attrs: { address: '52:54:00:00:00:01' } }, { before: source });
    d.root.insertElement({ name: 'vlan', children: [{ name: 'tag', attrs: { id: '7' } }] }, { after: source });
    expect(String(d)).toBe("<i>\n  <mac address='52:54:00:00:00:01'/>\n  <source/>\n  <vlan>\n    <tag id='7'/>\n  </vlan>\n  <model/>\n</i>");
    expect(() => d.root.insertElement({ name: 'x' }, { after: d.find('i/vlan/tag') as XElement })).toThrow(/not a child/);
  });

  it('into an empty element, one indentation step in (the document\'s step and line end)', () => {
    expect(String(doc('<a>\n  <metadata/>\n</a>').find('a/metadata')?.appendElement({ name: 'x' }).owner)).toBe('<a>\n  <metadata>\n    <x/>\n  </metadata>\n</a>');
    expect(String(doc('<a>\r\n\t<b></b>\r\n</a>').find('a/b')?.appendElement({ name: 'x' }).owner)).toBe('<a>\r\n\t<b>\r\n\t\t<x/>\r\n\t</b>\r\n</a>');
    expect(String(doc('<a>\n    <b>\n    </b>\n</a>').find('a/b')?.appendElement({ name: 'x' }).owner)).toBe('<a>\n    <b>\n        <x/>\n    </b>\n</a>');
    expect(String(doc('<a/>').root.appendElement({ name: 'x' }).owner)).toBe('<a>\n  <x/>\n</a>');
    expect(String(doc('<a>\n  <b dev="x" />\n</a>').find('a/b')?.appendElement({ name: 'x' }).owner)).toBe('<a>\n  <b dev="x">\n    <x/>\n  </b>\n</a>');
  });

  it('inline where its siblings are inline; after a comment when only comments are there', () => {
    expect(String(doc('<a>\n  <f><acpi/></f>\n</a>').find('a/f')?.appendElement({ name: 'pae' }).owner)).toBe('<a>\n  <f><acpi/><pae/></f>\n</a>');
    expect(String(doc('<a>\n  <m>\n    <!-- keep -->\n  </m>\n</a>').find('a/m')?.appendElement({ name: 'x' }).owner)).toBe('<a>\n  <m>\n    <!-- keep -->\n    <x/>\n  </m>\n</a>');
  });

  it('quotes like its neighbours (libvirt: \' for its elements, " inside <metadata>), else \'', () => {
    const d = doc(corpus('domain-linux-q35-uefi'));
    d.find('domain/metadata')?.appendElement({ name: 'vw:x', attrs: { 'xmlns:vw': NS } });
    d.find('domain/devices')?.appendElement({ name: 'watchdog', attrs: { model: 'i6300esb' } });
    expect(String(d)).toContain(`    <vw:x xmlns:vw="${NS}"/>\n  </metadata>`);
    expect(String(d)).toContain("    <watchdog model='i6300esb'/>\n  </devices>");
    expect(String(doc('<a><b/></a>').find('a/b')?.appendElement({ name: 'c', attrs: { k: 'v' } }).owner)).toContain("<c k='v'/>");
  });

  it('changes nothing else: the output is the input plus the new lines', () => {
    const xml = corpus('domain-windows-hyperv-tpm');
    const d = doc(xml);
    const nic = d.find('domain/devices/interface') as XElement;
    d.find('domain/devices')?.insertElement({ name: 'interface', attrs: { type: 'user' } }, { after: nic });
    const at = xml.indexOf('</interface>') + '</interface>'.length;
    expect(String(d)).toBe(`${xml.slice(0, at)}\n    <interface type='user'/>${xml.slice(at)}`);
  });

  it('refuses what would make bad XML, and leaves the document as it was', () => {
    const xml = '<a>\n  <n>text</n>\n</a>';
    const d = doc(xml);
    expect(() => d.find('a/n')?.appendElement({ name: 'x' })).toThrow(/holds text/);
    expect(() => d.root.appendElement({ name: 'v:x' })).toThrow(/prefix "v"/);
    expect(() => d.root.appendElement({ name: 'x y' })).toThrow(/not a valid XML element name/);
    expect(() => d.root.appendElement({ name: 'x', text: 't', children: [{ name: 'y' }] })).toThrow(/text or children/);
    expect(() => d.root.appendElement({ name: 'x', attrs: [['k', '1'], ['k', '2']] })).toThrow(/twice/);
    expect(String(d)).toBe(xml);
    expect(d.root.appendElement({ name: 'v:x', attrs: { 'xmlns:v': 'urn:v' } }).namespaceURI).toBe('urn:v');
  });
});

describe('removing and replacing', () => {
  it('remove() takes the element and its indentation; an emptied parent becomes <p/>', () => {
    const d = doc('<a>\n  <b/>\n  <!-- c -->\n  <d/>\n  <e><f/></e>\n</a>');
    d.find('a/d')?.remove();
    expect(String(d)).toBe('<a>\n  <b/>\n  <!-- c -->\n  <e><f/></e>\n</a>');
    d.find('a/e/f')?.remove();
    expect(String(d)).toBe('<a>\n  <b/>\n  <!-- c -->\n  <e/>\n</a>');
    expect(() => d.root.remove()).toThrow(/root/);
    const inline = doc('<a>\n  <b/><c/>\n</a>');
    inline.find('a/b')?.remove();
    expect(String(inline)).toBe('<a>\n  <c/>\n</a>');
  });

  it('replaceWith() keeps the place and indentation, and is a no-op when equal', () => {
    const xml = "<i>\n  <source bridge=\"br0\"/>\n  <model type='virtio'/>\n</i>";
    const d = doc(xml);
    const same = d.find('i/source') as XElement;
    expect(same.replaceWith({ name: 'source', attrs: { bridge: 'br0' } })).toBe(same);
    expect(String(d)).toBe(xml);
    same.replaceWith({ name: 'source', attrs: { dev: 'eno1', mode: 'bridge' } });
    expect(String(d)).toBe("<i>\n  <source dev=\"eno1\" mode=\"bridge\"/>\n  <model type='virtio'/>\n</i>");
  });

  it('replaceChildren() rewrites the content, is a no-op when equal in value (quotes, entity spelling, whitespace aside)', () => {
    const xml = `<metadata>\n  <vw:w xmlns:vw="${NS}">\n    <vw:t name="a&#38;b"/>\n  </vw:w>\n</metadata>`;
    const d = doc(xml);
    const w = d.find(`metadata/{${NS}}w`) as XElement;
    w.replaceChildren([{ name: 'vw:t', attrs: { name: 'a&b' } }]);
    expect(String(d)).toBe(xml);
    w.replaceChildren([{ name: 'vw:t', attrs: { name: 'c' } }, { name: 'vw:f', attrs: { host: '1' } }]);
    expect(String(d)).toBe(`<metadata>\n  <vw:w xmlns:vw="${NS}">\n    <vw:t name="c"/>\n    <vw:f host="1"/>\n  </vw:w>\n</metadata>`);
    w.replaceChildren([]);
    expect(String(d)).toBe(`<metadata>\n  <vw:w xmlns:vw="${NS}"/>\n</metadata>`);
  });

  it('upsertElement() inserts once, then replaces in place (idempotent)', () => {
    const d = doc("<dhcp>\n  <range start='a' end='b'/>\n</dhcp>");
    const spec = { name: 'host', attrs: { mac: '52:54:00:00:00:01', ip: '10.0.0.2' } };
    d.root.upsertElement("host[@mac='52:54:00:00:00:01']", spec);
    const once = String(d);
    d.root.upsertElement("host[@mac='52:54:00:00:00:01']", spec);
    expect(String(d)).toBe(once);
    expect(once).toBe("<dhcp>\n  <range start='a' end='b'/>\n  <host mac='52:54:00:00:00:01' ip='10.0.0.2'/>\n</dhcp>");
  });
});

/** Whether `after` is `before` with one run of text inserted, nothing else changed. */
function isPureInsertion(before: string, after: string): boolean {
  const max = Math.min(before.length, after.length);
  let p = 0;
  while (p < max && before[p] === after[p]) p++;
  let q = 0;
  while (q < max - p && before[before.length - 1 - q] === after[after.length - 1 - q]) q++;
  return after.length > before.length && p + q === before.length;
}

function allElements(e: XElement): XElement[] {
  return [e, ...e.elements().flatMap(allElements)];
}

describe('edits touch only their own bytes (every element of every corpus file)', () => {
  it.each(corpusNames())('%s', (name) => {
    const xml = corpus(name);
    const count = allElements(doc(xml).root).length;
    for (let k = 0; k < count; k++) {
      // A new attribute: one inserted run; removing it gives the input back.
      let d = doc(xml);
      let el = allElements(d.root)[k] as XElement;
      el.setAttribute('virtwire-test', `v'&"<\t${k}`);
      expect(isPureInsertion(xml, String(d)), `${name} element #${k} <${el.name}>`).toBe(true);
      el.removeAttribute('virtwire-test');
      expect(String(d)).toBe(xml);
      // A new child of an element with children: one inserted run; removing it gives the input back.
      d = doc(xml);
      el = allElements(d.root)[k] as XElement;
      if (el.elements().length === 0 || el.text().trim() !== '') continue;
      const added = el.appendElement({ name: 'x', attrs: { k: String(k) }, children: [{ name: 'y' }] });
      expect(isPureInsertion(xml, String(d)), `${name} element #${k} <${el.name}>`).toBe(true);
      added.remove();
      expect(String(d)).toBe(xml);
    }
  });
});

describe('round trip of any well-formed document (generated)', () => {
  const ws = fc.constantFrom('', ' ', '\n', '\n  ', '\r\n\t', '\n\n    ');
  const ws1 = fc.constantFrom(' ', '\n    ', '\t', '  ');
  const text = fc.array(fc.constantFrom('a', 'b c', ' ', '\n', '\r\n', '&amp;', '&lt;', '&#233;', '&#x1F600;', '>', '"', "'", '\u00e9'), { maxLength: 6 }).map((a) => a.join(''));
  const attr = fc.record({
    lead: ws1,
    name: fc.constantFrom('type', 'x', 'v:k', 'xml:lang'),
    eq: fc.constantFrom('=', ' = ', '=\n'),
    quote: fc.constantFrom("'", '"'),
    value: fc.array(fc.constantFrom('a', ' ', '&amp;', '&apos;', '&#10;', '\t', '>', '"', "'"), { maxLength: 5 }).map((a) => a.join('')),
  });
  const attrText = (a: { lead: string; name: string; eq: string; quote: string; value: string }): string =>
    `${a.lead}${a.name}${a.eq}${a.quote}${a.value.split(a.quote).join(a.quote === "'" ? '&apos;' : '&quot;')}${a.quote}`;
  const { node } = fc.letrec<{ node: string }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      text,
      fc.constantFrom('<!-- note -->', '<!---->', '<![CDATA[ <&> ]]>', '<?pi x?>'),
      fc.record({
        name: fc.constantFrom('a', 'devices', 'v:x'),
        attrs: fc.uniqueArray(attr, { selector: (a) => a.name, maxLength: 3 }),
        tagEnd: fc.constantFrom('', ' ', '\n'),
        kids: fc.array(tie('node'), { maxLength: 4 }),
        selfClose: fc.boolean(),
      }).map(({ name, attrs, tagEnd, kids, selfClose }) => {
        const open = `<${name}${attrs.map(attrText).join('')}${tagEnd}`;
        return selfClose && kids.length === 0 ? `${open}/>` : `${open}>${kids.join('')}</${name}${tagEnd}>`;
      }),
    ),
  }));

  it('parse → serialize is the identity', () => {
    fc.assert(
      fc.property(fc.boolean(), ws, fc.array(node, { maxLength: 5 }), ws, (decl, before, kids, after) => {
        const xml = `${decl ? "<?xml version='1.0'?>" : ''}${before}<root xmlns:v="urn:v">${kids.join('')}</root>${after}`;
        expect(String(parseXmlDocument(xml))).toBe(xml);
      }),
      { numRuns: 500 },
    );
  });
});

describe.skipIf(!haveVirsh && !mustRunEverything)("escaping matches libvirt's (virsh define + dumpxml, test driver)", () => {
  it('text and attributes are written as libvirt writes them, and libvirt reads back every value', async () => {
    if (!haveVirsh) throw new Error('virsh is missing, and CI=true: install libvirt-clients');
    const d = doc(corpus('domain-i440fx-minimal'));
    const name = `a&b<c>d'e"f\tg`;
    const description = `line 1\nline 2: 'q' "dq" & <x>\ttab`;
    const network = `n&e't"x<y>`;
    d.find('domain/name')?.setText(name);
    d.root.insertElement({ name: 'description', text: description }, { after: d.find('domain/uuid') as XElement });
    d.find('domain/devices')?.insertElement(
      { name: 'interface', attrs: { type: 'network' }, children: [{ name: 'mac', attrs: { address: '52:54:00:12:34:58' } }, { name: 'source', attrs: { network, portgroup: 'p\tq' } }] },
      { after: d.find("domain/devices/interface[@type='direct']") as XElement },
    );
    const file = join(tempDir(), 'escape.xml');
    writeFileSync(file, String(d));
    const r = await virshTest([`define ${shellWord(file)}`, 'dumpxml --inactive c2a7e3b1-5f04-4d6e-8b19-7a3c0e2f6d58']);
    expect(r.ok, r.output).toBe(true);
    const line = (xml: string, re: RegExp): string => (re.exec(xml) ?? [''])[0];
    const ours = String(d);
    // Byte for byte as libvirt writes them (virBufferEscapeString):
    expect(line(r.output, /<name>.*<\/name>/)).toBe(line(ours, /<name>.*<\/name>/));
    expect(line(r.output, /<description>[^]*?<\/description>/)).toBe(line(ours, /<description>[^]*?<\/description>/));
    expect(r.output).toContain(`network='n&amp;e&apos;t&quot;x&lt;y&gt;'`);
    // A tab in an attribute: we write &#9; (libvirt writes it raw, which any
    // parser reads back as a space); libvirt read ours as a tab.
    expect(ours).toContain("portgroup='p&#9;q'");
    expect(r.output).toContain("portgroup='p\tq'");
    const back = doc(r.output.slice(r.output.indexOf('<domain')));
    expect(back.find('domain/name')?.text()).toBe(name);
    expect(back.find('domain/description')?.text()).toBe(description);
    expect(back.find("domain/devices/interface[@type='network']/source")?.getAttribute('network')).toBe(network);
  });
});

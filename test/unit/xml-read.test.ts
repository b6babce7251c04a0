// The read-only XML readers' parse (src/xml/parse.ts): the strict parser's
// tree in the plain shape domain.ts and network.ts read.
import { describe, it, expect } from 'vitest';
import { attr, child, children, elementEntries, parseXml, text } from '../../src/xml/parse.js';
import { parseDomain } from '../../src/xml/domain.js';

describe('parseXml', () => {
  it('attributes and text as written, decoded by attr() and text(); CDATA as written; children in order', () => {
    const root = parseXml(`<?xml version='1.0'?>\n<domain type='q&amp;emu'><name>a &#9;b</name><title><![CDATA[x &amp; <y>]]></title><devices><interface type='network'/><disk/><interface type='bridge'/></devices><empty/></domain>\n`);
    const dom = child(root, 'domain');
    expect(attr(dom, 'type')).toBe('q&emu');
    expect(text(child(dom, 'name'))).toBe('a \tb');
    expect(text(child(dom, 'title'))).toBe('x &amp; <y>');
    expect(children(child(dom, 'devices'), 'interface').map((i) => attr(i, 'type'))).toEqual(['network', 'bridge']);
    expect(elementEntries(child(dom, 'devices')).map(([tag]) => tag)).toEqual(['interface', 'interface', 'disk']);
    expect(text(child(dom, 'empty'))).toBeUndefined();
  });

  it('an element named __proto__ (a VM owner can put anything in <metadata>) is an element like any other, and no object gets another prototype', () => {
    const meta = child(child(parseXml(`<domain><metadata><__proto__ polluted='yes'/><constructor/><toString/></metadata></domain>`), 'domain'), 'metadata');
    expect(elementEntries(meta).map(([tag, el]) => [tag, attr(el, 'polluted')])).toEqual([['__proto__', 'yes'], ['constructor', undefined], ['toString', undefined]]);
    expect(Object.getPrototypeOf(meta)).toBe(Object.prototype);
    expect((meta as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    ['a tag closed by another', `<domain><name>x</nam></domain>`],
    ['an attribute twice', `<domain><name a='1' a='2'>x</name></domain>`],
    ['content after the root', `<domain><name>x</name></domain><extra/>`],
    ['a bare <', `<domain><name>x<</name></domain>`],
    ['an unquoted attribute', `<domain a=1><name>x</name></domain>`],
    ['the end cut off', `<domain><name>x</name>`],
  ])('malformed (%s): refused, never read as something else', (_what, xml) => {
    expect(() => parseXml(xml)).toThrow();
    expect(() => parseDomain(xml, 'the domain XML on stdin')).toThrow(/^the domain XML on stdin is not well-formed XML: line 1, column \d+: /);
  });
});

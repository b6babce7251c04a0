// Issue 9: each refusal and each byte-exactness rule, with its exact message.
import { describe, expect, it } from 'vitest';
import { resolveForwards } from '../../src/engine/wiring.js';
import { checkOwnership, reservedAddressesOf, type OtherVmView } from '../../src/plan/ownership.js';
import { checkVmLimits, checkHostLimit } from '../../src/plan/limits.js';
import { checkConflicts } from '../../src/plan/conflicts.js';
import { parseDomain, METADATA_NS } from '../../src/xml/domain.js';
import { parseNetwork } from '../../src/xml/network.js';
import { decodeXmlText } from '../../src/xml/parse.js';
import { DEFAULT_CONFIG, parseConfig, type GlobalConfig } from '../../src/policy/config.js';
import { quoted, oneLine, shellWord } from '../../src/errors.js';
import type { TemplateSet } from '../../src/policy/load.js';
import { defaultNetwork, domainXml, fixture, set, template } from './helpers.js';

const WEB = template('web', 'match: {domains: ["*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n');
const HOST = ['192.0.2.1', '2001:db8:77::1'];
const withMode = (mode: string) => parseNetwork(fixture('network-default.xml').replace("<forward mode='nat'>", mode === 'isolated' ? '<forward-removed>' : `<forward mode='${mode}'>`).replace('</forward>', mode === 'isolated' ? '</forward-removed>' : '</forward>'));
const plan = (xml: string, opts: { templates?: TemplateSet; config?: GlobalConfig; net?: ReturnType<typeof defaultNetwork> } = {}) =>
  resolveForwards({ domain: parseDomain(xml), templates: opts.templates ?? set(WEB), config: opts.config ?? DEFAULT_CONFIG, network: (n) => (n === 'default' ? opts.net ?? defaultNetwork() : undefined), hostAddresses: () => HOST });

describe('binding nat only on NAT networks (item 2)', () => {
  it.each(['isolated', 'route', 'open'])('refuses a NIC on a network with forward mode %s, naming it', (mode) => {
    expect(() => plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]), { net: withMode(mode) })).toThrow(
      `VM "web-1" NIC 52:54:00:77:00:10 (network "default"): binding nat needs a NAT network (<forward mode='nat'/>), but network "default" has forward mode "${mode}"; attach the NIC to a NAT network, or limit the template with match.networks`);
  });

  it('accepts a NAT network', () => {
    expect(plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }])).forwards).toHaveLength(2);
  });
});

describe('a forward reaches only its own VM (item 1)', () => {
  const mac = '52:54:00:77:00:10';
  const dom = (name = 'web-1', nics = [{ mac }]) => parseDomain(domainXml(name, nics));
  const fwds = (name = 'web-1', nics = [{ mac }]) => plan(domainXml(name, nics)).forwards;
  const other = (o: Partial<OtherVmView>): OtherVmView => ({ uuid: '6f1f6a0e-0000-4000-8000-0000000000ff', name: 'victim', macs: [], addresses: new Map(), ...o });

  it('refuses a MAC that appears twice in the domain', () => {
    const nics = [{ mac }, { mac, network: 'other' }];
    expect(() => checkOwnership(dom('web-1', nics), fwds('web-1', [{ mac }]), [], () => [])).toThrow(
      'VM "web-1": MAC 52:54:00:77:00:10 appears on 2 of its NICs (#1 and #2); a forward must reach exactly one NIC — give each NIC its own MAC (virsh edit)');
  });

  it("refuses a MAC copied from a running VM", () => {
    expect(() => checkOwnership(dom(), fwds(), [other({ macs: [mac] })], () => [])).toThrow(
      `VM "web-1" NIC ${mac}: running VM "victim" has a NIC with the same MAC; a forward may only reach this VM's own NIC — give this NIC its own MAC (virsh edit)`);
  });

  it("refuses an address that is another running VM's reservation or forward target", () => {
    expect(() => checkOwnership(dom(), fwds(), [other({ addresses: new Map([['192.168.122.10', 'its DHCP reservation on network "default"']]) })], () => [])).toThrow(
      `VM "web-1" NIC ${mac}: guest address 192.168.122.10 belongs to running VM "victim" (its DHCP reservation on network "default"); a forward may only reach this VM's own address — fix the DHCP reservation or the template's address:`);
  });

  it("takes the IPv6 reservation by name: a running VM named web-1 holds fd00:77::10", () => {
    const victim = parseDomain(domainXml('web-1', [{ mac: '52:54:00:77:00:30' }], '', '6f1f6a0e-0000-4000-8000-0000000000ff'));
    expect(reservedAddressesOf(victim, () => defaultNetwork())).toEqual(new Map([['fd00:77::10', 'its DHCP reservation on network "default"']]));
  });

  it('refuses an address leased to a NIC of another running VM, ignores stale leases of stopped ones', () => {
    const lease = { ip: '192.168.122.10', mac: '52:54:00:77:00:99', expiry: 0 };
    expect(() => checkOwnership(dom(), fwds(), [other({ macs: ['52:54:00:77:00:99'] })], () => [lease])).toThrow(
      `VM "web-1" NIC ${mac}: guest address 192.168.122.10 is leased to 52:54:00:77:00:99, a NIC of running VM "victim"; a forward may only reach this VM's own address — fix the DHCP reservation or the template's address:`);
    expect(() => checkOwnership(dom(), fwds(), [], () => [lease])).not.toThrow();
    expect(() => checkOwnership(dom(), fwds(), [other({ macs: ['52:54:00:77:00:99'] })], () => [{ ...lease, expiry: 1 }])).not.toThrow();
  });

  it('refuses two NICs that resolve to one address', () => {
    const t = template('two', 'match: {domains: ["*"]}\nbinding: nat\naddress: 192.168.122.50\nforwards: [{proto: tcp, host: 8080}]\n');
    const t2 = template('three', 'match: {domains: ["*"], networks: [default]}\npriority: 5\nbinding: nat\naddress: 192.168.122.50\nforwards: [{proto: tcp, host: 9090}]\n');
    const nics = [{ mac: '52:54:00:77:00:10' }, { mac: '52:54:00:77:00:11' }];
    const p = resolveForwards({ domain: parseDomain(domainXml('web-1', nics)), templates: set(t2, t), config: DEFAULT_CONFIG, network: () => defaultNetwork(), hostAddresses: () => HOST });
    // t2 wins both NICs (higher priority) but only the first gets its forwards; make the second NIC's forward explicit:
    const forged = [...p.forwards, { ...p.forwards[0]!, nic: '52:54:00:77:00:11', host: { lo: 9999, hi: 9999 } }];
    expect(() => checkOwnership(parseDomain(domainXml('web-1', nics)), forged, [], () => [])).toThrow(
      'VM "web-1": NICs 52:54:00:77:00:10 and 52:54:00:77:00:11 both resolve to guest address 192.168.122.50; give each NIC its own address');
  });
});

describe('bounded work (item 3)', () => {
  const cfg = (limits: string) => parseConfig('/etc/virtwire/virtwire.yaml', `limits: {${limits}}\n`);
  const meta = (inner: string) => `<vw:wiring xmlns:vw="${METADATA_NS}">${inner}</vw:wiring>`;
  const OPT = template('dev', 'match: {optIn: true}\nbinding: nat\n');

  it('parses limits and names a bad one', () => {
    expect(cfg('elementsPerHost: 100').limits).toEqual({ ...DEFAULT_CONFIG.limits, elementsPerHost: 100 });
    expect(() => cfg('elementsPerHost: 0')).toThrow('/etc/virtwire/virtwire.yaml:1:27: limits.elementsPerHost must be a whole number from 1 to 1000000, found number 0');
    expect(() => cfg('elementPerVm: 5')).toThrow('unknown key "limits.elementPerVm" (did you mean "elementsPerVm"?)');
  });

  it('refuses a forward, a VM and a host over their element limits, naming the limit', () => {
    const t = template('big', 'match: {domains: ["*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: "10000-10099", from: ["198.51.100.0/24", "203.0.113.0/24"]}\n');
    const p = plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]), { templates: set(t) });
    expect(() => checkVmLimits('web-1', p.forwards, cfg('elementsPerForward: 150').limits)).toThrow(
      'VM "web-1": forward tcp 10000-10099 (/etc/virtwire/templates/big.yaml:4:5) needs 200 nft elements (100 port(s) × 2 source(s)), over limits.elementsPerForward = 150; narrow the forward or raise the limit in /etc/virtwire/virtwire.yaml');
    expect(() => checkVmLimits('web-1', [...p.forwards, ...p.forwards], cfg('elementsPerVm: 300').limits)).toThrow(
      'VM "web-1": its forwards need 400 nft elements, over limits.elementsPerVm = 300; remove forwards or raise the limit in /etc/virtwire/virtwire.yaml');
    expect(() => checkHostLimit('web-1', p.forwards, 8000, DEFAULT_CONFIG.limits)).toThrow(
      'VM "web-1": its forwards would bring the host to 8200 nft elements, over limits.elementsPerHost = 8192 (other VMs hold 8000); stop a VM, remove forwards, or raise the limit in /etc/virtwire/virtwire.yaml');
  });

  it('refuses metadata asking for more forwards than allowed, before validating them', () => {
    const many = Array.from({ length: 17 }, (_, i) => `<forward proto="tcp" host="${20000 + i}"/>`).join('');
    expect(() => plan(domainXml('alice', [{ mac: '52:54:00:77:00:10' }], meta(`<template name="dev"/>${many}`)), { templates: set(OPT) })).toThrow(
      'VM "alice": its metadata asks for 17 forwards, over limits.metadataForwardsPerVm = 16 of /etc/virtwire/virtwire.yaml; remove some from the domain\'s <metadata>, or ask the admin for a template');
  });

  it('a metadata nic= that is not a MAC is refused, quoted (found by the property test: a newline reached the message raw)', () => {
    const xml = domainXml('alice', [{ mac: '52:54:00:77:00:10' }], meta('<template name="dev"/><forward proto="tcp" host="20000" nic="&#10;x"/>'));
    expect(() => plan(xml, { templates: set(OPT) })).toThrow(
      'VM "alice" metadata forward #1: nic must be the MAC address of one of the VM\'s NICs (like 52:54:00:12:34:56), found "\\nx"; fix the domain\'s <metadata>');
  });

  it('a metadata listen must be an address of this host', () => {
    const xml = (listen: string) => domainXml('alice', [{ mac: '52:54:00:77:00:10' }], meta(`<template name="dev"/><forward proto="tcp" host="20000" listen="${listen}"/>`));
    expect(() => plan(xml('198.51.100.7'), { templates: set(OPT) })).toThrow(
      'VM "alice" metadata forward #1: listen 198.51.100.7 is not an address of this host; use one of the host\'s addresses, or remove listen to mean all of them');
    expect(plan(xml('192.0.2.1'), { templates: set(OPT) }).forwards.map((f) => f.listen)).toEqual(['192.0.2.1']);
    // Any spelling of a host address counts (IPv6 canonicalized); here the guest has no IPv6 reservation, which is the next check.
    expect(() => plan(xml('2001:db8:77:0:0::1'), { templates: set(OPT) })).toThrow('no IPv6 address to forward to');
  });
});

describe('names stay byte-exact and messages stay one safe line (item 6)', () => {
  it('keeps leading/trailing spaces and decodes character references exactly once', () => {
    const xml = `<domain type='qemu'><name> web 1 &#9;&amp;#10;&#x1F600; </name><uuid>6f1f6a0e-0000-4000-8000-000000000001</uuid><devices/></domain>`;
    expect(parseDomain(xml).name).toBe(' web 1 \t&#10;\u{1F600} ');
    expect(decodeXmlText('&lt;&gt;&amp;&quot;&apos;')).toBe(`<>&"'`);
    // An entity XML does not define: refused where it stands, never guessed.
    expect(() => parseDomain(xml.replace('&#9;', '&nbsp;'), 'the domain XML on stdin')).toThrow('the domain XML on stdin is not well-formed XML: line 1, column 34: undefined entity &nbsp;');
    expect(() => decodeXmlText('a &nbsp; b')).toThrow('unsupported XML entity or character reference "&"');
  });

  it('escapes line separators, C1 controls and bidi controls in quoted names and one-line messages', () => {
    const name = 'a\u2028b\u2029c\u0085d\u202ee\u2066f\n';
    expect(quoted(name)).toBe('"a\\u2028b\\u2029c\\u0085d\\u202ee\\u2066f\\n"');
    expect(oneLine(`x${name}y`)).toBe('xa b c d e f y');
  });

  it('never puts a raw name into a suggested shell command', () => {
    expect(shellWord('default', 'NETWORK')).toBe('default');
    expect(shellWord("it's lab", 'NETWORK')).toBe(`'it'\\''s lab'`);
    expect(shellWord('lab\n$(reboot)', 'NETWORK')).toBe('NETWORK');
    expect(shellWord('läb', 'NETWORK')).toBe('NETWORK');
    const name = `web "1" $(id)`;
    expect(() => plan(domainXml(name, [{ mac: '52:54:00:77:00:99' }]))).toThrow(
      `VM ${quoted(name)} NIC 52:54:00:77:00:99 (network "default"): no IPv4 address to forward to; reserve one with: virtwire apply 'web "1" $(id)' (or: virsh net-update default add ip-dhcp-host "<host mac='52:54:00:77:00:99' ip='ADDRESS'/>" --live --config), or set address: in /etc/virtwire/templates/web.yaml`);
    const v6only = template('v6', 'match: {domains: ["*"]}\nbinding: nat\nforwards: [{proto: tcp, host: 8080, listen: "2001:db8:77::1"}]\n');
    expect(() => plan(domainXml(name, [{ mac: '52:54:00:77:00:10' }]), { templates: set(v6only) })).toThrow(
      `reserve one with: virsh net-update default add ip-dhcp-host "<host id='CLIENT-DUID' name='DOMAIN-NAME' ip='ADDRESS'/>" --live --config --parent-index 1`);
  });
});

describe('host services cannot be taken over (item 4)', () => {
  const opt = template('dev', 'match: {optIn: true}\nbinding: nat\n');
  const metaFwd = `<vw:wiring xmlns:vw="${METADATA_NS}"><template name="dev"/><forward proto="tcp" host="20080"/></vw:wiring>`;
  const forwards = () => plan(domainXml('alice', [{ mac: '52:54:00:77:00:10' }], metaFwd), { templates: set(opt) }).forwards;
  const sock = (address: string, family: 4 | 6) => ({ proto: 'tcp' as const, family, address, port: 20080 });

  it('a service on :: (dual-stack unless v6-only, which /proc/net cannot tell) covers IPv4 too', () => {
    expect(() => checkConflicts('alice', forwards(), [], [sock('::', 6)])).toThrow(
      'VM "alice": tcp port 20080 on every host IPv4 address is in use by the host itself ([::]:20080, which also receives IPv4); stop that service, use another host port, or set allowHostConflict: true on the forward (domain metadata)');
  });

  it('an IPv4-mapped socket is an IPv4 socket; loopback in any spelling never competes', () => {
    expect(() => checkConflicts('alice', forwards(), [], [sock('::ffff:192.0.2.1', 6)])).toThrow('is in use by the host itself ([::ffff:192.0.2.1]:20080)');
    for (const lo of ['::ffff:127.0.0.1', '::1']) expect(() => checkConflicts('alice', forwards(), [], [sock(lo, 6)])).not.toThrow();
    expect(() => checkConflicts('alice', forwards(), [], [sock('127.0.0.53', 4)])).not.toThrow();
  });

  it('a v6 socket on a specific address does not cover IPv4', () => {
    expect(() => checkConflicts('alice', forwards(), [], [sock('2001:db8:77::1', 6)])).not.toThrow();
  });
});

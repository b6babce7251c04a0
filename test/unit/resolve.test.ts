import { bindingTakes } from '../../src/bindings/registry.js';
import { describe, expect, it } from 'vitest';
import { resolveForwards } from '../../src/engine/wiring.js';
import { templatesForNics } from '../../src/policy/match.js';
import { parseDomain, METADATA_NS } from '../../src/xml/domain.js';
import { DEFAULT_CONFIG } from '../../src/policy/config.js';
import { describeForward } from '../../src/plan/describe.js';
import { UserError } from '../../src/errors.js';
import type { TemplateSet } from '../../src/policy/load.js';
import { defaultNetwork, domainXml, set, template } from './helpers.js';

const WEB = template('web', 'match: {domains: ["web-*"], networks: [default]}\npriority: 50\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n  - {proto: udp, host: 5353}\n');
const HOST_ADDRESSES = ['192.0.2.1', '2001:db8:77::1'];
const net = (name: string) => (name === 'default' ? defaultNetwork() : undefined);
const plan = (xml: string, templates: TemplateSet = set(WEB), config = DEFAULT_CONFIG) =>
  resolveForwards({ domain: parseDomain(xml), templates, config, network: net, hostAddresses: () => HOST_ADDRESSES });

describe('matching and priority', () => {
  it('matches by glob and network; the highest priority wins per NIC', () => {
    const low = template('all', 'match: {domains: ["*"]}\npriority: 10\nbinding: nat\n');
    const dom = parseDomain(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }, { mac: '52:54:00:77:00:11', network: 'other' }]));
    const m = templatesForNics(dom, set(low, WEB), bindingTakes);
    expect([...m.entries()].map(([n, t]) => `${n.mac}=${t.name}`)).toEqual(['52:54:00:77:00:10=web', '52:54:00:77:00:11=all']);
  });

  it('a tie between two files is an error naming both', () => {
    const twin = template('web2', 'match: {domains: ["web-?"]}\npriority: 50\nbinding: nat\n');
    expect(() => plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]), set(WEB, twin))).toThrow(
      'VM "web-1" NIC 52:54:00:77:00:10: templates /etc/virtwire/templates/web.yaml and /etc/virtwire/templates/web2.yaml both match with priority 50; give one a higher priority');
  });

  it('ignores NICs that are not on a libvirt network and VMs no template matches', () => {
    expect(plan(domainXml('db-1', [{ mac: '52:54:00:77:00:10' }])).forwards).toEqual([]);
    expect(plan(domainXml('web-1', [{ type: 'bridge' }])).forwards).toEqual([]);
  });

  it('a broken template that may concern the VM refuses the start; one for other VMs does not', () => {
    const broken: TemplateSet = { templates: [WEB], broken: [{ name: 'db', file: '/t/db.yaml', domains: ['db-*'], problems: [{ file: '/t/db.yaml', line: 3, column: 5, message: 'proto must be tcp or udp' }] }] };
    expect(plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]), broken).forwards).toHaveLength(4);
    expect(() => plan(domainXml('db-1', [{ mac: '52:54:00:77:00:10' }]), broken)).toThrow(
      'VM "db-1": template /t/db.yaml is invalid (/t/db.yaml:3:5: proto must be tcp or udp); fix it — "virtwire templates check" lists every problem');
    const unreadable: TemplateSet = { templates: [], broken: [{ name: 'x', file: '/t/x.yaml', problems: [{ file: '/t/x.yaml', line: 1, column: 1, message: 'YAML: bad' }] }] };
    expect(() => plan(domainXml('anything', [{ mac: '52:54:00:77:00:10' }]), unreadable)).toThrow(UserError);
  });
});

describe('guest addresses and forwards', () => {
  it('resolves the reservation by MAC and adds IPv6 where the guest has a reserved IPv6 address', () => {
    const p = plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]));
    expect(p.forwards.map(describeForward)).toEqual([
      'tcp *:8080 -> 192.168.122.10:80',
      'tcp [*]:8080 -> [fd00:77::10]:80',
      'udp *:5353 -> 192.168.122.10:5353',
      'udp [*]:5353 -> [fd00:77::10]:5353',
    ]);
    expect(p.forwards[0]).toMatchObject({ guestSubnet: '192.168.122.0/24', network: 'default', nic: '52:54:00:77:00:10', origin: '/etc/virtwire/templates/web.yaml:5:5' });
    expect(p.forwards[1]).toMatchObject({ guestSubnet: 'fd00:77::/64' });
  });

  it('without a reservation the start fails with one line saying how to add one', () => {
    expect(() => plan(domainXml('web-2', [{ mac: '52:54:00:77:00:99' }]))).toThrow(
      `VM "web-2" NIC 52:54:00:77:00:99 (network "default"): no IPv4 address to forward to; reserve one with: virtwire apply web-2 (or: virsh net-update default add ip-dhcp-host "<host mac='52:54:00:77:00:99' ip='ADDRESS'/>" --live --config), or set address: in /etc/virtwire/templates/web.yaml`);
  });

  it('an explicit address: wins; an address outside the network is refused', () => {
    const fixed = template('web', 'match: {domains: ["web-*"]}\nbinding: nat\naddress: 192.168.122.50\nforwards: [{proto: tcp, host: 8080, guest: 80}]\n');
    expect(plan(domainXml('web-2', [{ mac: '52:54:00:77:00:99' }]), set(fixed)).forwards.map(describeForward)).toEqual(['tcp *:8080 -> 192.168.122.50:80']);
    const outside = template('web', 'match: {domains: ["web-*"]}\nbinding: nat\naddress: 10.9.9.9\nforwards: [{proto: tcp, host: 8080}]\n');
    expect(() => plan(domainXml('web-2', [{ mac: '52:54:00:77:00:99' }]), set(outside))).toThrow('is not inside any subnet of network "default"');
  });

  it('a stopped network is named with the fix', () => {
    const t = template('any', 'match: {domains: ["*"]}\nbinding: nat\nforwards: [{proto: tcp, host: 8080}]\n');
    expect(() => plan(domainXml('vm', [{ network: 'lab' }]), set(t))).toThrow('network "lab" is not active, so its address reservations cannot be read; start it (virsh net-start lab)');
  });

  it('an allow-list of one family yields forwards of that family only', () => {
    const t = template('web', 'match: {domains: ["web-*"]}\nbinding: nat\nforwards: [{proto: tcp, host: 8080, from: ["198.51.100.0/24", "198.51.100.0/25"]}]\n');
    const p = plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }]), set(t));
    expect(p.forwards.map(describeForward)).toEqual(['tcp *:8080 -> 192.168.122.10:8080 from 198.51.100.0/24']);
  });

  it("a template's forwards go to the first NIC it wins only", () => {
    const p = plan(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }, { mac: '52:54:00:77:00:11' }]));
    expect(new Set(p.forwards.map((f) => f.nic))).toEqual(new Set(['52:54:00:77:00:10']));
  });
});

describe('domain metadata (untrusted: VM owners can edit it)', () => {
  const OPT = template('dev', 'match: {optIn: true}\nbinding: nat\nforwards: [{proto: tcp, host: 30000, guest: 3000}]\n');
  const meta = (inner: string, prefix = 'vw') => `<${prefix}:wiring xmlns:${prefix}="${METADATA_NS}">${inner}</${prefix}:wiring>`;

  it('opts in to a template and adds forwards, whatever the namespace prefix', () => {
    const xml = domainXml('alice-vm', [{ mac: '52:54:00:77:00:10' }], meta('<template name="dev"/><forward proto="tcp" host="20022" guest="22" from="198.51.100.0/24"/>', 'x'));
    const p = plan(xml, set(OPT));
    expect(p.forwards.map(describeForward)).toEqual(['tcp *:30000 -> 192.168.122.10:3000', 'tcp *:20022 -> 192.168.122.10:22 from 198.51.100.0/24']);
    expect(p.forwards[1]!.origin).toBe('domain metadata');
  });

  it('ignores elements of other namespaces', () => {
    const xml = domainXml('alice-vm', [{ mac: '52:54:00:77:00:10' }], '<o:wiring xmlns:o="https://example.org/other"><o:template name="dev"/></o:wiring>');
    expect(plan(xml, set(OPT)).forwards).toEqual([]);
  });

  it.each([
    ['a host port outside allowedHostPorts', '<template name="dev"/><forward proto="tcp" host="22" guest="22"/>', 'VM "alice-vm" metadata forward #1: host port 22 is outside forwards.allowedHostPorts (1024-65535) of /etc/virtwire/virtwire.yaml; use a port inside it, or ask the admin to widen it or add a template'],
    ['allowHostConflict (admins only)', '<template name="dev"/><forward proto="tcp" host="20022" allowHostConflict="true"/>', 'unknown attribute "allowHostConflict"'],
    ['a bad port', '<template name="dev"/><forward proto="tcp" host="2x"/>', 'VM "alice-vm" metadata forward #1: host: expected a port (80) or a range ("8000-8010"), found "2x"; fix the domain\'s <metadata>'],
    ['forwards without a wired NIC', '<forward proto="tcp" host="20022"/>', 'no NIC of this VM is wired by a virtwire template'],
    ['an unknown template', '<template name="nope"/>', 'opts in to template "nope", but there is no such template'],
    ['a template that does not allow opt-in', '<template name="web"/>', 'opts in to template "web", which does not allow opt-in; set "match: {optIn: true}" in /etc/virtwire/templates/web.yaml'],
  ])('refuses %s', (_n, inner, message) => {
    const xml = domainXml('alice-vm', [{ mac: '52:54:00:77:00:10' }], meta(inner));
    expect(() => plan(xml, set(OPT, WEB))).toThrow(message);
  });
});

describe('domain XML', () => {
  it('keeps names with quotes, spaces, newlines and non-ASCII intact', () => {
    const name = `it's "web" 1 — ünïcode\nnext`;
    expect(parseDomain(domainXml(name)).name).toBe(name);
  });

  it('names malformed XML', () => {
    expect(() => parseDomain('<domain><name>x</name>', 'the domain XML on stdin')).toThrow(/the domain XML on stdin (is not well-formed XML|has no valid)/);
  });
});

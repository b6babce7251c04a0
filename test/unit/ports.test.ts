// Issue 10, scope 4: `host: auto` forwards and port blocks — their template
// syntax, forwards.autoPorts, the pool allocator, the allocation store, and
// the forwards a start gets from what apply allocated.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseTemplate } from '../../src/policy/template.js';
import { formatProblem } from '../../src/policy/yaml-doc.js';
import { BINDINGS } from '../../src/bindings/registry.js';
import { natSettings } from '../../src/bindings/nat/settings.js';
import { DEFAULT_CONFIG, parseConfig } from '../../src/policy/config.js';
import { allocatePorts } from '../../src/plan/port-pool.js';
import type { PortRange } from '../../src/model/ports.js';
import { AllocationStore, emptyAllocations, type Allocations } from '../../src/state/allocations.js';
import { planPorts } from '../../src/engine/allocations.js';
import { resolveForwards } from '../../src/engine/wiring.js';
import { allocationReader } from '../../src/engine/context.js';
import { describeForward } from '../../src/plan/describe.js';
import { parseDomain } from '../../src/xml/domain.js';
import { defaultNetwork, domainXml, set, template, tempDir } from './helpers.js';

const FILE = '/etc/virtwire/templates/web.yaml';
const HEAD = 'match: {domains: ["web-*"]}\nbinding: nat\n';
const problems = (yaml: string): string[] => parseTemplate(FILE, HEAD + yaml, BINDINGS).problems.map(formatProblem);
const settingsOf = (yaml: string) => natSettings(parseTemplate(FILE, HEAD + yaml, BINDINGS).template!);

describe('template syntax: host: auto and port blocks', () => {
  it('reads host: auto as a request for as many host ports as guest ports, keyed by proto and guest ports', () => {
    const s = settingsOf('forwards:\n  - {proto: tcp, host: auto, guest: "8000-8002", from: ["198.51.100.0/24"]}\n  - {proto: tcp, host: 8080, guest: 80}\n');
    expect(s.forwards.map((f) => f.host)).toEqual([{ lo: 8080, hi: 8080 }]);
    expect(s.autoPorts).toHaveLength(1);
    expect(s.autoPorts[0]).toMatchObject({ key: 'auto:tcp:8000-8002', width: 3, origin: `${FILE}:4:5` });
    expect(s.autoPorts[0]!.forwards).toMatchObject([{ offset: 0, spec: { proto: 'tcp', guest: { lo: 8000, hi: 8002 } } }]);
  });

  it('reads a port block: tcp and udp by default, each guest port (ranges expanded) at its offset', () => {
    const s = settingsOf('forwards:\n  - {block: 10, guest: [22, 80, "8000-8001"], description: dev}\n');
    const a = s.autoPorts[0]!;
    expect(a).toMatchObject({ key: 'block', width: 10, origin: `${FILE}:4:5` });
    expect(a.forwards.map((f) => `${f.offset} ${f.spec.proto} ${f.spec.guest.lo}-${f.spec.guest.hi}`)).toEqual([
      '0 tcp 22-22', '0 udp 22-22', '1 tcp 80-80', '1 udp 80-80', '2 tcp 8000-8001', '2 udp 8000-8001',
    ]);
  });

  it('accepts the mapping shorthand forwards: {block: N, guest: [...]} as a one-item list, and proto narrows it', () => {
    const s = settingsOf('forwards: {block: 2, guest: [22], proto: udp}\n');
    expect(s.autoPorts[0]!.forwards.map((f) => f.spec.proto)).toEqual(['udp']);
  });

  it.each([
    ['host: auto without guest', 'forwards:\n  - {proto: tcp, host: auto}\n', `${FILE}:4:24: host: auto needs guest: (the guest port or range; as many host ports are allocated)`],
    ['host: auto with a bad guest', 'forwards:\n  - {proto: tcp, host: auto, guest: "80-70"}\n', `${FILE}:4:37: guest: a range goes low-high, found "80-70"`],
    ['a block smaller than its guest ports', 'forwards:\n  - {block: 3, guest: [22, "8000-8002"]}\n', `${FILE}:4:13: block: 3 host port(s) cannot hold the 4 guest ports listed; make block at least 4, or list fewer guest ports`],
    ['a block that is not a number', 'forwards:\n  - block: many\n    guest: [22]\n', `${FILE}:4:12: block must be a whole number of host ports from 1 to 1024, found string "many"`],
    ['a block too large', 'forwards:\n  - {block: 2000, guest: [22]}\n', `${FILE}:4:13: block must be a whole number of host ports from 1 to 1024, found number 2000`],
    ['a block without guest', 'forwards:\n  - {block: 2}\n', `${FILE}:4:5: forwards[] (port block): guest is required: the guest ports the block forwards to, in order (e.g. [22, 80, "8000-8001"])`],
    ['a block with a bad guest port', 'forwards:\n  - {block: 2, guest: [22, 70000]}\n', `${FILE}:4:23: guest: a port is 1-65535, found 70000`],
    ['a block with a bad proto', 'forwards:\n  - {block: 2, guest: [22], proto: sctp}\n', `${FILE}:4:36: proto must be tcp or udp, found string "sctp"`],
    ['a misspelled block key, with a suggestion', 'forwards:\n  - {block: 2, guest: [22], form: ["10.0.0.0/8"]}\n', `${FILE}:4:29: unknown key "form" in a port block (did you mean "from"?); allowed: block, guest, proto, from, listen, description`],
    ['host in a block', 'forwards:\n  - {block: 2, guest: [22], host: 80}\n', `${FILE}:4:29: unknown key "host" in a port block; allowed: block, guest, proto, from, listen, description`],
    ['a misspelled block in a forward, with a suggestion', 'forwards:\n  - {blok: 2, guest: [22]}\n', `${FILE}:4:6: unknown key "blok" in a forward (did you mean "block"?); allowed: proto, host, guest, listen, from, description, allowHostConflict`],
    ['a mapping that is not a block', 'forwards: {proto: tcp, host: 80}\n', `${FILE}:3:11: forwards must be a list, found a mapping`],
    ['two blocks', 'forwards:\n  - {block: 2, guest: [22]}\n  - {block: 2, guest: [80]}\n', `${FILE}:5:5: a second port block; a template has at most one (the first is at ${FILE}:4:5): merge their guest ports into one block`],
    ['two auto forwards for one guest port', 'forwards:\n  - {proto: tcp, host: auto, guest: 80}\n  - {proto: tcp, host: auto, guest: 80}\n', `${FILE}:5:5: a second host: auto forward for tcp 80 (the first is at ${FILE}:4:5); remove one`],
  ])('reports %s at file:line:column', (_what, yaml, message) => {
    expect(problems(yaml)).toEqual([message]);
  });

  it('a domain\'s metadata cannot ask for host="auto" (only templates allocate)', () => {
    const meta = '<vw:wiring xmlns:vw="https://virtwire.dev/xmlns/domain/1"><vw:forward proto="tcp" host="auto" guest="80"/></vw:wiring>';
    const dom = parseDomain(domainXml('web-1', [{ mac: '52:54:00:77:00:10' }], meta));
    expect(() => resolveForwards({ domain: dom, templates: set(template('web', `${HEAD}forwards: []\n`)), config: DEFAULT_CONFIG, network: () => defaultNetwork(), hostAddresses: () => [] }))
      .toThrow('VM "web-1" metadata forward #1: host: expected a port (80) or a range ("8000-8010"), found "auto"; fix the domain\'s <metadata>');
  });
});

describe('forwards.autoPorts in virtwire.yaml', () => {
  const CFG = '/etc/virtwire/virtwire.yaml';
  it('defaults to 20000-29999, clipped to allowedHostPorts when only that is written', () => {
    expect(DEFAULT_CONFIG.forwards.autoPorts).toEqual([{ lo: 20000, hi: 29999 }]);
    expect(parseConfig(CFG, 'forwards: {allowedHostPorts: ["25000-40000"]}\n').forwards.autoPorts).toEqual([{ lo: 25000, hi: 29999 }]);
    expect(parseConfig(CFG, 'forwards: {autoPorts: ["30000-30099", 31000]}\n').forwards.autoPorts).toEqual([{ lo: 30000, hi: 30099 }, { lo: 31000, hi: 31000 }]);
  });

  it('must lie inside allowedHostPorts, whichever is written first (file:line:column)', () => {
    expect(() => parseConfig(CFG, 'forwards:\n  autoPorts: ["20000-40000"]\n  allowedHostPorts: ["20000-29999"]\n')).toThrow(
      `${CFG}:2:15: forwards.autoPorts: 20000-40000 is not inside forwards.allowedHostPorts (20000-29999); the pool must lie inside it: shrink it or widen allowedHostPorts (fix ${CFG}, or remove it to use the defaults)`);
  });

  it('names a bad entry and a misspelled key', () => {
    expect(() => parseConfig(CFG, 'forwards:\n  autoPorts: [abc]\n')).toThrow(`${CFG}:2:15: forwards.autoPorts: expected a port (80) or a range ("8000-8010"), found "abc"`);
    expect(() => parseConfig(CFG, 'forwards:\n  autoPort: []\n')).toThrow(`${CFG}:2:3: unknown key "forwards.autoPort" (did you mean "autoPorts"?); allowed: allowedHostPorts, autoPorts`);
  });
});

describe('the pool allocator', () => {
  const POOL = [{ lo: 20000, hi: 20009 }];
  const base = { pool: POOL, poolName: 'forwards.autoPorts 20000-20009 of /etc/virtwire/virtwire.yaml', have: new Map(), taken: [] };
  const need = (id: string, width: number) => ({ id, width, what: `VM "${id}" NIC 52:54:00:00:00:01 (${FILE}:4:5)` });

  it('hands out the lowest free run of the needed width, skipping taken ports', () => {
    const r = allocatePorts({ ...base, needs: [need('a', 3), need('b', 2)], taken: [{ lo: 20001, hi: 20001 }] });
    expect([...r]).toEqual([['a', { lo: 20002, hi: 20004 }], ['b', { lo: 20005, hi: 20006 }]]);
  });

  it('uses a later pool range when the first has no run wide enough', () => {
    const r = allocatePorts({ ...base, pool: [{ lo: 20000, hi: 20001 }, { lo: 21000, hi: 21009 }], needs: [need('a', 4)] });
    expect(r.get('a')).toEqual({ lo: 21000, hi: 21003 });
  });

  it('keeps what a VM holds (stable), even when a lower run is free now', () => {
    const r = allocatePorts({ ...base, needs: [need('a', 2)], have: new Map([['a', { lo: 20006, hi: 20007 }]]) });
    expect(r.get('a')).toEqual({ lo: 20006, hi: 20007 });
  });

  it('moves a held run that now overlaps a fixed port, left the pool, or changed width', () => {
    expect(allocatePorts({ ...base, needs: [need('a', 2)], have: new Map([['a', { lo: 20006, hi: 20007 }]]), taken: [{ lo: 20007, hi: 20007 }] }).get('a')).toEqual({ lo: 20000, hi: 20001 });
    expect(allocatePorts({ ...base, needs: [need('a', 2)], have: new Map([['a', { lo: 30000, hi: 30001 }]]) }).get('a')).toEqual({ lo: 20000, hi: 20001 });
    expect(allocatePorts({ ...base, needs: [need('a', 3)], have: new Map([['a', { lo: 20006, hi: 20007 }]]) }).get('a')).toEqual({ lo: 20000, hi: 20002 });
  });

  it('exhaustion is one line naming the pool, the VM, NIC and template, and the fix', () => {
    expect(() => allocatePorts({ ...base, needs: [need('web-1', 4)], taken: [{ lo: 20003, hi: 20003 }, { lo: 20007, hi: 20007 }] })).toThrow(
      `forwards.autoPorts 20000-20009 of /etc/virtwire/virtwire.yaml is exhausted: VM "web-1" NIC 52:54:00:00:00:01 (${FILE}:4:5) needs 4 consecutive host port(s) and no free run of that width is left; widen it, or release the ports of VMs that are gone (virtwire gc)`);
  });
});

describe('the allocation store', () => {
  const data: Allocations = {
    schema: 1,
    vms: { '6f1f6a0e-0000-4000-8000-000000000001': { name: 'web-1', nics: { '52:54:00:77:00:10': [{ key: 'block', ports: { lo: 20000, hi: 20009 } }] }, reservations: [{ network: 'default', mac: '52:54:00:77:00:10', ip: '192.168.122.2' }], updatedAt: 'x' } },
  };

  it('an absent file is empty; a write is read back and leaves no temp file', () => {
    const dir = join(tempDir(), 'state');
    const store = new AllocationStore(dir);
    expect(store.read()).toEqual({ kind: 'ok', data: emptyAllocations() });
    store.write(data);
    expect(store.read()).toEqual({ kind: 'ok', data });
    expect(readdirSync(dir)).toEqual(['allocations.json']);
    // What a hook reads (no lock): the allocation by UUID, MAC and key; nothing for another key.
    const read = allocationReader(dir);
    expect(read('6f1f6a0e-0000-4000-8000-000000000001', '52:54:00:77:00:10', 'block')).toEqual({ lo: 20000, hi: 20009 });
    expect(read('6f1f6a0e-0000-4000-8000-000000000001', '52:54:00:77:00:10', 'auto:tcp:80')).toBeUndefined();
    expect(read('6f1f6a0e-0000-4000-8000-000000000009', '52:54:00:77:00:10', 'block')).toBeUndefined();
  });

  it.each([
    ['truncated JSON', '{"schema": 1, "vms": {', 'not valid JSON'],
    ['a bad port range', JSON.stringify({ schema: 1, vms: { '6f1f6a0e-0000-4000-8000-000000000001': { name: 'x', nics: { '52:54:00:77:00:10': [{ key: 'block', ports: { lo: 9, hi: 2 } }] }, reservations: [], updatedAt: '' } } }), 'bad allocation of NIC 52:54:00:77:00:10 of 6f1f6a0e-0000-4000-8000-000000000001'],
    ['a key that is not a UUID', JSON.stringify({ schema: 1, vms: { __proto__x: {} } }), 'bad UUID "__proto__x"'],
  ])('a corrupt file (%s) is reported to readers, set aside by a writer and never emptied in place', (_what, text, reason) => {
    const dir = tempDir();
    const store = new AllocationStore(dir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(store.file, text);
    expect(store.read()).toEqual({ kind: 'corrupt', reason });
    expect(() => allocationReader(dir)('6f1f6a0e-0000-4000-8000-000000000001', '52:54:00:77:00:10', 'block')).toThrow(
      `virtwire's allocation store ${store.file} is unreadable (${reason}); run: virtwire apply --all (it sets the file aside and allocates again)`);
    const r = store.readForUpdate();
    expect(r.data).toEqual(emptyAllocations());
    expect(r.setAside).toMatch(new RegExp(`^${store.file} was unreadable \\(.*\\): set aside as ${store.file}\\.corrupt-\\d+; allocations start afresh$`));
    const aside = readdirSync(dir).filter((n) => n.includes('.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]!), 'utf8')).toBe(text);
    expect(existsSync(store.file)).toBe(false);
  });
});

describe('planning ports for a VM (apply) and resolving them at its start', () => {
  const BLOCK = template('dev', 'match: {domains: ["dev-*"]}\nbinding: nat\nforwards:\n  - {block: 4, guest: [22, "8000-8001"], proto: tcp}\n  - {proto: udp, host: auto, guest: 5000}\n');
  const FIXED = template('fixed', 'match: {domains: ["other-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 20001, guest: 80}\n');
  const UUID1 = '6f1f6a0e-0000-4000-8000-000000000001';
  const UUID2 = '6f1f6a0e-0000-4000-8000-000000000002';
  const MAC1 = '52:54:00:77:00:10';
  const dom = (name: string, uuid: string, mac: string) => parseDomain(domainXml(name, [{ mac }], '', uuid));
  const plan = (d: ReturnType<typeof dom>, store: Allocations, applied: PortRange[] = []) => planPorts({
    domain: d, templates: set(BLOCK, FIXED), config: () => DEFAULT_CONFIG, configFile: '/etc/virtwire/virtwire.yaml', store, applied,
  });

  it('allocates each request clear of other templates\' fixed ports and other VMs; a second plan keeps them', () => {
    const p1 = plan(dom('dev-1', UUID1, MAC1), emptyAllocations());
    // 20001 is fixed in fixed.yaml: the 4-port block starts after it; the 1-port auto forward takes 20000.
    expect(p1.nics).toEqual({ [MAC1]: [{ key: 'block', ports: { lo: 20002, hi: 20005 } }, { key: 'auto:udp:5000', ports: { lo: 20000, hi: 20000 } }] });
    expect(p1.added.map((a) => `${a.key} ${a.protos.join('+')}`)).toEqual(['block tcp', 'auto:udp:5000 udp']);
    const store: Allocations = { schema: 1, vms: { [UUID1]: { name: 'dev-1', nics: p1.nics, reservations: [], updatedAt: '' } } };
    expect(plan(dom('dev-1', UUID1, MAC1), store)).toMatchObject({ nics: p1.nics, added: [], dropped: [] });
    const p2 = plan(dom('dev-2', UUID2, '52:54:00:77:00:20'), store, [{ lo: 20006, hi: 20006 }]);
    expect(Object.values(p2.nics)[0]).toEqual([{ key: 'block', ports: { lo: 20007, hi: 20010 } }, { key: 'auto:udp:5000', ports: { lo: 20011, hi: 20011 } }]);
  });

  it('drops what the VM\'s templates no longer ask for', () => {
    const store: Allocations = { schema: 1, vms: { [UUID1]: { name: 'web-1', nics: { [MAC1]: [{ key: 'block', ports: { lo: 20002, hi: 20005 } }] }, reservations: [], updatedAt: '' } } };
    expect(plan(dom('web-1', UUID1, MAC1), store)).toEqual({ nics: {}, added: [], dropped: [{ mac: MAC1, key: 'block', ports: { lo: 20002, hi: 20005 } }] });
  });

  it('a start resolves the block and auto forwards on the allocated ports', () => {
    const d = dom('dev-1', UUID1, MAC1);
    const p = plan(d, emptyAllocations());
    const allocated = (mac: string, key: string) => p.nics[mac]?.find((a) => a.key === key)?.ports;
    const r = resolveForwards({ domain: d, templates: set(BLOCK), config: DEFAULT_CONFIG, network: () => defaultNetwork(), hostAddresses: () => [], allocated });
    expect(r.forwards.filter((f) => f.family === 4).map(describeForward)).toEqual([
      'tcp *:20002 -> 192.168.122.10:22', 'tcp *:20003-20004 -> 192.168.122.10:8000-8001', 'udp *:20000 -> 192.168.122.10:5000',
    ]);
  });

  it('a start with nothing allocated is refused in one line naming VM, NIC, template and the command', () => {
    const d = dom('dev-1', UUID1, MAC1);
    expect(() => resolveForwards({ domain: d, templates: set(BLOCK), config: DEFAULT_CONFIG, network: () => defaultNetwork(), hostAddresses: () => [] })).toThrow(
      `VM "dev-1" NIC ${MAC1}: template /etc/virtwire/templates/dev.yaml:4:5 asks for automatic host ports that have not been allocated; run: virtwire apply dev-1`);
    const one = template('one', 'match: {domains: ["dev-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: auto, guest: 80}\n');
    expect(() => resolveForwards({ domain: d, templates: set(one), config: DEFAULT_CONFIG, network: () => defaultNetwork(), hostAddresses: () => [] })).toThrow(
      `VM "dev-1" NIC ${MAC1}: template /etc/virtwire/templates/one.yaml:4:5 asks for an automatic host port that has not been allocated; run: virtwire apply dev-1`);
  });
});

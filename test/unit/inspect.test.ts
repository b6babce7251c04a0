// The host-vs-ledger comparison behind `virtwire status` (src/engine/inspect.ts),
// on this host's real nft and iptables in a throwaway netns: the ledger applied
// by converge, then the host damaged by hand the ways an admin or a firewall
// reload would, and each damage named.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { converge } from '../../src/engine/converge.js';
import { readHostView, strayElements, vmHostStatus, type VmFacts } from '../../src/engine/inspect.js';
import { parseLiveTable, canonicalElement } from '../../src/host/nft-live.js';
import { tableChains } from '../../src/host/nft-script.js';
import { LEDGER_SCHEMA, Ledger, type VmEntry } from '../../src/state/ledger.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { mustRun } from '../../src/host/run.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { tempDir, testPaths } from './helpers.js';

const UUID = '6f1f6a0e-0000-4000-8000-0000000000c1';
const NAME = 'web-"1"\nx';
const WHO = 'VM "web-\\"1\\"\\nx"';
const MAC = '52:54:00:77:00:c1';
const MARK = 0x10000000;

const fwd = (over: Partial<ResolvedForward> = {}): ResolvedForward => ({
  family: 4, proto: 'tcp', host: { lo: 8080, hi: 8080 }, guestAddr: '192.168.122.10', guest: { lo: 80, hi: 80 }, from: [],
  guestSubnet: '192.168.122.0/24', nic: MAC, network: 'default', origin: 't', allowHostConflict: false, ...over,
});
const FORWARDS = [fwd(), fwd({ proto: 'udp', host: { lo: 5000, hi: 5001 }, guest: { lo: 5000, hi: 5001 }, from: ['10.0.0.0/8', '192.0.2.7/32'] }), fwd({ family: 6, guestAddr: 'fd00:77::10', guestSubnet: 'fd00:77::/64', listen: 'fd00::1' })];
const entry = (forwards = FORWARDS): VmEntry => ({
  schema: LEDGER_SCHEMA, uuid: UUID, name: NAME, state: 'applied', updatedAt: new Date().toISOString(),
  nics: [{ mac: MAC, template: 'web', binding: 'nat', bindingVersion: 1, network: 'default', forwards }],
});
const VM: VmFacts = { uuid: UUID, name: NAME, running: true, wanted: 3 };

describe('parseLiveTable', () => {
  it('writes nft JSON elements in nft-script syntax, a single-address prefix as the bare address', () => {
    const t = parseLiveTable(JSON.stringify({ nftables: [
      { metainfo: {} },
      { map: { name: 'fwd4', type: ['inet_service', 'inet_proto', 'ipv4_addr', 'ipv4_addr'], elem: [
        [{ concat: [8080, 'tcp', '192.0.2.1', { prefix: { addr: '0.0.0.0', len: 0 } }] }, { concat: ['192.168.122.10', 80] }],
        // nft 1.1 (Debian 13) lists the protocol as its number.
        [{ concat: [53, 17, '192.0.2.1', { prefix: { addr: '0.0.0.0', len: 0 } }] }, { concat: ['192.168.122.10', 53] }],
      ] } },
      { set: { name: 'hairpin4', type: ['ipv4_addr', 'ipv4_addr'], elem: [{ concat: [{ prefix: { addr: '192.168.122.0', len: 24 } }, '192.168.122.10'] }, { elem: { val: { range: ['10.0.0.1', '10.0.0.9'] }, counter: {} } }] } },
      { set: { name: 'hairpin6' } },
      { chain: { name: 'prerouting' } },
      { rule: { chain: 'prerouting' } },
      { chain: { name: 'output' } },
    ] }));
    expect([...t.elements.get('fwd4')!]).toEqual(['8080 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.10 . 80', '53 . udp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.10 . 53']);
    expect([...t.elements.get('hairpin4')!]).toEqual(['192.168.122.0/24 . 192.168.122.10', '10.0.0.1-10.0.0.9']);
    expect(t.elements.get('hairpin6')!.size).toBe(0);
    expect([...t.chains]).toEqual([['prerouting', 1], ['output', 0]]);
    expect(canonicalElement('192.0.2.7/32 . 2001:db8::1/128 . fd00::/32 . 10.0.0.0/8 : 1.2.3.4 . 80')).toBe('192.0.2.7 . 2001:db8::1 . fd00::/32 . 10.0.0.0/8 : 1.2.3.4 . 80');
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('host against ledger, on real nft and iptables', () => {
  let ns: ScratchNetns;
  let ledger: Ledger;
  let configFile: string;
  const status = async () => vmHostStatus(await readHostView(ns.run, ledger, configFile), VM);
  const apply = () => converge({ run: ns.run, ledger, mark: MARK });

  beforeEach(async () => {
    ns = new ScratchNetns();
    const paths = testPaths(tempDir());
    ledger = new Ledger(paths.runDir);
    configFile = paths.configFile;
    // libvirt 9's iptables chains: detectTargets finds the iptables backend.
    await mustRun(ns.run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(ns.run, ['iptables', '-w', '-A', 'FORWARD', '-j', 'LIBVIRT_FWI']);
    ledger.putVm(entry());
    await apply();
  });
  afterEach(() => ns.delete());

  it('in sync: ok, and nothing stray', async () => {
    expect(await status()).toEqual({ state: 'ok', problems: [] });
    expect(strayElements(await readHostView(ns.run, ledger, configFile))).toEqual([]);
  });

  it('an element deleted by hand is named, with its forward and NIC', async () => {
    await mustRun(ns.run, ['nft', 'delete', 'element', 'inet', 'virtwire', 'port4', '{ 8080 . tcp : 192.168.122.10 . 80 }']);
    await mustRun(ns.run, ['nft', 'delete', 'element', 'inet', 'virtwire', 'fwd4', '{ 5001 . udp . 0.0.0.0/0 . 192.0.2.7/32 : 192.168.122.10 . 5001 }']);
    expect(await status()).toEqual({ state: 'not matching', problems: [
      `${WHO} NIC ${MAC}: forward tcp *:8080 -> 192.168.122.10:80 is missing from nft map port4; run "virtwire reconcile"`,
      `${WHO} NIC ${MAC}: forward udp *:5000-5001 -> 192.168.122.10:5000-5001 from 10.0.0.0/8,192.0.2.7/32 is missing from nft map fwd4 (1 of its 4 elements); run "virtwire reconcile"`,
    ] });
    await apply();
    expect(await status()).toEqual({ state: 'ok', problems: [] });
  });

  it('a hairpin pair deleted, and an element added by hand, are named', async () => {
    await mustRun(ns.run, ['nft', 'delete', 'element', 'inet', 'virtwire', 'hairpin6', '{ fd00:77::/64 . fd00:77::10 }']);
    await mustRun(ns.run, ['nft', 'add', 'element', 'inet', 'virtwire', 'port4', '{ 9999 . tcp : 192.168.122.10 . 22 }']);
    await mustRun(ns.run, ['nft', 'add', 'element', 'inet', 'virtwire', 'port4', '{ 9998 . tcp : 192.168.122.99 . 22 }']);
    expect((await status()).problems).toEqual([
      `${WHO}: hairpin pair fd00:77::/64 . fd00:77::10 is missing from nft set hairpin6 (neighbour guests get no reply through its host ports); run "virtwire reconcile"`,
      `${WHO}: nft map port4 holds 9999 . tcp : 192.168.122.10 . 22, which its ledger entry does not have; run "virtwire reconcile"`,
    ]);
    expect(strayElements(await readHostView(ns.run, ledger, configFile))).toEqual([
      'nft map port4 holds 9998 . tcp : 192.168.122.99 . 22, which no ledger entry has (left behind, or added by hand); run "virtwire reconcile"',
    ]);
  });

  it('a chain deleted or flushed by hand is named', async () => {
    expect([...tableChains()]).toEqual([['prerouting', 4], ['output', 4], ['postrouting', 2]]);
    await mustRun(ns.run, ['nft', 'delete', 'chain', 'inet', 'virtwire', 'output']);
    await mustRun(ns.run, ['nft', 'flush', 'chain', 'inet', 'virtwire', 'postrouting']);
    expect((await status()).problems).toEqual([
      `${WHO}: nft chain output is missing from table inet virtwire, so its forwards do not work; run "virtwire reconcile"`,
      `${WHO}: nft chain postrouting of table inet virtwire holds 0 rule(s), virtwire puts 2; run "virtwire reconcile"`,
    ]);
  });

  it('the table gone: one line saying so', async () => {
    await mustRun(ns.run, ['nft', 'delete', 'table', 'inet', 'virtwire']);
    expect(await status()).toEqual({ state: 'not matching', problems: [
      `${WHO}: the nft table inet virtwire is missing, so none of its 3 forward(s) is applied; run "virtwire reconcile"`,
    ] });
  });

  it('the accept gone from libvirt\'s FORWARD chain, or moved down, is named', async () => {
    const rule = (await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n').find((l) => l.includes('virtwire:mark='))!;
    await mustRun(ns.run, ['iptables', '-w', '-D', 'FORWARD', '1']);
    expect(await status()).toEqual({ state: 'not matching', problems: [
      `${WHO}: virtwire's accept is missing from iptables filter FORWARD, so libvirt's firewall can reject the connections its forwards bring; run "virtwire reconcile"`,
    ] });
    // Back, but below libvirt's jump.
    await mustRun(ns.run, ['iptables-restore', '-w', '--noflush'], `*filter\n${rule}\nCOMMIT\n`);
    expect((await status()).problems).toEqual([
      `${WHO}: virtwire's accept is not alone and first in iptables filter FORWARD, so libvirt's firewall can reject the connections its forwards bring; run "virtwire reconcile"`,
    ]);
    await apply();
    expect(await status()).toEqual({ state: 'ok', problems: [] });
  });

  it('a running VM with no entry although the templates wire it; a reserved entry; a stopped VM', async () => {
    ledger.removeVm(UUID);
    expect((await status()).problems).toEqual([
      `${WHO}: runs with no ledger entry although the templates give it 3 forward(s) (started before virtwire was installed, or without its hooks); restart it or run "virtwire apply VM"`,
    ]);
    expect(vmHostStatus(await readHostView(ns.run, ledger, configFile), { ...VM, name: 'web-1' }).problems[0]).toContain('run "virtwire apply web-1"');
    expect(vmHostStatus(await readHostView(ns.run, ledger, configFile), { ...VM, wanted: 0 })).toEqual({ state: 'ok', problems: [] });
    ledger.putVm({ ...entry(), state: 'reserved' });
    expect((await status()).problems[0]).toMatch(/: its forwards are reserved, not applied .*; restart it or run "virtwire apply VM"$/);
    const stopped = { ...VM, running: false };
    expect(vmHostStatus(await readHostView(ns.run, ledger, configFile), stopped), 'an entry just written: a start under way').toEqual({ state: 'not running', problems: [] });
    ledger.putVm({ ...entry(), updatedAt: '2000-01-01T00:00:00Z' });
    expect(vmHostStatus(await readHostView(ns.run, ledger, configFile), stopped)).toEqual({ state: 'not running', problems: [
      `${WHO}: does not run, but the ledger still holds its 3 forward(s) (its stop hook did not run); run "virtwire reconcile" removes them`,
    ] });
    ledger.removeVm(UUID);
    expect(vmHostStatus(await readHostView(ns.run, ledger, configFile), stopped)).toEqual({ state: 'not running', problems: [] });
  });
});

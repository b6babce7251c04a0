// The watcher's eye on libvirt's firewall chains (src/cli/firewall-monitor.ts):
// which lines of `nft monitor rules` count (recorded from nft 1.0.6 and
// 1.1.3, which print them alike), the reporting once per burst and the
// restart of a monitor that ended (a fake process), and the real nft monitor
// in a throwaway netns: libvirt-like rules rewritten report a change,
// virtwire's own accept and table none.
import { afterEach, describe, expect, it } from 'vitest';
import { FirewallMonitor, libvirtChainChange } from '../../src/cli/firewall-monitor.js';
import { mustRun } from '../../src/host/run.js';
import { acceptComment } from '../../src/host/libvirt-firewall.js';
import { FakeProcess } from '../support/fake-event-process.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('which monitored rule changes are libvirt\'s', () => {
  it('a rule added to or deleted from guest_input or filter FORWARD, but virtwire\'s own accept', () => {
    expect(libvirtChainChange('add rule ip libvirt_network guest_input oifname "virbr0" counter packets 0 bytes 0 reject')).toBe(true);
    expect(libvirtChainChange('add rule ip6 libvirt_network guest_input oif "virbr0" counter packets 0 bytes 0 reject # handle 4')).toBe(true);
    expect(libvirtChainChange('insert rule ip filter FORWARD counter packets 0 bytes 0 jump LIBVIRT_FWI')).toBe(true);
    expect(libvirtChainChange('delete rule ip libvirt_network guest_input handle 3'), 'a deletion names only a handle').toBe(true);
    expect(libvirtChainChange('delete rule ip filter FORWARD handle 4')).toBe(true);
    // virtwire's own: the nftables accept by its comment, the iptables-nft one by its match.
    expect(libvirtChainChange('insert rule ip libvirt_network guest_input ct mark & 0x10000000 == 0x10000000 ct status dnat counter packets 0 bytes 0 accept comment "virtwire:mark=0x10000000"')).toBe(false);
    expect(libvirtChainChange('insert rule ip filter FORWARD ct mark and 0x10000000 == 0x10000000 ct status dnat  counter packets 0 bytes 0 accept')).toBe(false);
    // Not libvirt's chains: virtwire's own table, which every start and destroy changes, and anything else.
    expect(libvirtChainChange('add rule inet virtwire c counter packets 0 bytes 0')).toBe(false);
    expect(libvirtChainChange('add element inet virtwire fwd4 { tcp . 8080 : 192.168.122.10 . 80 }')).toBe(false);
    expect(libvirtChainChange('add rule ip libvirt_network guest_output oifname "virbr0" accept')).toBe(false);
    expect(libvirtChainChange('add rule ip nat POSTROUTING masquerade')).toBe(false);
  });
});

describe('reporting: once per burst, and again after a monitor that ended runs anew', () => {
  let monitor: FirewallMonitor | undefined;
  afterEach(() => monitor?.stop());

  it('a burst split across chunks is one report; one after it another; nothing after stop', async () => {
    const procs: FakeProcess[] = [];
    let reports = 0;
    monitor = new FirewallMonitor(() => { reports++; }, { spawn: (c, a) => { const p = new FakeProcess([...c, ...a]); procs.push(p); return p; }, settleMs: 40 });
    monitor.start();
    expect(procs.map((p) => p.argv.join(' '))).toEqual(['nft monitor rules']);
    const p = procs[0] as FakeProcess;
    p.stdout('add rule ip libvirt_network guest_input oifname "vir');
    p.stdout('br0" counter packets 0 bytes 0 reject\nadd rule ip6 libvirt_network guest_input oifname "virbr0" reject\n');
    await sleep(15);
    expect(reports, 'not before the burst had its time').toBe(0);
    await sleep(60);
    expect(reports).toBe(1);
    p.stdout('delete rule ip libvirt_network guest_input handle 9\n');
    await sleep(80);
    expect(reports).toBe(2);
    p.stdout('add rule inet virtwire c counter\n');
    await sleep(80);
    expect(reports).toBe(2);
    p.stdout('delete rule ip libvirt_network guest_input handle 10\n');
    monitor.stop();
    await sleep(80);
    expect(reports, 'stopped: no report').toBe(2);
    expect(p.killed).toBe(true);
  });

  it('a monitor that ended: told once, started again after retryMs, and a report then (changes may have gone unseen)', async () => {
    const procs: FakeProcess[] = [];
    const said: string[] = [];
    let reports = 0;
    monitor = new FirewallMonitor(() => { reports++; }, { spawn: (c, a) => { const p = new FakeProcess([...c, ...a]); procs.push(p); return p; }, settleMs: 10, retryMs: 50, say: (l) => said.push(l) });
    monitor.start();
    procs[0]?.exit('nft: not installed');
    await sleep(80);
    expect(procs).toHaveLength(2);
    procs[1]?.exit('exit status 1');
    await sleep(80);
    expect(procs).toHaveLength(3);
    expect(said).toEqual(["nft monitor ended (nft: not installed): libvirt's firewall chains go unwatched until it runs again; trying every 0.05 s"]);
    expect(reports, 'one per start again').toBe(2);
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('the real nft monitor, in a throwaway netns', () => {
  let ns: ScratchNetns;
  let monitor: FirewallMonitor | undefined;
  afterEach(() => { monitor?.stop(); ns.delete(); });

  it('libvirt\'s guest_input rewritten (as its reload does) is reported; virtwire\'s accept and table are not', async () => {
    ns = new ScratchNetns();
    let reports = 0;
    monitor = new FirewallMonitor(() => { reports++; }, { nft: ['ip', 'netns', 'exec', ns.name, 'nft'], settleMs: 100 });
    monitor.start();
    await sleep(300); // nft monitor subscribed
    await mustRun(ns.run, ['nft', '-f', '-'], 'table inet virtwire {\n chain c {\n }\n}\n');
    await mustRun(ns.run, ['nft', 'add', 'rule', 'inet', 'virtwire', 'c', 'counter']);
    await sleep(250);
    expect(reports, 'virtwire\'s own table').toBe(0);
    await mustRun(ns.run, ['nft', '-f', '-'], 'table ip libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n}\n');
    await sleep(250);
    expect(reports).toBe(1);
    await mustRun(ns.run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'ct', 'mark', '&', '0x10000000', '==', '0x10000000', 'ct', 'status', 'dnat', 'counter', 'accept', 'comment', `"${acceptComment(0x10000000)}"`]);
    await sleep(250);
    expect(reports, 'virtwire\'s accept').toBe(1);
    // A reload: libvirt's rules flushed and written again, in one burst.
    await mustRun(ns.run, ['nft', '-f', '-'], 'flush chain ip libvirt_network guest_input\nadd rule ip libvirt_network guest_input oifname "virbr0" reject\n');
    await sleep(250);
    expect(reports).toBe(2);
  });
});

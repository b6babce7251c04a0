import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { iptablesAcceptScript, nftAcceptScript, detectTargets, setAccept, acceptComment } from '../../src/host/libvirt-firewall.js';
import { mustRun } from '../../src/host/run.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';

const M = 0x10000000;
const OURS = `-A FORWARD -m connmark --mark 0x10000000/0x10000000 -m conntrack --ctstate DNAT -m comment --comment ${acceptComment(M)} -j ACCEPT`;

describe('accept scripts (pure)', () => {
  it('iptables: nothing to do when ours is first and alone', () => {
    expect(iptablesAcceptScript(`-P FORWARD ACCEPT\n${OURS}\n-A FORWARD -j LIBVIRT_FWX\n`, M)).toBe('');
  });
  it('iptables: moves ours back on top in one restore transaction (never delete-then-add in two steps)', () => {
    expect(iptablesAcceptScript(`-P FORWARD ACCEPT\n-A FORWARD -j LIBVIRT_FWX\n${OURS}\n`, M)).toBe(
      `*filter\n${OURS.replace('-A ', '-D ')}\n-I FORWARD 1 ${OURS.slice('-A FORWARD '.length)}\nCOMMIT\n`);
  });
  it('iptables: removal deletes only rules carrying our comment', () => {
    expect(iptablesAcceptScript(`-P FORWARD ACCEPT\n-A FORWARD -j LIBVIRT_FWX\n${OURS}\n-A FORWARD -j ACCEPT\n`, null)).toBe(`*filter\n${OURS.replace('-A ', '-D ')}\nCOMMIT\n`);
    expect(iptablesAcceptScript('-P FORWARD ACCEPT\n-A FORWARD -j ACCEPT\n', null)).toBe('');
  });
  it('nftables: inserts at the top and deletes stale copies by handle', () => {
    const script = nftAcceptScript({ backend: 'nftables', family: 4 }, [{ handle: 7 }, { handle: 9, comment: acceptComment(M) }], M);
    expect(script).toBe(`delete rule ip libvirt_network guest_input handle 9\ninsert rule ip libvirt_network guest_input ct mark & 0x10000000 == 0x10000000 ct status dnat counter accept comment "${acceptComment(M)}"\n`);
    expect(nftAcceptScript({ backend: 'nftables', family: 4 }, [{ handle: 9, comment: acceptComment(M) }, { handle: 7 }], M)).toBe('');
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('accepts against real iptables-nft and nft chains shaped like libvirt\'s', () => {
  let ns: ScratchNetns;
  beforeEach(() => { ns = new ScratchNetns(); });
  afterEach(() => ns.delete());

  it('iptables backend: detected from LIBVIRT_FWI, placed first, kept first after libvirt re-inserts its jumps, removed', async () => {
    const run = ns.run;
    await mustRun(run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(run, ['iptables', '-w', '-A', 'LIBVIRT_FWI', '-o', 'virbr0', '-j', 'REJECT']);
    await mustRun(run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await detectTargets(run)).toEqual([{ backend: 'iptables', family: 4 }]);
    expect(await setAccept(run, { backend: 'iptables', family: 4 }, M)).toBe(true);
    expect(await setAccept(run, { backend: 'iptables', family: 4 }, M)).toBe(false);
    // libvirt reloads and puts its jump back on top:
    await mustRun(run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await setAccept(run, { backend: 'iptables', family: 4 }, M)).toBe(true);
    const rules = (await mustRun(run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n').filter((l) => l.startsWith('-A')).map((l) => l.replace(/"/g, ''));
    expect(rules[0]).toBe(OURS);
    expect(rules.filter((l) => l === OURS)).toHaveLength(1);
    expect(await setAccept(run, { backend: 'iptables', family: 4 }, null)).toBe(true);
    expect(await mustRun(run, ['iptables', '-w', '-S', 'FORWARD'])).not.toContain('virtwire');
  });

  it('nftables backend: detected from ip libvirt_network guest_input, inserted ahead of the reject', async () => {
    const run = ns.run;
    await mustRun(run, ['nft', '-f', '-'], 'table ip libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  jump guest_input\n }\n}\n');
    expect(await detectTargets(run)).toEqual([{ backend: 'nftables', family: 4 }]);
    expect(await setAccept(run, { backend: 'nftables', family: 4 }, M)).toBe(true);
    expect(await setAccept(run, { backend: 'nftables', family: 4 }, M)).toBe(false);
    await mustRun(run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'oifname', 'virbr0', 'reject']);
    expect(await setAccept(run, { backend: 'nftables', family: 4 }, M)).toBe(true);
    const listing = await mustRun(run, ['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input']);
    const rules = listing.split('\n').map((l) => l.trim()).filter((l) => l.includes('reject') || l.includes('accept'));
    expect(rules[0]).toContain(`accept comment "${acceptComment(M)}"`);
    expect(rules.filter((l) => l.includes('virtwire'))).toHaveLength(1);
    expect(await setAccept(run, { backend: 'nftables', family: 4 }, null)).toBe(true);
    expect(await mustRun(run, ['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input'])).not.toContain('virtwire');
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { iptablesAcceptScript, nftAcceptScript, detectTargets, setAccept, acceptComment, acceptsInPlace, placeAcceptsThroughSession, chainRuleLines, xtablesVariant, type AcceptTarget } from '../../src/host/libvirt-firewall.js';
import { NftSession } from '../../src/host/nft-session.js';
import { mustRun, type Runner } from '../../src/host/run.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { tempDir } from './helpers.js';

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

describe('which iptables the hooks run (a bin tree in a temp dir)', () => {
  const bin = (links: Record<string, string>): string[] => {
    const root = tempDir('vw-xt-');
    for (const dir of ['sbin', 'bin']) mkdirSync(join(root, dir));
    for (const multi of ['xtables-nft-multi', 'xtables-legacy-multi']) writeFileSync(join(root, 'sbin', multi), '');
    for (const [tool, target] of Object.entries(links)) symlinkSync(target, join(root, tool));
    return [join(root, 'sbin'), join(root, 'bin')];
  };
  it('nft, legacy or none, by what the first one found resolves to', () => {
    expect(xtablesVariant('iptables', bin({ 'sbin/iptables': 'xtables-nft-multi', 'sbin/ip6tables': 'xtables-legacy-multi' }))).toBe('nft');
    expect(xtablesVariant('ip6tables', bin({ 'sbin/iptables': 'xtables-nft-multi', 'sbin/ip6tables': 'xtables-legacy-multi' }))).toBe('other');
    // Through a chain of links, as Debian's alternatives make it.
    expect(xtablesVariant('iptables', bin({ 'bin/alt': '../sbin/xtables-nft-multi', 'bin/iptables': 'alt' }))).toBe('nft');
    expect(xtablesVariant('iptables', bin({}))).toBe('absent');
    expect(xtablesVariant('iptables', bin({ 'sbin/iptables': 'nowhere' })), 'a dangling link: none to run').toBe('absent');
  });
  it('this host\'s (Debian 12 defaults to iptables-nft)', () => {
    expect(xtablesVariant('iptables')).toBe('nft');
  });
});

describe('chain rule lines of nft\'s text listing', () => {
  it('the rules of the named chain only, its declarations left out', () => {
    const listing = '# Warning: table ip filter is managed by iptables-nft, do not touch!\ntable ip filter {\n\tchain LIBVIRT_FWI {\n\t\tcounter reject\n\t}\n\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tcomment "x"\n\t\tct mark and 0x1 == 0x1 accept\n\t\tjump LIBVIRT_FWI\n\t}\n}\n';
    expect(chainRuleLines(listing, 'FORWARD')).toEqual([{ text: 'ct mark and 0x1 == 0x1 accept' }, { text: 'jump LIBVIRT_FWI' }]);
    expect(chainRuleLines(listing, 'LIBVIRT_FWI')).toEqual([{ text: 'counter reject' }]);
    expect(chainRuleLines(listing, 'LIBVIRT_FWO')).toBeUndefined();
  });

  it('with nft -a, each rule with its handle, the handle out of its text', () => {
    const listing = 'table ip libvirt_network { # handle 7\n\tchain guest_input { # handle 3\n\t\tct mark & 0x10000000 == 0x10000000 ct status dnat counter packets 0 bytes 0 accept comment "virtwire:mark=0x10000000" # handle 12\n\t\toif "virbr0" counter packets 0 bytes 0 reject # handle 5\n\t}\n}\n';
    expect(chainRuleLines(listing, 'guest_input')).toEqual([
      { text: 'ct mark & 0x10000000 == 0x10000000 ct status dnat counter packets 0 bytes 0 accept comment "virtwire:mark=0x10000000"', handle: 12 },
      { text: 'oif "virbr0" counter packets 0 bytes 0 reject', handle: 5 },
    ]);
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('the quick look through the watcher\'s nft session, against real iptables-nft and nft chains shaped like libvirt\'s', () => {
  let ns: ScratchNetns;
  let session: NftSession;
  const M2 = 0x20000000;
  beforeEach(() => {
    ns = new ScratchNetns();
    session = new NftSession(join(tempDir('vw-look-'), 'scratch.nft'), ['ip', 'netns', 'exec', ns.name, 'nft']);
  });
  afterEach(() => { session.close(); ns.delete(); });

  /**
   * The look, checked against the process path it stands for: whenever it
   * says "in place", probeTargets finds the same chains and setAccept has
   * nothing to do in any of them.
   */
  async function look(run: Runner, mark = M): Promise<AcceptTarget[] | undefined> {
    const quick = await acceptsInPlace(session, mark);
    if (quick) {
      expect(await detectTargets(run)).toEqual(quick);
      for (const t of quick) expect(await setAccept(run, t, mark), `${t.backend} ${t.family}: nothing left to do`).toBe(false);
    }
    return quick;
  }
  const ipt4: AcceptTarget = { backend: 'iptables', family: 4 };

  it('iptables backend: in place only while ours is first and alone, for this mark', async () => {
    const run = ns.run;
    expect(await look(run), 'no libvirt chains: none to place').toEqual([]);
    await mustRun(run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(run, ['iptables', '-w', '-A', 'LIBVIRT_FWI', '-o', 'virbr0', '-j', 'REJECT']);
    await mustRun(run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await look(run), 'no accept yet').toBeUndefined();
    await setAccept(run, ipt4, M);
    expect(await look(run)).toEqual([ipt4]);
    expect(await look(run, M2), 'an accept for another mark').toBeUndefined();
    // libvirt reloads and puts its jump back on top.
    await mustRun(run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await look(run)).toBeUndefined();
    await setAccept(run, ipt4, M);
    expect(await look(run)).toEqual([ipt4]);
    // A stale accept of another mark further down: setAccept would delete it.
    await mustRun(run, ['iptables', '-w', '-A', 'FORWARD', ...['-m', 'connmark', '--mark', '0x20000000/0x20000000', '-m', 'conntrack', '--ctstate', 'DNAT', '-m', 'comment', '--comment', acceptComment(M2), '-j', 'ACCEPT']]);
    expect(await look(run)).toBeUndefined();
    await setAccept(run, ipt4, M);
    expect(await look(run)).toEqual([ipt4]);
    // IPv6 too, in probeTargets's order.
    await mustRun(run, ['ip6tables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(run, ['ip6tables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await look(run)).toBeUndefined();
    await setAccept(run, { backend: 'iptables', family: 6 }, M);
    expect(await look(run)).toEqual([ipt4, { backend: 'iptables', family: 6 }]);
  });

  it('iptables it cannot see or does not run: legacy is never judged, no iptables means no iptables chains', async () => {
    await mustRun(ns.run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await setAccept(ns.run, ipt4, M);
    expect(await acceptsInPlace(session, M)).toEqual([ipt4]);
    expect(await acceptsInPlace(session, M, () => 'other')).toBeUndefined();
    expect(await acceptsInPlace(session, M, () => 'absent')).toEqual([]);
  });

  it('nftables backend: in place only while ours is first and alone in guest_input, both families', async () => {
    const run = ns.run;
    const table = (fam: string) => `table ${fam} libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  jump guest_input\n }\n}\n`;
    await mustRun(run, ['nft', '-f', '-'], table('ip'));
    expect(await look(run)).toBeUndefined();
    await setAccept(run, { backend: 'nftables', family: 4 }, M);
    expect(await look(run)).toEqual([{ backend: 'nftables', family: 4 }]);
    expect(await look(run, M2)).toBeUndefined();
    await mustRun(run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'oifname', 'virbr0', 'reject']);
    expect(await look(run), 'libvirt\'s reject put back ahead of it').toBeUndefined();
    await setAccept(run, { backend: 'nftables', family: 4 }, M);
    expect(await look(run)).toEqual([{ backend: 'nftables', family: 4 }]);
    await mustRun(run, ['nft', 'add', 'rule', 'ip', 'libvirt_network', 'guest_input', 'accept', 'comment', `"${acceptComment(M2)}"`]);
    expect(await look(run), 'a stale accept of another mark').toBeUndefined();
    await setAccept(run, { backend: 'nftables', family: 4 }, M);
    await mustRun(run, ['nft', '-f', '-'], table('ip6'));
    expect(await look(run)).toBeUndefined();
    await setAccept(run, { backend: 'nftables', family: 6 }, M);
    expect(await look(run)).toEqual([{ backend: 'nftables', family: 4 }, { backend: 'nftables', family: 6 }]);
  });

  it('nftables backend: the session puts virtwire\'s accept first and alone in guest_input — inserted, moved, a stale one deleted — in one transaction', async () => {
    const run = ns.run;
    const nft4: AcceptTarget = { backend: 'nftables', family: 4 };
    const nft6: AcceptTarget = { backend: 'nftables', family: 6 };
    const table = (fam: string) => `table ${fam} libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  jump guest_input\n }\n}\n`;
    const guestInput = async (fam: 'ip' | 'ip6'): Promise<string[]> => (await mustRun(run, ['nft', 'list', 'chain', fam, 'libvirt_network', 'guest_input'])).split('\n').filter((l) => l.startsWith('\t\t')).map((l) => l.trim());
    expect(await placeAcceptsThroughSession(session, M, () => 'absent'), 'no libvirt chains').toEqual({ targets: [], placed: [] });
    await mustRun(run, ['nft', '-f', '-'], table('ip') + table('ip6'));
    expect(await placeAcceptsThroughSession(session, M, () => 'absent')).toEqual({ targets: [nft4, nft6], placed: [nft4, nft6] });
    // What the process path would leave: first and alone, nothing left for setAccept to do.
    expect(await look(run)).toEqual([nft4, nft6]);
    expect(await placeAcceptsThroughSession(session, M, () => 'absent'), 'in place: only looked').toEqual({ targets: [nft4, nft6], placed: [] });
    // libvirt rebuilt its rules (a reload of the daemon): its reject ahead of the accept, which moves back first.
    await mustRun(run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'oifname', 'virbr0', 'reject']);
    expect(await placeAcceptsThroughSession(session, M, () => 'absent')).toEqual({ targets: [nft4, nft6], placed: [nft4] });
    expect(await look(run)).toEqual([nft4, nft6]);
    expect((await guestInput('ip')).filter((r) => r.includes('virtwire')), 'moved, not doubled').toHaveLength(1);
    // Doubled on IPv6 (an accept added by hand further down): one left, first.
    await mustRun(run, ['nft', 'add', 'rule', 'ip6', 'libvirt_network', 'guest_input', 'ct', 'mark', '&', '0x10000000', '==', '0x10000000', 'accept', 'comment', `"${acceptComment(M)}"`]);
    expect(await placeAcceptsThroughSession(session, M, () => 'absent')).toEqual({ targets: [nft4, nft6], placed: [nft6] });
    expect(await look(run)).toEqual([nft4, nft6]);
    // virtwire.yaml's mark changed: the old accepts deleted, the new ones first.
    expect(await placeAcceptsThroughSession(session, M2, () => 'absent')).toEqual({ targets: [nft4, nft6], placed: [nft4, nft6] });
    expect(await look(run, M2)).toEqual([nft4, nft6]);
    for (const fam of ['ip', 'ip6'] as const) expect((await guestInput(fam)).join('\n'), fam).not.toContain(acceptComment(M));
  });

  it('nftables backend: a rule gone between the look and the script fails the whole script, which then changes nothing; a listing with no handles is not acted on', async () => {
    const run = ns.run;
    const table = (fam: string) => `table ${fam} libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n}\n`;
    await mustRun(run, ['nft', '-f', '-'], table('ip') + table('ip6'));
    await setAccept(run, { backend: 'nftables', family: 4 }, M);
    await mustRun(run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'oifname', 'virbr0', 'reject']);
    const before = await mustRun(run, ['nft', 'list', 'table', 'ip', 'libvirt_network']);
    // libvirt flushes its chain (a reload) and writes it again just before the script runs: the handle to delete is gone.
    const racing = {
      list: (c: string) => session.list(c),
      run: async (script: string) => {
        await mustRun(run, ['nft', '-f', '-'], 'flush chain ip libvirt_network guest_input\nadd rule ip libvirt_network guest_input oifname "virbr0" reject\n');
        return session.run(script);
      },
    };
    expect(await placeAcceptsThroughSession(racing, M, () => 'absent')).toBeUndefined();
    expect(await mustRun(run, ['nft', 'list', 'chain', 'ip6', 'libvirt_network', 'guest_input']), 'IPv6\'s insert, in the same transaction, not made either').not.toContain('virtwire');
    expect(before).toContain('virtwire');
    // A lister whose nft does not print handles (no -a): nothing to delete by, so not acted on.
    await setAccept(run, { backend: 'nftables', family: 4 }, M);
    await mustRun(run, ['nft', 'insert', 'rule', 'ip', 'libvirt_network', 'guest_input', 'oifname', 'virbr0', 'reject']);
    const noHandles = { list: async (c: string) => { const r = await session.list(c); return { ...r, output: r.output.replace(/ # handle \d+$/gm, '') }; }, run: (s: string) => session.run(s) };
    expect(await placeAcceptsThroughSession(noHandles, M, () => 'absent')).toBeUndefined();
  });

  it('iptables rules the session cannot place are left to the processes, nothing changed meanwhile', async () => {
    const run = ns.run;
    await mustRun(run, ['nft', '-f', '-'], 'table ip6 libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n}\n');
    await mustRun(run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    expect(await placeAcceptsThroughSession(session, M)).toBeUndefined();
    expect((await mustRun(run, ['nft', 'list', 'chain', 'ip6', 'libvirt_network', 'guest_input'])).includes('virtwire'), 'nothing placed by a look that gave up').toBe(false);
  });

  it('an nft that cannot answer: not judged', async () => {
    const broken = { list: async () => ({ ok: false, output: 'Error: Operation not permitted\n' }) };
    expect(await acceptsInPlace(broken, M)).toBeUndefined();
    const gone = { list: () => Promise.reject(new Error('nft session: nft exited')) };
    expect(await acceptsInPlace(gone, M)).toBeUndefined();
  });
});

// Host links for bindings (engine/links.ts, host/link-live.ts): macvtap's
// host shim and VLAN sub-interface, made to match the ledger. Against the
// real kernel in a throwaway netns (a veth as the uplink), and, for what
// this kernel cannot do (it has no 8021q), the exact `ip` commands against a
// recording runner that answers as iproute2 does.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { convergeLinks } from '../../src/engine/links.js';
import { Ledger } from '../../src/state/ledger.js';
import { readLiveLink } from '../../src/host/link-live.js';
import type { LinkObject } from '../../src/model/host.js';
import type { Runner } from '../../src/host/run.js';
import { UserError } from '../../src/errors.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { macvtapLinks, shimName } from '../../src/bindings/macvtap/index.js';

const ledger = (): Ledger => new Ledger(mkdtempSync(join(tmpdir(), 'vw-links-')));
const SHIM: LinkObject = { kind: 'shim', name: 'vws-test', lower: 'up0', address: '198.51.100.5', prefix: 24 };

describe.skipIf(!canNetns && !mustRunEverything)('against the kernel (netns)', () => {
  let ns: ScratchNetns | undefined;
  afterEach(() => { ns?.delete(); ns = undefined; });
  const scratch = async (): Promise<ScratchNetns> => {
    const n = new ScratchNetns();
    ns = n;
    await n.run(['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p']);
    await n.run(['ip', 'link', 'set', 'up0', 'up']);
    return n;
  };

  it('a shim: created as a bridge-mode macvlan on the uplink, with its address, up; removed once no VM needs it', async () => {
    const n = await scratch();
    const l = ledger();
    const done = await convergeLinks(n.run, l, [SHIM, SHIM]);
    expect(done).toEqual(['created host shim vws-test 198.51.100.5/24 on up0']);
    expect(await readLiveLink(n.run, 'vws-test')).toEqual({ kind: 'macvlan', lower: 'up0', vid: undefined, mode: 'bridge', up: true, addresses: ['198.51.100.5/24'] });
    expect(l.getHost().links).toEqual({ 'vws-test': { link: SHIM, created: true } });
    expect(await convergeLinks(n.run, l, [SHIM]), 'nothing to do the second time').toEqual([]);
    expect(await convergeLinks(n.run, l, [])).toEqual(['removed host shim vws-test 198.51.100.5/24 on up0: no VM needs it']);
    expect(await readLiveLink(n.run, 'vws-test')).toBeUndefined();
    expect(l.getHost().links).toEqual({});
  });

  it('a link that was there already is used (its address added, brought up) and never removed', async () => {
    const n = await scratch();
    await n.run(['ip', 'link', 'add', 'link', 'up0', 'name', 'vws-test', 'type', 'macvlan', 'mode', 'bridge']);
    const l = ledger();
    expect(await convergeLinks(n.run, l, [SHIM])).toEqual(['address 198.51.100.5/24 on vws-test', 'vws-test up']);
    expect(l.getHost().links).toEqual({ 'vws-test': { link: SHIM, created: false } });
    expect(await convergeLinks(n.run, l, [])).toEqual([]);
    expect((await readLiveLink(n.run, 'vws-test'))?.kind).toBe('macvlan');
  });

  it('a link by that name that is something else is refused in one line and left alone', async () => {
    const n = await scratch();
    await n.run(['ip', 'link', 'add', 'link', 'up0', 'name', 'vws-test', 'type', 'macvlan', 'mode', 'vepa']);
    const l = ledger();
    const err = await convergeLinks(n.run, l, [SHIM]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe("cannot use host shim vws-test 198.51.100.5/24 on up0: the host's vws-test exists, but it is a macvlan in mode vepa on up0, not a bridge-mode macvlan on up0; rename or remove that link, or change the template");
    expect((await readLiveLink(n.run, 'vws-test'))?.mode).toBe('vepa');
    expect(l.getHost().links ?? {}).toEqual({});
  });

  it('a VLAN sub-interface: created (and removed) where the kernel has 8021q; refused in one line naming the fix where it has not, leaving nothing', async () => {
    const n = await scratch();
    const l = ledger();
    const vlan: LinkObject = { kind: 'vlan', name: 'up0.100', lower: 'up0', vid: 100 };
    const probe = await n.run(['ip', 'link', 'add', 'link', 'up0', 'name', 'probe.7', 'type', 'vlan', 'id', '7']);
    if (probe.exitCode === 0) {
      await n.run(['ip', 'link', 'delete', 'probe.7']);
      expect(await convergeLinks(n.run, l, [vlan])).toEqual(['created VLAN sub-interface up0.100 (VLAN 100 of up0)']);
      expect((await readLiveLink(n.run, 'up0.100'))?.vid).toBe(100);
    } else {
      const err = await convergeLinks(n.run, l, [vlan]).catch((e: unknown) => e);
      expect((err as Error).message).toBe('cannot create the VLAN sub-interface up0.100 on up0 (ip: Error: Unknown device type.); this kernel has no 802.1Q VLAN support (modprobe 8021q, or a kernel built with it)');
    }
    await convergeLinks(n.run, l, []);
    expect(await readLiveLink(n.run, 'up0.100')).toBeUndefined();
    expect(l.getHost().links).toEqual({});
  });
});

/**
 * A runner that answers `ip` as iproute2 does for links it keeps in a map,
 * and records every command: what the kernel here cannot run (8021q) is
 * checked as the exact commands.
 */
function fakeIp(): { run: Runner; commands: string[] } {
  const links = new Map<string, { kind: string; lower: string; vid?: number; mode?: string; up: boolean; addrs: string[] }>();
  const commands: string[] = [];
  const ok = (stdout = '') => ({ exitCode: 0, stdout, stderr: '' });
  const run: Runner = async (argv) => {
    commands.push(argv.join(' '));
    const a = [...argv];
    if (a.slice(0, 4).join(' ') === 'ip -j -d link') {
      const l = links.get(a[6] as string);
      if (!l) return { exitCode: 1, stdout: '', stderr: `Device "${a[6]}" does not exist.\n` };
      return ok(JSON.stringify([{ ifname: a[6], link: l.lower, flags: l.up ? ['UP'] : [], linkinfo: { info_kind: l.kind, info_data: { id: l.vid, mode: l.mode } } }]));
    }
    if (a.slice(0, 3).join(' ') === 'ip -j addr') {
      const l = links.get(a[5] as string);
      return ok(JSON.stringify([{ addr_info: (l?.addrs ?? []).map((x) => ({ local: x.split('/')[0], prefixlen: Number(x.split('/')[1]), scope: 'global' })) }]));
    }
    if (a.slice(0, 3).join(' ') === 'ip link add') {
      const name = a[6] as string;
      links.set(name, { kind: a[8] === 'vlan' ? 'vlan' : 'macvlan', lower: a[4] as string, vid: a[8] === 'vlan' ? Number(a[10]) : undefined, mode: a[8] === 'macvlan' ? a[10] : undefined, up: false, addrs: [] });
      return ok();
    }
    if (a.slice(0, 3).join(' ') === 'ip addr add') { links.get(a[5] as string)?.addrs.push(a[3] as string); return ok(); }
    if (a.slice(0, 3).join(' ') === 'ip link set') { const l = links.get(a[4] as string); if (l) l.up = true; return ok(); }
    if (a.slice(0, 3).join(' ') === 'ip link delete') { links.delete(a[4] as string); return ok(); }
    return { exitCode: 2, stdout: '', stderr: `fakeIp: unexpected ${argv.join(' ')}` };
  };
  return { run, commands };
}

describe('the exact commands (recording runner)', () => {
  it('macvtap with vlan 100 and a shim: the sub-interface first, the shim on it; removed in the reverse order; shared links once', async () => {
    const settings = { uplink: 'eth1', mode: 'bridge' as const, vlan: 100, hostShim: { address: { address: '198.51.100.5', prefix: 24, family: 4 as const } } };
    const links = macvtapLinks(settings);
    const shim = shimName('eth1.100', settings.hostShim.address);
    expect(shim).toMatch(/^vws[0-9a-f]{8}$/);
    expect(links).toEqual([
      { kind: 'vlan', name: 'eth1.100', lower: 'eth1', vid: 100 },
      { kind: 'shim', name: shim, lower: 'eth1.100', address: '198.51.100.5', prefix: 24 },
    ]);
    const { run, commands } = fakeIp();
    const l = ledger();
    // Two VMs' entries name the same links: each is made once.
    await convergeLinks(run, l, [...[...links].reverse(), ...links]);
    expect(commands.filter((c) => !c.startsWith('ip -j'))).toEqual([
      'ip link add link eth1 name eth1.100 type vlan id 100',
      'ip link set dev eth1.100 up',
      `ip link add link eth1.100 name ${shim} type macvlan mode bridge`,
      `ip addr add 198.51.100.5/24 dev ${shim}`,
      `ip link set dev ${shim} up`,
    ]);
    commands.length = 0;
    await convergeLinks(run, l, links);
    expect(commands.filter((c) => !c.startsWith('ip -j')), 'one VM left: nothing removed').toEqual([]);
    await convergeLinks(run, l, []);
    expect(commands.filter((c) => !c.startsWith('ip -j'))).toEqual([`ip link delete dev ${shim}`, 'ip link delete dev eth1.100']);
  });

  it('never passes a value it has not checked to ip', async () => {
    const { run, commands } = fakeIp();
    await expect(convergeLinks(run, ledger(), [{ kind: 'vlan', name: 'eth1.100', lower: 'eth1 x', vid: 100 }])).rejects.toThrow('refusing to pass the lower link of "eth1.100" to ip');
    await expect(convergeLinks(run, ledger(), [{ kind: 'shim', name: 'vws1', lower: 'eth1', address: '1.2.3.4/8', prefix: 24 }])).rejects.toThrow('refusing to pass the address of "vws1" to ip');
    expect(commands.filter((c) => c.startsWith('ip link add'))).toEqual([]);
  });
});

// Proves the LAN fixture (test/support/lan.ts) that the bridge and macvtap
// bindings' e2e tests stand on, with hand-written NICs (test/support/guest-nic.ts)
// and no virtwire involved: on Debian 12's libvirt 9 and on libvirt 11 in the
// Debian 13 root, a guest
//   (a) on a host Linux bridge (<interface type='bridge'>, br-lan ⊃ lan0; the
//       sandbox netns, with an address on br-lan, reaches it too),
//   (b) on macvtap over lan0 (<interface type='direct'>, modes bridge and vepa),
// takes its address from the LAN netns's own dnsmasq and serves its page to
// that netns; and (c) the sandbox host netns reaches a macvtap guest only
// through a macvlan "host shim" on lan0 — not with no address, and not with
// the address on lan0 itself (macvtap's known limit: the lower device's own
// traffic goes out the wire and never reaches its macvtaps).
//
// Runs as root; skipped otherwise unless CI=true (then it fails).
import { promises as fs } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { Sandbox } from '../../src/demo/sandbox.js';
import { bridgeInterfaceXml, defineGuestWithInterface, directInterfaceXml } from '../support/guest-nic.js';
import { addLan, macvtapNodeClashes, type Lan } from '../support/lan.js';
import { alive } from '../support/process.js';
import { ensureTrixieRoot } from '../support/rootfs.js';
import { hostHttpGet } from '../support/sandbox-traffic.js';
import { MODES, skipE2e } from './support.js';
import { timing, timed } from '../support/timing.js';

const BR_GUEST = { name: 'lan-br', mac: '52:54:00:1a:00:10', ip: '198.51.100.10' };
const MVT_GUESTS = {
  bridge: { name: 'lan-mvt-bridge', mac: '52:54:00:1a:00:11', ip: '198.51.100.11' },
  vepa: { name: 'lan-mvt-vepa', mac: '52:54:00:1a:00:12', ip: '198.51.100.12' },
} as const;
const SHIM_ADDR = '198.51.100.5/24';


/** Retries an HTTP GET for up to `withinMs` (ARP/FDB learning after a link change); returns the body. */
async function getSoon(get: (timeoutMs: number) => Promise<string>, withinMs = 10_000): Promise<string> {
  let last: unknown;
  for (const deadline = Date.now() + withinMs; Date.now() < deadline;) {
    try {
      return await get(2000);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw last;
}

/** The tail of a sandbox exec error: what the HTTP client said. */
const reason = (msg: string) => msg.slice(msg.lastIndexOf('): ') + 3).trim();

/** The error message of a GET that must fail, or throws if it answered. */
async function mustFail(get: () => Promise<string>): Promise<string> {
  const r = await get().then((body) => ({ body }), (err: Error) => ({ err }));
  if ('body' in r) throw new Error(`expected no answer, got ${JSON.stringify(r.body)}`);
  return r.err.message;
}

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  let lan: Lan | undefined;
  const lanNetnsSeen: string[] = [];
  const dnsmasqPids: number[] = [];

  const link = async (...args: string[]) => (await execa('ip', ['-n', sb.hostNetns, ...args], { timeout: 15_000 })).stdout;

  async function newLan(opts: Parameters<typeof addLan>[1]): Promise<Lan> {
    const l = await timed('addLan (netns, veth, dnsmasq up)', () => addLan(sb, opts));
    lanNetnsSeen.push(l.netns);
    dnsmasqPids.push(l.dnsmasqPid);
    return l;
  }

  async function boot(g: { name: string; mac: string; ip: string }, iface: string, what: string): Promise<void> {
    await defineGuestWithInterface(sb, g, iface);
    await timed(`${what}: virsh start → READY with the LAN's lease`, () => sb.startGuest(g.name, 90_000));
  }

  beforeAll(async () => {
    sb = await timed('sandbox start', async () => Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined }));
  }, 600_000);

  afterAll(async () => {
    // The last LAN is left open on purpose: sb.stop() must kill its dnsmasq
    // and delete its netns (it was adopted); close() after it is a no-op.
    await sb?.stop();
    await lan?.close();
    // Nothing of the LANs outlives the sandbox.
    const left = await fs.readdir('/run/netns').catch(() => [] as string[]);
    for (const ns of lanNetnsSeen) expect(left).not.toContain(ns);
    for (const pid of dnsmasqPids) expect(alive(pid)).toBe(false);
  }, 120_000);

  it('(a) a guest on a host bridge over lan0 takes its LAN lease from the LAN dnsmasq and serves the LAN', async () => {
    lan = await newLan({ uplink: 'lan0', bridge: 'br-lan', hosts: [BR_GUEST], sandboxAddress: '198.51.100.2/24' });
    expect(await link('-o', 'link', 'show', 'master', 'br-lan')).toMatch(/\blan0@/);
    expect(await link('-4', '-o', 'addr', 'show', 'dev', 'br-lan')).toContain('198.51.100.2/24');

    await boot(BR_GUEST, bridgeInterfaceXml('br-lan', BR_GUEST.mac), 'bridge guest');
    // libvirt put the guest's tap on br-lan.
    const ports = await link('-o', 'link', 'show', 'master', 'br-lan');
    expect(ports).toMatch(/\bvnet\d+\b/);
    expect((await lan.leases()).join('\n')).toMatch(new RegExp(`${BR_GUEST.mac} ${BR_GUEST.ip.replace(/\./g, '\\.')} `));
    const body = await timed('bridge guest: first GET from the LAN', () => getSoon((ms) => lan!.httpGet(BR_GUEST.ip, 80, ms)));
    expect(body).toContain(`virtwire-guest ${guestLabel(BR_GUEST.name)}`);
    // Unlike macvtap, a host bridge lets the sandbox netns itself (its address on br-lan) reach the guest.
    expect(await getSoon((ms) => hostHttpGet(sb, BR_GUEST.ip, 80, ms))).toContain(`virtwire-guest ${guestLabel(BR_GUEST.name)}`);

    await sb.destroyGuest(BR_GUEST.name);
    const netns = lan.netns;
    const pid = lan.dnsmasqPid;
    await lan.close();
    lan = undefined;
    expect(alive(pid)).toBe(false);
    expect(await fs.readdir('/run/netns')).not.toContain(netns);
    // The bridge went with it; the veth's sandbox end died with the LAN netns.
    expect(await link('-o', 'link', 'show')).not.toMatch(/\b(br-lan|lan0)\b/);
  }, 240_000);

  for (const mode of ['bridge', 'vepa'] as const) {
    it(`(b) a macvtap guest on lan0, mode ${mode}, takes its LAN lease and serves the LAN`, async () => {
      lan ??= await newLan({ uplink: 'lan0', hosts: Object.values(MVT_GUESTS) });
      const g = MVT_GUESTS[mode];
      await boot(g, directInterfaceXml('lan0', mode, g.mac), `macvtap ${mode} guest`);
      // libvirt made a macvtap on lan0 in that mode.
      const details = await link('-d', '-o', 'link', 'show', 'type', 'macvtap');
      expect(details).toMatch(new RegExp(`@lan0\\b.*macvtap\\s+mode ${mode}\\b`));
      // Its /dev/tapN is its own (not another sandbox's macvtap with the same ifindex: see macvtapNodeClashes).
      expect(await macvtapNodeClashes(sb)).toEqual([]);
      expect((await lan.leases()).join('\n')).toContain(`${g.mac} ${g.ip} `);
      const body = await timed(`macvtap ${mode} guest: first GET from the LAN`, () => getSoon((ms) => lan!.httpGet(g.ip, 80, ms)));
      expect(body).toContain(`virtwire-guest ${guestLabel(g.name)}`);
      await sb.destroyGuest(g.name);
    }, 240_000);
  }

  it('(c) the sandbox netns reaches a macvtap (bridge) guest through a macvlan host shim on lan0, and only through it', async () => {
    lan ??= await newLan({ uplink: 'lan0', hosts: Object.values(MVT_GUESTS) });
    const g = MVT_GUESTS.bridge;
    await sb.startGuest(g.name, 90_000);
    const get = (ms = 3000) => hostHttpGet(sb, g.ip, 80, ms);
    // The LAN reaches it (the guest is up and on the wire).
    expect(await getSoon((ms) => lan!.httpGet(g.ip, 80, ms))).toContain(`virtwire-guest ${guestLabel(g.name)}`);

    // 1. No address in the LAN subnet: no route at all.
    const noRoute = await mustFail(() => get());
    console.log(`[lan finding] no address on the sandbox side: ${reason(noRoute)}`);
    expect(noRoute).toMatch(/ENETUNREACH|unreachable/i);

    // 2. The address on lan0 itself (the macvtap's lower device): the LAN answers, the guest does not.
    await link('addr', 'add', SHIM_ADDR, 'dev', 'lan0');
    try {
      // The LAN netns answers (nothing listens on its port 80: a RST) ...
      expect(await mustFail(() => hostHttpGet(sb, lan!.address, 80, 3000))).toMatch(/ECONNREFUSED/);
      // ... the guest on a macvtap of that very device does not.
      const fromLower = await mustFail(() => get(4000));
      console.log(`[lan finding] address on lan0 itself: ${reason(fromLower)}`);
      expect(fromLower).toMatch(/EHOSTUNREACH|timeout/);
    } finally {
      await link('addr', 'del', SHIM_ADDR, 'dev', 'lan0');
      await link('neigh', 'flush', 'dev', 'lan0');
    }

    // 3. A macvlan in bridge mode on lan0 with the address: it answers.
    await lan.addShim('shim0', SHIM_ADDR, 'bridge');
    const body = await timed('host shim: first GET from the sandbox netns', () => getSoon((ms) => get(ms)));
    expect(body).toContain(`virtwire-guest ${guestLabel(g.name)}`);

    // 4. Shim gone: unreachable again.
    await lan.removeShim('shim0');
    expect(await mustFail(() => get())).toMatch(/ENETUNREACH|unreachable/i);
    await sb.destroyGuest(g.name);
  }, 240_000);

  it('(c′) no shim (bridge or vepa mode) reaches a VEPA guest while the LAN peer is a plain veth end (it reflects nothing: no hairpin)', async () => {
    lan ??= await newLan({ uplink: 'lan0', hosts: Object.values(MVT_GUESTS) });
    const g = MVT_GUESTS.vepa;
    await sb.startGuest(g.name, 90_000);
    try {
      expect(await getSoon((ms) => lan!.httpGet(g.ip, 80, ms))).toContain(`virtwire-guest ${guestLabel(g.name)}`);
      for (const mode of ['bridge', 'vepa'] as const) {
        await lan.addShim('shim0', SHIM_ADDR, mode);
        try {
          const why = await mustFail(() => hostHttpGet(sb, g.ip, 80, 4000));
          console.log(`[lan finding] vepa guest from a ${mode}-mode shim, no hairpin: ${reason(why)}`);
          expect(why).toMatch(/EHOSTUNREACH|timeout/);
        } finally {
          await lan.removeShim('shim0');
          await link('neigh', 'flush', 'dev', 'lan0');
        }
      }
    } finally {
      await sb.destroyGuest(g.name);
    }
  }, 240_000);

  it('(c″) with a hairpin LAN (a VEPA-capable switch), a VEPA guest takes its lease and a shim (vepa or bridge mode) reaches it through the LAN', async () => {
    await lan?.close();
    lan = await newLan({ uplink: 'lan0', hosts: Object.values(MVT_GUESTS), hairpin: true });
    const g = MVT_GUESTS.vepa;
    await sb.startGuest(g.name, 90_000);
    try {
      expect(await getSoon((ms) => lan!.httpGet(g.ip, 80, ms))).toContain(`virtwire-guest ${guestLabel(g.name)}`);
      await lan.addShim('shim0', SHIM_ADDR, 'vepa');
      try {
        const body = await timed('vepa shim → vepa guest via the hairpin LAN: first GET', () => getSoon((ms) => hostHttpGet(sb, g.ip, 80, ms)));
        expect(body).toContain(`virtwire-guest ${guestLabel(g.name)}`);
      } finally {
        await lan.removeShim('shim0');
        await link('neigh', 'flush', 'dev', 'lan0');
      }
      // A bridge-mode shim too: what it sends to a MAC that is not a local
      // bridge-mode peer goes out of lan0, and the LAN sends it back.
      await lan.addShim('shim0', SHIM_ADDR, 'bridge');
      try {
        expect(await getSoon((ms) => hostHttpGet(sb, g.ip, 80, ms))).toContain(`virtwire-guest ${guestLabel(g.name)}`);
      } finally {
        await lan.removeShim('shim0');
      }
    } finally {
      await sb.destroyGuest(g.name);
    }
  }, 240_000);
});

// binding isolated end to end (issue 13 c), on libvirt 9 and 11: `virtwire
// apply` defines the network the template names (no <forward>, DHCP) and
// moves the VMs' NICs onto it. Guests on it reach each other and nothing
// beyond: not the client namespace behind the host's uplink, not the host's
// uplink address (the network's DHCP hands out no router, and libvirt forwards
// nothing to or from it; a guest that sets its own route via the host's
// address on the network reaches the host's own sockets, which the host's
// INPUT policy governs: README). With portIsolation they no longer reach
// each other either.
// `virtwire gc` removes the network once no domain uses it, and only that one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { GUEST_FETCH_PREFIX } from '../../src/demo/guest-image.js';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { waitForGuestFetch } from '../support/sandbox-traffic.js';
import { MODES, sandboxWithVirtwire, skipE2e } from './support.js';
import { promises as fs } from 'node:fs';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const NET = 'lab-iso';
const TEMPLATE = (portIsolation: boolean) => `match: {domains: ["lab-*"], networks: [default]}
binding: isolated
isolated: {network: ${NET}, address: 10.99.0.1/24, portIsolation: ${portIsolation}}
`;
const PORT = 8081;
/** Listens on PORT and answers "outside": what an isolated guest must never see. */
const SERVER_JS = `require('http').createServer((q, s) => s.end('outside\\n')).listen(${PORT}, '0.0.0.0')`;

describe.skipIf(skipE2e).each(MODES)('binding isolated — $mode', ({ trixie }) => {
  let sb: Sandbox;
  const listeners: Array<() => Promise<unknown>> = [];
  const A = { name: 'lab-a', mac: '52:54:00:0e:00:0a', ip: '10.99.0.10', fetch: `10.99.0.11:80` };
  const B = { name: 'lab-b', mac: '52:54:00:0e:00:0b', ip: '10.99.0.11' };
  const C = { name: 'lab-c', mac: '52:54:00:0e:00:0c', ip: '10.99.0.12' };

  /** The console's fetch answers since the last boot. */
  const fetched = async (name: string): Promise<string[]> =>
    (await fs.readFile(sb.consoleLog(name), 'utf8').catch(() => '')).split('\n').map((l) => l.trimEnd()).filter((l) => l.startsWith(GUEST_FETCH_PREFIX));

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { lab: TEMPLATE(false) }));
    const node = trixie ? 'node' : process.execPath;
    const host = (await sb.exec(['bash', '-c', `setsid ${node} -e "$1" >/dev/null 2>&1 & echo $!`, 'x', SERVER_JS])).stdout.trim();
    listeners.push(() => sb.exec(['kill', host], { reject: false }));
    const client = (await sb.clientExec(['bash', '-c', `setsid ${process.execPath} -e "$1" >/dev/null 2>&1 & echo $!`, 'x', SERVER_JS])).stdout.trim();
    listeners.push(() => sb.clientExec(['kill', client], { reject: false }));
    // The listeners answer where they are, so their silence below is the network's doing.
    await sleep(500);
    expect((await sb.clientHttpGet(sb.hostAddress, PORT)).trim()).toBe('outside');
    // Guests defined the way virt-manager would, on "default"; B fetches the client namespace, C the host's uplink address.
    await sb.defineGuest({ ...A, reserve: false });
    await sb.defineGuest({ ...B, reserve: false, fetch: `${sb.clientAddress}:${PORT}` });
    await sb.defineGuest({ ...C, reserve: false, fetch: `${sb.hostAddress}:${PORT}` });
  }, 600_000);

  afterAll(async () => {
    for (const stop of listeners) await stop().catch(() => undefined);
    await sb?.stop();
  }, 120_000);

  it('apply defines, starts and autostarts the network (no <forward>), and moves the NICs onto it', async () => {
    const r = await sb.exec(['virtwire', 'apply', A.name, B.name, C.name], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`VM "${A.name}": changed (defined and started network "${NET}"; NIC ${A.mac} attached to isolated network ${NET}; recorded its wiring in the domain <metadata>)`);
    expect(r.stdout).toContain(`VM "${B.name}": changed (NIC ${B.mac} attached to isolated network ${NET}; recorded its wiring in the domain <metadata>)`);
    const net = (await sb.virsh('net-dumpxml', NET)).stdout;
    expect(net).not.toContain('<forward');
    expect((await sb.virsh('net-info', NET)).stdout).toMatch(/Autostart:\s+yes/);
    for (const g of [A, B, C]) {
      expect((await sb.virsh('dumpxml', '--inactive', '--domain', g.name)).stdout).toContain(`<source network='${NET}'/>`);
      await sb.virsh('net-update', NET, 'add', 'ip-dhcp-host', `<host mac='${g.mac}' ip='${g.ip}'/>`, '--live', '--config');
    }
  }, 120_000);

  it('the guests reach each other; nothing beyond the network: neither the client namespace nor the host\'s uplink address', async () => {
    for (const g of [B, C, A]) await sb.startGuest(g.name);
    expect(await waitForGuestFetch(sb, A.name, `virtwire-guest ${guestLabel(B.name)}`)).toContain(B.ip);
    // A try that gets nothing takes nc's 3 s timeout and a 1 s pause: give them a few.
    await sleep(9000);
    for (const g of [B, C]) {
      const lines = await fetched(g.name);
      expect(lines.length, `${g.name} tried`).toBeGreaterThanOrEqual(2);
      expect(lines.filter((l) => !l.endsWith('(no answer)')), `${g.name} reached something beyond the network`).toEqual([]);
    }
  }, 300_000);

  it('portIsolation: after apply and a restart of the VMs, they no longer reach each other', async () => {
    await sb.exec(['tee', '/etc/virtwire/templates/lab.yaml'], { input: TEMPLATE(true) });
    const r = await sb.exec(['virtwire', 'apply', A.name, B.name], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`NIC ${A.mac} attached to isolated network ${NET}, port isolated (from its next start: the running guest keeps its NIC)`);
    expect((await sb.virsh('dumpxml', '--inactive', '--domain', A.name)).stdout).toMatch(/<port isolated='yes'\/>/);
    // Both down first: an isolated port still talks to one that is not (the old B's).
    for (const g of [A, B]) await sb.destroyGuest(g.name);
    for (const g of [B, A]) await sb.startGuest(g.name);
    const live = (await sb.virsh('dumpxml', '--domain', A.name)).stdout;
    expect(live).toMatch(/<port isolated='yes'\/>/);
    const tap = /<target dev='([^']+)'/.exec(live)?.[1] ?? '';
    console.log(`[isolated] ${tap}: ${(await sb.exec(['bridge', '-d', 'link', 'show', 'dev', tap])).stdout}`);
    await sleep(9000);
    const lines = await fetched(A.name);
    expect(lines.length, lines.join('\n')).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => !l.endsWith('(no answer)'))).toEqual([]);
  }, 300_000);

  it('virtwire gc removes the network once no domain names it, and no other network', async () => {
    const other = (await sb.virsh('net-list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()).filter((n) => n && n !== NET);
    let r = await sb.exec(['virtwire', 'gc'], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain(NET); // still used
    for (const g of [A, B, C]) {
      await sb.virsh('destroy', '--domain', g.name);
      await sb.virsh('undefine', '--domain', g.name);
    }
    r = await sb.exec(['virtwire', 'gc'], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`network "${NET}" (defined by virtwire for /etc/virtwire/templates/lab.yaml): removed, no domain uses it`);
    const left = (await sb.virsh('net-list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()).filter(Boolean);
    expect(left.sort()).toEqual(other.sort());
  }, 120_000);
});

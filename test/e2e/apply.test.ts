// Issue 10, define-time wiring end to end, on libvirt 9 (iptables backend)
// and libvirt 11 (nftables backend):
// e2e a: a VM defined with a plain <interface type='network'> and no DHCP
//   reservation: `virtwire plan` shows the reservation and the domain diff
//   and exits 2; `virtwire apply` reserves (live and config) and records its
//   decisions in <metadata> (a Defined event); `virsh start` gets the forward;
//   a second apply is unchanged and defines nothing (no Defined event).
// e2e c: a template edited while the VM runs: apply moves the forward live.
// e2e e: save + restore: the restore filter records this host's wiring.
// e2e f: a domain wired the port-forward release's way keeps working.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { dhcpHostLines, MODES, sandboxWithVirtwire, skipE2e } from './support.js';

const WEB = 'match: {domains: ["web-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const MAC = '52:54:00:e2:0a:01';
// The sandbox's default network is libvirt's stock one: 192.168.122.1/24 with the
// range .2-.254, so nothing lies outside the range and the first free address inside
// it is the allocator's pick (a fresh sandbox has no leases).
const WEB1 = { name: 'web-1', mac: MAC, ip: '192.168.122.2', reserve: false };
const LEASE = 'match: {domains: ["lease-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8081, guest: 80}\n';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const HOST_LINE = `<host mac='${MAC}' ip='192.168.122.2'/>`;

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;

  const virtwire = (...args: string[]) => sb.exec(['virtwire', ...args], { reject: false });
  /** libvirt's domain lifecycle events over the next few seconds, as `virsh event` prints them. */
  const lifecycleEvents = async (): Promise<string> => {
    const r = await sb.exec(['virsh', '-c', 'qemu:///system', 'event', '--loop', '--event', 'lifecycle', '--timeout', '6'], { env: { LC_ALL: 'C' }, timeoutMs: 30_000, reject: false });
    return `${r.stdout}${r.stderr}`;
  };
  const hostEntries = (...flags: string[]) => dhcpHostLines(sb, ...flags);

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web: WEB }));
    await sb.defineGuest(WEB1);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('e2e a: plan shows the reservation and exits 2; apply reserves (live and config); virsh start forwards; apply again is unchanged, plan exits 0', async () => {
    expect(await hostEntries()).toEqual([]);

    const plan = await virtwire('plan', 'web-1');
    expect(plan.stderr).toBe('');
    expect(plan.exitCode).toBe(2);
    expect(plan.stdout).toContain('VM "web-1": would change\n');
    expect(plan.stdout).toContain('--- network "default"\n+++ network "default" (after apply)\n');
    expect(plan.stdout).toContain(`\n+      ${HOST_LINE}\n`);
    expect(plan.stdout.split('\n')).toContain('  forward at start: tcp *:8080 -> 192.168.122.2:80');
    expect(await hostEntries(), 'plan changes nothing').toEqual([]);

    expect(plan.stdout).toContain(`--- domain "web-1"\n+++ domain "web-1" (after apply)\n`);
    expect(plan.stdout).toMatch(new RegExp(`\\n\\+ {8}<virtwire:nic mac=(['"])${MAC}\\1 template=\\1web\\1 binding=\\1nat\\1 version=\\1\\d+\\1 network=\\1default\\1>\\n`));

    // The first apply defines (a Defined event: the check below can see one).
    const events1 = lifecycleEvents();
    await sleep(1000);
    const apply = await virtwire('apply', 'web-1');
    expect(apply).toMatchObject({ exitCode: 0, stderr: '' });
    expect(apply.stdout.trim()).toBe('VM "web-1": changed (reserved 192.168.122.2 for NIC 52:54:00:e2:0a:01 on network "default"; recorded its wiring in the domain <metadata>)');
    expect(await events1).toContain("event 'lifecycle' for domain 'web-1': Defined Updated");
    expect(await hostEntries()).toEqual([HOST_LINE]);
    expect(await hostEntries('--inactive')).toEqual([HOST_LINE]);
    // Visible in virsh dumpxml, as virt-manager's XML tab shows it.
    const dumped = (await sb.virsh('dumpxml', '--domain', 'web-1', '--inactive')).stdout;
    expect(dumped).toContain(`<virtwire:nic mac="${MAC}" template="web" binding="nat" version="1" network="default">`);
    expect(dumped).toContain('<virtwire:forward proto="tcp" host="8080" to="192.168.122.2" guest="80"/>');

    await sb.startGuest(WEB1.name); // waits for the guest's READY line with ip=192.168.122.2
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);

    const events2 = lifecycleEvents();
    await sleep(1000);
    const again = await virtwire('apply', 'web-1');
    expect(again.exitCode).toBe(0);
    expect(again.stdout.trim()).toBe('VM "web-1": unchanged');
    expect(await events2, 'a second apply defines nothing').not.toContain('Defined');
    const plan2 = await virtwire('plan', '--all');
    expect(plan2.exitCode, plan2.stdout).toBe(0);
    expect(plan2.stdout.split('\n')).toContain('VM "web-1": unchanged');
    expect(await hostEntries()).toEqual([HOST_LINE]);
  }, 300_000);

  it('apply goes on past a VM that does not exist and exits 1, naming it', async () => {
    const r = await virtwire('apply', 'no-such-vm', 'web-1');
    expect(r.exitCode).toBe(1);
    expect(r.stdout.trim()).toBe('VM "no-such-vm": error: no domain named "no-such-vm" in libvirt; check "virsh list --all"\nVM "web-1": unchanged');
  }, 60_000);

  it('e2e a, a NIC that already leases an address: apply reserves that very address, and the forward reaches it after a restart', async () => {
    const mac = '52:54:00:e2:0a:02';
    // ip is only what guestReady would wait for; this test never calls it (the lease is dnsmasq's pick).
    await sb.defineGuest({ name: 'lease-1', mac, ip: '192.168.122.254', reserve: false });
    await sb.virsh('start', '--domain', 'lease-1'); // no template matches it yet: a plain DHCP client
    let leased: string | undefined;
    for (const deadline = Date.now() + 90_000; !leased && Date.now() < deadline; await sleep(500)) {
      const line = (await sb.virsh('net-dhcp-leases', '--network', 'default')).stdout.split('\n').find((l) => l.includes(mac));
      leased = /ipv4\s+([0-9.]+)\//.exec(line ?? '')?.[1];
    }
    expect(leased, 'the guest took a DHCP lease').toMatch(/^192\.168\.122\.\d+$/);
    // Not web-1's reservation, nor .3, the first free address apply would pick for a NIC without a lease
    // (dnsmasq picks from a hash of the MAC: this holds for this MAC on every run).
    expect(['192.168.122.2', '192.168.122.3']).not.toContain(leased);

    await sb.exec(['tee', '/etc/virtwire/templates/lease.yaml'], { input: LEASE });
    const apply = await virtwire('apply', 'lease-1');
    expect(apply.stdout.trim()).toBe(`VM "lease-1": changed (reserved ${leased} for NIC ${mac} on network "default"; forwards moved live: +tcp *:8081 -> ${leased}:80; recorded its wiring in the domain <metadata>)`);
    expect(apply.exitCode).toBe(0);
    expect(await hostEntries('--inactive')).toContain(`<host mac='${mac}' ip='${leased}'/>`);
    // Running already: its forward works at once, with no restart.
    expect((await sb.clientHttpGet(sb.hostAddress, 8081)).trim()).toBe(`virtwire-guest ${guestLabel('lease-1')}`);

    await sb.virsh('destroy', '--domain', 'lease-1');
    await sb.virsh('start', '--domain', 'lease-1');
    let answer = '';
    for (const deadline = Date.now() + 90_000; !answer && Date.now() < deadline;) {
      answer = await sb.clientHttpGet(sb.hostAddress, 8081, 2000).catch(async () => { await sleep(500); return ''; });
    }
    expect(answer.trim()).toBe(`virtwire-guest ${guestLabel('lease-1')}`);
    const rows = JSON.parse((await virtwire('forwards', '--json')).stdout) as Array<Record<string, string>>;
    expect(rows.filter((r) => r.vm === 'lease-1').map((r) => r.guest)).toEqual([`${leased}:80`]);
    await sb.virsh('destroy', '--domain', 'lease-1');
  }, 300_000);

  it('e2e c: a template edited while its VM runs — apply moves the forward live: the new port answers, the old one stops, the VM keeps running', async () => {
    const pid = async () => (await sb.exec(['cat', '/run/libvirt/qemu/web-1.pid'])).stdout.trim();
    if ((await sb.virsh('domstate', '--domain', 'web-1')).stdout.trim() !== 'running') await sb.startGuest('web-1');
    const before = await pid();
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 8082') });
    const plan = await virtwire('plan', 'web-1');
    expect(plan.exitCode, plan.stdout).toBe(2);
    expect(plan.stdout).toContain('-          <virtwire:forward proto="tcp" host="8080" to="192.168.122.2" guest="80"/>\n');
    expect(plan.stdout).toContain('+          <virtwire:forward proto="tcp" host="8082" to="192.168.122.2" guest="80"/>\n');

    const apply = await virtwire('apply', 'web-1');
    expect(apply.stdout.trim()).toBe('VM "web-1": changed (forwards moved live: +tcp *:8082 -> 192.168.122.2:80, -tcp *:8080 -> 192.168.122.2:80; recorded its wiring in the domain <metadata>)');
    expect((await sb.clientHttpGet(sb.hostAddress, 8082)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    await expect(sb.clientHttpGet(sb.hostAddress, 8080, 2000)).rejects.toThrow();
    expect(await pid(), 'the same QEMU process: the VM was never restarted').toBe(before);
    expect((await virtwire('apply', 'web-1')).stdout.trim()).toBe('VM "web-1": unchanged');
  }, 300_000);

  it('e2e e: virsh save + restore of a wired guest — the restore filter records this host\'s wiring in the restored XML, and the forward works after restore', async () => {
    // web-1 runs, applied with 8082 (e2e c). The template changes on disk, and nobody runs apply.
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 8084') });
    const image = join(sb.dir, 'web-1.save');
    await sb.virsh('save', '--domain', 'web-1', '--file', image);
    expect((await sb.virsh('domstate', '--domain', 'web-1')).stdout.trim()).toBe('shut off');
    await sb.virsh('restore', '--file', image);
    expect((await sb.virsh('domstate', '--domain', 'web-1')).stdout.trim()).toBe('running');
    // The restored guest is the same boot (its memory came back): ask its web server, on the template's new port.
    let answer = '';
    for (const deadline = Date.now() + 60_000; !answer && Date.now() < deadline;) {
      answer = await sb.clientHttpGet(sb.hostAddress, 8084, 2000).catch(async () => { await sleep(500); return ''; });
    }
    expect(answer.trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    // The filter wrote this host's decisions into the XML libvirt restored from (the live XML).
    const live = (await sb.virsh('dumpxml', '--domain', 'web-1')).stdout;
    expect(live).toContain('<virtwire:forward proto="tcp" host="8084" to="192.168.122.2" guest="80"/>');
    expect(live).not.toContain('host="8082"');
    const log = (await sb.exec(['cat', '/var/log/virtwire.log'])).stdout;
    expect(log).toContain(`VM "web-1" restore: recorded this host's wiring in the incoming XML`);
    await sb.exec(['rm', '-f', image]);
  }, 300_000);

  it('e2e f: a domain wired the port-forward release\'s way (a hand-made reservation, no virtwire metadata) keeps working with no command', async () => {
    await sb.exec(['tee', '/etc/virtwire/templates/old.yaml'], { input: 'match: {domains: ["old-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8083, guest: 80}\n' });
    const old = { name: 'old-1', mac: '52:54:00:e2:0a:03', ip: '192.168.122.40' }; // reserve: true — by hand, as before apply existed
    await sb.defineGuest(old);
    expect((await sb.virsh('dumpxml', '--domain', 'old-1', '--inactive')).stdout).not.toContain('https://virtwire.dev/xmlns/');
    await sb.startGuest('old-1');
    expect((await sb.clientHttpGet(sb.hostAddress, 8083)).trim()).toBe(`virtwire-guest ${guestLabel('old-1')}`);
    const log = (await sb.exec(['cat', '/var/log/virtwire.log'])).stdout.split('\n').filter((l) => l.includes('"old-1"'));
    expect(log.some((l) => l.includes('prepare: applied 1 forward(s)')), log.join('\n')).toBe(true);
    expect(log.filter((l) => / (warning|error): /.test(l))).toEqual([]);
    await sb.virsh('destroy', '--domain', 'old-1');
  }, 300_000);
});

// Issue 11, the virt-manager path, with `virtwire watch` running inside the
// sandbox and no virtwire command typed — on libvirt 9 (iptables backend)
// and libvirt 11 (nftables backend):
// a: a domain defined the way virt-manager defines one (a plain network NIC,
//    no virtwire metadata) gets its reservation and its record; `virsh start`
//    gets the forward;
// b: define-and-start-at-once with the real virt-install: the forward answers
//    within seconds, no restart, the guest keeps its first address;
// c: a template edited while the VM runs moves the forward live; a broken
//    edit is logged with its file:line:column and changes nothing;
// d: undefine gives back the reservation;
// e: libvirtd restarted under the watcher: it reconnects and wires a VM
//    defined afterwards; a VM defined while the watcher was away is wired
//    when it comes back;
// f: a VM whose name has quotes, $(…), U+2028 and non-ASCII is wired like
//    any other;
// and no drift: the watcher and concurrent applies on one VM converge.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { GUEST_READY_PREFIX } from '../../src/demo/guest-image.js';
import { dhcpHostLines, MODES, restartLibvirtd, sandboxWithVirtwire, skipE2e, virtInstallArgv, virtInstallEnv } from './support.js';

const WEB = 'match: {domains: ["vm-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
// The stock default network, fresh: the allocator's first free address is .2.
const VM1 = { name: 'vm-1', mac: '52:54:00:e2:11:01', ip: '192.168.122.2', reserve: false };
const VI = 'match: {domains: ["vi-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8085, guest: 80}\n';
const PIDFILE = '/run/virtwire-watch-test.pid';
// ip in a GuestSpec is only what startGuest would wait for; e and f never call it (the address is the watcher's pick).
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;

  const hostEntries = (...flags: string[]) => dhcpHostLines(sb, ...flags);
  const log = async () => (await sb.exec(['cat', '/var/log/virtwire.log'], { reject: false })).stdout;
  /** Polls `probe` until it gives a truthy value (what the watcher does takes a moment), or fails naming `what`. */
  async function soon<T>(what: string, probe: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) {
        const ps = (await sb.exec(['ps', '-eo', 'pid,args'], { reject: false })).stdout;
        throw new Error(`not within ${timeoutMs / 1000} s: ${what}\n--- virtwire.log ---\n${await log()}\n--- processes ---\n${ps}`);
      }
      await sleep(300);
    }
  }
  const answers = async (port: number) => (await sb.clientHttpGet(sb.hostAddress, port, 2000).catch(() => '')).trim();

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web: WEB, vi: VI }));
    // As a service manager would run it: detached, in the background, its pid kept.
    await startWatcher();
    await soon('the watcher is connected', async () => (JSON.parse((await sb.exec(['cat', '/run/virtwire/watch.json'])).stdout) as { connected: boolean }).connected);
  }, 600_000);

  afterAll(async () => {
    await sb?.exec(['start-stop-daemon', '--stop', '--pidfile', PIDFILE, '--retry', '10'], { reject: false });
    await sb?.stop();
  }, 120_000);

  it('a: a domain defined like virt-manager does gets its reservation and record with no command; virsh start gets the forward', async () => {
    await sb.defineGuest(VM1);
    await soon('the reservation', async () => (await hostEntries()).includes(`<host mac='${VM1.mac}' ip='${VM1.ip}'/>`));
    await soon('the record in <metadata>', async () => (await sb.virsh('dumpxml', '--domain', VM1.name, '--inactive')).stdout.includes('<virtwire:forward proto="tcp" host="8080"'));
    await sb.startGuest(VM1.name);
    expect(await soon('the forward', () => answers(8080))).toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
    expect((await sb.exec(['virtwire', 'status', VM1.name], { reject: false })).stdout).toMatch(/\nwatcher: running \(pid \d+, connected to libvirt\), last full reconcile 20\d\d-/);
    expect(await log()).toMatch(/watch\[\d+\] info: VM "vm-1": changed \(reserved 192\.168\.122\.2 for NIC 52:54:00:e2:11:01 on network "default"; recorded its wiring in the domain <metadata>\)/);
  }, 300_000);

  it('b: define-and-start-at-once with the real virt-install: the forward answers within seconds, with no restart, and the guest keeps its first address', async () => {
    const name = 'vi-1';
    const serialLog = join(sb.dir, `${name}.log`);
    const r = await sb.exec(virtInstallArgv(name, await sb.guestImage(), serialLog), { env: virtInstallEnv(sb), timeoutMs: 120_000 });
    expect(r.stdout).toContain('Domain creation completed');
    const pid = async () => (await sb.exec(['cat', `/run/libvirt/qemu/${name}.pid`])).stdout.trim();
    const firstPid = await pid();
    const started = Date.now();
    expect(await soon('the forward', () => answers(8085), 60_000)).toBe(`virtwire-guest ${name}`);
    const seconds = (Date.now() - started) / 1000;
    expect(await pid(), 'the same QEMU process: never restarted').toBe(firstPid);
    // The address the guest took first (its console says so once, at boot) is the one reserved for it.
    const ready = new RegExp(`${GUEST_READY_PREFIX} name=${name} ip=(\\S*)\\r?\\n`, 'g');
    const boots = [...(await fs.readFile(serialLog, 'latin1')).matchAll(ready)].map((m) => m[1]);
    expect(boots).toHaveLength(1);
    const mac = (await sb.virsh('domiflist', '--domain', name)).stdout.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[2] === 'default')?.[4];
    expect(await hostEntries()).toContain(`<host mac='${mac}' ip='${boots[0]}'/>`);
    console.log(`[e2e timing] ${trixie ? 'libvirt 11' : 'libvirt 9'}: virt-install → forward answering in ${seconds.toFixed(1)} s`);
    await sb.virsh('destroy', '--domain', name);
  }, 300_000);

  it('c: a template edited while the VM runs moves the forward live; a broken edit is logged at its position and changes nothing', async () => {
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 8090') });
    expect(await soon('the forward on the new port', () => answers(8090))).toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
    expect(await answers(8080), 'the old port is closed').toBe('');

    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 80x0') });
    await soon('the broken edit logged with its position', async () => /\/etc\/virtwire\/templates\/web\.yaml:4:\d+: .*host/.test(await log()));
    expect(await log()).toContain('keeping the last good templates');
    expect(await answers(8090), 'the running VM keeps its forward').toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
    // Fixed again: back to work.
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 8091') });
    expect(await soon('the forward after the fix', () => answers(8091))).toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
  }, 300_000);

  it('c2: libvirtd reloaded (SIGHUP) under a running VM: its forward answers on, with no command', async () => {
    expect(await answers(8091)).toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
    const said = (await log()).length;
    await sb.exec(['sh', '-c', 'kill -HUP "$(cat /run/libvirtd.pid)"']);
    if (trixie) {
      // libvirt 11 rebuilds its nftables rules on a reload, ahead of virtwire's accept, and runs no network
      // hook: the forward is rejected until the watcher, told by nft monitor, puts the accept first again.
      await soon('the watcher put the accept back first', async () => (await log()).slice(said).includes('libvirt\'s firewall rules changed: accept placed first in nft ip libvirt_network guest_input'));
      // libvirt may rewrite the chain in more than one burst: each one is mended, the last one too.
      const firstRule = async () => (await sb.exec(['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input'])).stdout.split('\n').find((l) => l.startsWith('\t\t')) ?? '';
      await soon('virtwire\'s accept first again', async () => (await firstRule()).includes('comment "virtwire:mark='));
    } else {
      // libvirt 9 (iptables) leaves FORWARD's order as it was: nothing to mend.
      await sleep(2000);
    }
    expect(await soon('the forward after the reload', () => answers(8091))).toBe(`virtwire-guest ${guestLabel(VM1.name)}`);
  }, 300_000);

  it('d: undefine gives back the reservation, with no command', async () => {
    await sb.virsh('destroy', '--domain', VM1.name);
    await sb.virsh('undefine', '--domain', VM1.name);
    await soon('the reservation released', async () => !(await hostEntries()).some((l) => l.includes(VM1.mac)));
    // The watcher logs the release after libvirt's net-update returns and the allocation store is
    // written: a reader that sees the entry gone may still be a moment ahead of that line.
    await soon('the release logged', async () => (await log()).includes(`VM "vm-1" (`));
  }, 300_000);

  /** The address the reservation for `mac` holds, once there is one. */
  const reservedFor = (mac: string) => soon(`a reservation for ${mac}`, async () => (await hostEntries()).find((l) => l.includes(mac))?.match(/ip='([^']+)'/)?.[1]);
  const startWatcher = () => sb.exec(['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', PIDFILE, '--exec', '/usr/local/bin/virtwire', '--', 'watch']);

  it('e: libvirtd restarted under the watcher — it reconnects, and wires a VM defined afterwards; a VM defined while it was away is wired when it is back', async () => {
    const state = async () => JSON.parse((await sb.exec(['cat', '/run/virtwire/watch.json'])).stdout) as { connected: boolean; lastReconcile?: string };
    const before = (await state()).lastReconcile;
    await restartLibvirtd(sb);
    await soon('the watcher saw the daemon go', async () => (await log()).includes('lost libvirt: '));
    await soon('connected again, after a full reconcile', async () => { const s = await state(); return s.connected && s.lastReconcile !== before; });
    await sb.defineGuest({ name: 'vm-2', mac: '52:54:00:e2:11:02', ip: '192.168.122.250', reserve: false });
    await reservedFor('52:54:00:e2:11:02');

    // Away: stopped (as systemd would on an upgrade); a VM is defined; back: its start-up sync wires it.
    await sb.exec(['start-stop-daemon', '--stop', '--pidfile', PIDFILE, '--retry', '10']);
    await sb.defineGuest({ name: 'vm-3', mac: '52:54:00:e2:11:03', ip: '192.168.122.250', reserve: false });
    await sleep(2000);
    expect((await hostEntries()).some((l) => l.includes('52:54:00:e2:11:03')), 'nobody wires it while the watcher is away').toBe(false);
    await startWatcher();
    await reservedFor('52:54:00:e2:11:03');
  }, 300_000);

  it('f: a VM whose name has quotes, $(…), U+2028 and non-ASCII is wired like any other', async () => {
    const name = `vm-"q" '$(touch vw-pwned)'\u2028ünï`;
    const mac = '52:54:00:e2:11:04';
    await sb.defineGuest({ name, mac, ip: '192.168.122.250', reserve: false });
    await reservedFor(mac);
    // The port web.yaml gives now (c changed it), as the record says.
    const port = Number(await soon('the record', async () => /<virtwire:forward proto="tcp" host="(\d+)"/.exec((await sb.virsh('dumpxml', '--domain', name, '--inactive')).stdout)?.[1]));
    await sb.virsh('start', '--domain', name);
    expect(await soon('the forward', () => answers(port), 60_000)).toBe(`virtwire-guest ${guestLabel(name)}`);
    const where = ['/vw-pwned', '/root/vw-pwned', '/var/lib/libvirt/vw-pwned', '/run/virtwire/vw-pwned', '/tmp/vw-pwned'];
    expect((await sb.exec(['ls', ...where], { reject: false })).stdout, 'nothing ran the name').toBe('');
    expect(await log()).toContain(`VM ${JSON.stringify(name).replace('\u2028', '\\u2028')}: changed`);
    await sb.virsh('destroy', '--domain', name);
  }, 300_000);

  it('no drift: the watcher and three `virtwire apply` acting on one new VM at once serialize and converge — one reservation, one record, every run ok', async () => {
    const mac = '52:54:00:e2:11:05';
    await sb.defineGuest({ name: 'vm-5', mac, ip: '192.168.122.250', reserve: false });
    const runs = await Promise.all([1, 2, 3].map(() => sb.exec(['virtwire', 'apply', 'vm-5'], { reject: false })));
    expect(runs.map((r) => r.exitCode), runs.map((r) => r.stdout + r.stderr).join('\n')).toEqual([0, 0, 0]);
    const ip = await reservedFor(mac);
    await soon('the watcher has caught up', async () => (await sb.exec(['virtwire', 'plan', 'vm-5'], { reject: false })).exitCode === 0);
    expect((await hostEntries()).filter((l) => l.includes(mac))).toEqual([`<host mac='${mac}' ip='${ip}'/>`]);
    const xml = (await sb.virsh('dumpxml', '--domain', 'vm-5', '--inactive')).stdout;
    expect(xml.match(/<virtwire:applied>/g)).toHaveLength(1);
    expect(xml).toContain(`<virtwire:nic mac="${mac}" template="web"`);
  }, 300_000);
});

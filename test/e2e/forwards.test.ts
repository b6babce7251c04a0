// Issue 3's proof: port forwards to NAT guests on a plain `virsh start`,
// against a real libvirtd in a sandbox (src/demo/), with virtwire
// installed there by its own install.sh, a booted tiny guest serving HTTP on
// 80 and UDP on 5353, and traffic from a client namespace — on Debian 12's
// libvirt 9 (iptables backend) and on libvirt 11 in a Debian 13 root
// (nftables backend, that root's own Node 20).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Sandbox } from '../../src/demo/sandbox.js';
import { hostHttpGet, waitForGuestFetch } from '../support/sandbox-traffic.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { restartLibvirtd as restartDaemon, virtwireLeftovers, MODES, skipE2e, sandboxWithVirtwire } from './support.js';


const WEB = 'match: {domains: ["web-*"], networks: [default]}\npriority: 50\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80, description: web}\n  - {proto: udp, host: 5353}\n';
const ODD = 'match: {domains: ["odd *"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n';
const WEB1 = { name: 'web-1', mac: '52:54:00:e2:00:10', ip: '192.168.122.10' };


describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  const label = guestLabel(WEB1.name);

  const httpFromClient = (port = 8080) => sb.clientHttpGet(sb.hostAddress, port);
  /**
   * After a daemon restart libvirt re-creates its rules first and runs the
   * qemu reconnect hook (which re-asserts virtwire's accept) a moment later:
   * retry for up to 15 s, never longer.
   */
  async function httpFromClientSoon(): Promise<string> {
    let last: unknown;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline;) {
      try {
        return await sb.clientHttpGet(sb.hostAddress, 8080, 2000);
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    throw last;
  }
  const virtwire = async (...args: string[]) => (await sb.exec(['virtwire', ...args])).stdout;
  const nftTable = async () => sb.exec(['nft', 'list', 'table', 'inet', 'virtwire'], { reject: false });
  const writeTemplate = (name: string, yaml: string) => sb.exec(['tee', `/etc/virtwire/templates/${name}.yaml`], { input: yaml });

  /** The accept must be first in libvirt's own chain for this backend. */
  async function acceptIsFirst(): Promise<boolean> {
    if (trixie) {
      const chain = (await sb.exec(['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input'])).stdout;
      const rules = chain.split('\n').map((l) => l.trim()).filter((l) => /accept|reject/.test(l));
      return rules[0]?.includes('virtwire') === true;
    }
    const rules = (await sb.exec(['iptables', '-w', '-S', 'FORWARD'])).stdout.split('\n').filter((l) => l.startsWith('-A'));
    return rules[0]?.includes('virtwire') === true;
  }

  const reconnects = async () => ((await sb.exec(['cat', '/var/log/virtwire.log'], { reject: false })).stdout.match(/"web-1" reconnect: re-asserted/g) ?? []).length;

  /** Restarts libvirtd under the running guest and waits until virtwire's reconnect hook has run. */
  async function restartLibvirtd(): Promise<void> {
    const before = await reconnects();
    await restartDaemon(sb);
    // Back once it has reconnected to the running guest.
    for (let i = 0; i < 100; i++) {
      const st = await sb.virsh('domstate', WEB1.name).catch(() => undefined);
      if (st?.stdout.trim() === 'running' && (await reconnects()) > before) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`libvirtd did not come back with ${WEB1.name} running and reconnected by virtwire`);
  }

  beforeAll(async () => {
    let installOutput: string;
    ({ sb, installOutput } = await sandboxWithVirtwire(trixie, { web: WEB }));
    expect(installOutput).toMatch(/sent SIGHUP to libvirtd/);
    await sb.bootGuest(WEB1);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('a: the guest answers at host:8080 (tcp) and host:5353 (udp), from a client namespace and from the host itself', async () => {
    expect((await httpFromClient()).trim()).toBe(`virtwire-guest ${label}`);
    expect((await sb.clientUdp(sb.hostAddress, 5353, 'ping')).trim()).toBe(`udp-pong ${label}`);
    expect((await hostHttpGet(sb, sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${label}`);
    expect(await acceptIsFirst()).toBe(true);
    const rows = JSON.parse(await virtwire('forwards', '--json')) as Array<Record<string, string>>;
    expect(rows.map((r) => `${r.vm} ${r.state} ${r.proto} ${r.hostPort} ${r.guest}`)).toEqual([
      'web-1 applied tcp 8080 192.168.122.10:80',
      'web-1 applied udp 5353 192.168.122.10:5353',
    ]);
  }, 120_000);

  it('a: … and from a second guest on the same network (hairpin through the host\'s address)', async () => {
    // client-1 matches no template; it GETs host:8080 every second from inside the NAT network.
    await sb.bootGuest({ name: 'client-1', mac: '52:54:00:e2:00:20', ip: '192.168.122.20', fetch: `${sb.hostAddress}:8080` });
    expect(await waitForGuestFetch(sb, 'client-1', `virtwire-guest ${label}`)).toContain(`${sb.hostAddress}:8080 virtwire-guest ${label}`);
    await sb.destroyGuest('client-1');
  }, 180_000);

  it('b: virsh destroy leaves nothing of the VM in nft or the ledger (the shim\'s teardown, no Node); virtwire\'s emptied table and accept go with reconcile; virsh start brings it back', async () => {
    await sb.destroyGuest(WEB1.name);
    // The qemu shim deleted the VM's elements: the table stays, empty, with virtwire's accept in libvirt's chains.
    const maps = (await sb.exec(['nft', 'list', 'table', 'inet', 'virtwire'])).stdout;
    expect(maps).toContain('map fwd4');
    expect(maps).not.toContain('elements');
    expect(JSON.parse(await virtwire('forwards', '--json'))).toEqual([]);
    expect((await sb.exec(['ls', '/run/virtwire/vms', '/run/virtwire/teardown'])).stdout.trim()).toBe('/run/virtwire/teardown:\n\n/run/virtwire/vms:');
    expect(await virtwire('reconcile')).toContain('nft table inet virtwire removed');
    expect((await nftTable()).exitCode).not.toBe(0);
    expect(await virtwireLeftovers(sb)).toEqual([]);
    await expect(httpFromClient()).rejects.toThrow();
    await sb.startGuest(WEB1.name);
    expect((await httpFromClient()).trim()).toBe(`virtwire-guest ${label}`);
  }, 180_000);

  it('c: a libvirtd restart under the running VM keeps the VM and the forward', async () => {
    const before = (await sb.virsh('domid', WEB1.name)).stdout.trim();
    await restartLibvirtd();
    expect((await sb.virsh('domstate', WEB1.name)).stdout.trim()).toBe('running');
    expect((await sb.virsh('domid', WEB1.name)).stdout.trim()).toBe(before);
    expect((await httpFromClientSoon()).trim()).toBe(`virtwire-guest ${label}`);
    expect(await acceptIsFirst()).toBe(true);
    expect((await sb.exec(['cat', '/var/log/virtwire.log'])).stdout).toMatch(/reconnect: re-asserted/);
  }, 180_000);

  it('d: after a network restart the forward comes back with no virtwire command; `virtwire reconcile` restores a deleted table', async () => {
    await sb.virsh('net-destroy', 'default');
    await sb.virsh('net-start', 'default');
    // The guest's tap left the bridge with the network; a daemon restart re-plugs it.
    await restartLibvirtd();
    expect((await httpFromClientSoon()).trim()).toBe(`virtwire-guest ${label}`);
    expect(await acceptIsFirst()).toBe(true);
    await sb.exec(['nft', 'delete', 'table', 'inet', 'virtwire']);
    await expect(httpFromClient()).rejects.toThrow();
    expect(await virtwire('reconcile')).toContain('nft table inet virtwire: 2 forward(s)');
    expect((await httpFromClient()).trim()).toBe(`virtwire-guest ${label}`);
  }, 180_000);

  it('e: a second VM claiming the same host port is refused with one clear line; the first keeps its forward', async () => {
    const web2 = { name: 'web-2', mac: '52:54:00:e2:00:11', ip: '192.168.122.11' };
    const err = await sb.bootGuest(web2).then(() => undefined, (e: Error) => e.message);
    expect(err).toBeDefined();
    expect(err).toContain('virtwire: VM "web-2": tcp port 8080 on every host IPv4 address is already forwarded to running VM "web-1" (/etc/virtwire/templates/web.yaml:5:5); use another host port or stop "web-1"');
    expect((await sb.virsh('domstate', 'web-2')).stdout.trim()).toBe('shut off');
    expect((await httpFromClient()).trim()).toBe(`virtwire-guest ${label}`);
    expect(JSON.parse(await virtwire('forwards', '--json'))).toHaveLength(2);
  }, 180_000);

  it('f: a VM named with spaces, quotes and non-ASCII gets its forward; nothing is injected; `virtwire forwards` shows the name intact', async () => {
    const name = `odd "q" it's ü 1; $(touch .pwned) \`id\``;
    await writeTemplate('odd', ODD);
    await sb.bootGuest({ name, mac: '52:54:00:e2:00:12', ip: '192.168.122.12' });
    expect((await httpFromClient(9090)).trim()).toBe(`virtwire-guest ${guestLabel(name)}`);
    const rows = JSON.parse(await virtwire('forwards', '--json')) as Array<Record<string, string>>;
    expect(rows.filter((r) => r.vm === name).map((r) => r.hostPort)).toEqual(['9090']);
    expect(await virtwire('forwards')).toContain(JSON.stringify(name));
    // Hooks run with cwd /: an injected `touch .pwned` would leave /.pwned.
    expect((await sb.exec(['ls', '/.pwned'], { reject: false })).exitCode).not.toBe(0);
    await sb.destroyGuest(name);
    expect(JSON.parse(await virtwire('forwards', '--json'))).toHaveLength(2);
  }, 180_000);

  it('g: `virsh save` drops the forward with the VM; `virsh restore` (prepare + start run again) brings it back', async () => {
    const image = join(sb.dir, 'web-1.save');
    await sb.virsh('save', '--domain', WEB1.name, '--file', image);
    expect((await sb.virsh('domstate', WEB1.name)).stdout.trim()).toBe('shut off');
    expect(JSON.parse(await virtwire('forwards', '--json')).map((r: { vm: string }) => r.vm)).not.toContain(WEB1.name);
    await expect(httpFromClient()).rejects.toThrow();
    await sb.virsh('restore', '--file', image);
    expect((await sb.virsh('domstate', WEB1.name)).stdout.trim()).toBe('running');
    // The restored guest is the same boot (its memory came back), so no READY line: ask its web server.
    expect((await httpFromClientSoon()).trim()).toBe(`virtwire-guest ${label}`);
    await sb.exec(['rm', '-f', image]);
  }, 180_000);

  it('install.sh --uninstall removes every forward, the hooks and the command, keeps /etc/virtwire and the running VM', async () => {
    const out = await sb.exec(['bash', join(sb.repoDirInside, 'install.sh'), '--uninstall']);
    expect(out.stdout).toContain('uninstalled');
    expect((await nftTable()).exitCode).not.toBe(0);
    expect(await virtwireLeftovers(sb)).toEqual([]);
    for (const f of ['/etc/libvirt/hooks/qemu.d/virtwire', '/etc/libvirt/hooks/network.d/virtwire', '/usr/local/bin/virtwire', '/usr/local/lib/virtwire', '/run/virtwire']) {
      expect((await sb.exec(['test', '-e', f], { reject: false })).exitCode, f).not.toBe(0);
    }
    expect((await sb.exec(['test', '-f', '/etc/virtwire/templates/web.yaml'], { reject: false })).exitCode).toBe(0);
    expect((await sb.virsh('domstate', WEB1.name)).stdout.trim()).toBe('running');
    await expect(httpFromClient()).rejects.toThrow();
    // A stop after the uninstall runs no virtwire hook and fails nothing.
    await sb.destroyGuest(WEB1.name);
  }, 120_000);
});

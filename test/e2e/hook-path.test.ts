// Issue 12's fast paths, proven on a real libvirtd (not timed: bench/ times
// them): one Node run per VM start, none per destroy, none for a VM virtwire
// holds nothing for — and the shim's teardown removes exactly what the VM's
// start added; with the watcher running, no Node run per start either. Node is counted by rendering the installed shims (as
// install.sh does) with a Node that logs each run before exec'ing the real one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, skipE2e, sandboxWithVirtwire, restartLibvirtd } from './support.js';
import { Sandbox, type GuestSpec } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';

const WEB = 'match: {domains: ["web-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n  - {proto: udp, host: 5353}\n';
const DB = 'match: {domains: ["db-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 5432}\n';
const WEB1: GuestSpec = { name: 'web-1', mac: '52:54:00:e8:00:10', ip: '192.168.122.10' };
const DB1: GuestSpec = { name: 'db-1', mac: '52:54:00:e8:00:11', ip: '192.168.122.11' };
const PLAIN: GuestSpec = { name: 'plain-1', mac: '52:54:00:e8:00:12', ip: '192.168.122.12' };
const DB2: GuestSpec = { name: 'db-2', mac: '52:54:00:e8:00:13', ip: '192.168.122.13' };
const WATCH_PID = '/run/vw-hook-path-watch.pid';
const CALLS = '/run/vw-node-calls';
const COUNTING_NODE = '/usr/local/lib/vw-counting-node';
const SHIM_CALLS = '/run/vw-network-shim-calls';
const NETWORK_HOOK = '/etc/libvirt/hooks/network.d/virtwire';

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  const sh = (script: string, ...args: string[]) => sb.exec(['bash', '-c', script, 'sh', ...args]);
  /** The hook operations Node ran for since the last call ("qemu-hook web-1 prepare", …), then forgets them. */
  const nodeRuns = async (): Promise<string[]> => {
    const out = (await sh(`cat ${CALLS} 2>/dev/null; : > ${CALLS}`)).stdout;
    return out.split('\n').filter(Boolean);
  };
  /** The network shim's runs by libvirt since the last call ("default port-created", …), then forgets them. */
  const shimRuns = async (): Promise<string[]> => {
    const out = (await sh(`cat ${SHIM_CALLS} 2>/dev/null; : > ${SHIM_CALLS}`)).stdout;
    return out.split('\n').filter(Boolean);
  };
  const hookMode = async () => (await sb.exec(['stat', '-c', '%a', NETWORK_HOOK])).stdout.trim();
  const table = async () => (await sb.exec(['nft', 'list', 'table', 'inet', 'virtwire'])).stdout;
  /** virtwire's accept first in libvirt's own chain for this backend. */
  const acceptIsFirst = async (): Promise<boolean> => {
    const rules = trixie
      ? (await sb.exec(['nft', 'list', 'chain', 'ip', 'libvirt_network', 'guest_input'])).stdout.split('\n').map((l) => l.trim()).filter((l) => /accept|reject/.test(l))
      : (await sb.exec(['iptables', '-w', '-S', 'FORWARD'])).stdout.split('\n').filter((l) => l.startsWith('-A'));
    return rules[0]?.includes('virtwire') === true;
  };
  const log = async (): Promise<string> => (await sb.exec(['cat', '/var/log/virtwire.log'])).stdout;
  const soon = async (what: string, probe: () => Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 300; i++) { if (await probe()) return; await new Promise((r) => setTimeout(r, 100)); }
    throw new Error(`timed out waiting for: ${what}`);
  };
  const startWatcher = async (): Promise<string> => {
    await sb.exec(['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', WATCH_PID, '--exec', '/usr/local/bin/virtwire', '--', 'watch']);
    const pid = (await sb.exec(['cat', WATCH_PID])).stdout.trim();
    await soon('the watcher serves prepare', async () => (await log()).includes(`watch[${pid}] info: serving the qemu hook's prepare`));
    await soon('the watcher has reconciled', async () => (await sb.exec(['cat', '/run/virtwire/watch.json'])).stdout.includes('lastReconcile'));
    return pid;
  };

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web: WEB, db: DB }));
    // The counting Node: one line per run (the bundle's name and the hook's argv), then the real Node.
    const node = (await sh('readlink -f "$(command -v node)"')).stdout.trim();
    await sb.exec(['tee', COUNTING_NODE], { input: `#!/bin/sh\n# The shim runs: node --no-expose-wasm --lite-mode BUNDLE NAME OP …\necho "$(basename "$3" .cjs) $4 $5" >> ${CALLS}\nexec ${node} "$@"\n` });
    await sb.exec(['chmod', '755', COUNTING_NODE]);
    for (const [shim, to] of [['qemu', '/etc/libvirt/hooks/qemu.d/virtwire'], ['network', NETWORK_HOOK]]) {
      await sh('sh /usr/local/lib/virtwire/hooks/render.sh "$1" "$2" /usr/local/lib/virtwire/dist > "$3.new" && chmod 755 "$3.new" && mv -f "$3.new" "$3"', shim as string, COUNTING_NODE, to as string);
    }
    // The network shim also counts libvirt's runs of it, those that exit in the shell included
    // (its third line: the first two, virtwire's signature, stay as they are).
    await sh(`sed -i '3i echo "$1 $2" >> ${SHIM_CALLS}' "$1"`, NETWORK_HOOK);
    await sb.bootGuest(DB1);
    await nodeRuns();
  }, 600_000);

  afterAll(async () => {
    await sb?.exec(['start-stop-daemon', '--stop', '--oknodo', '--pidfile', WATCH_PID]).catch(() => undefined);
    await sb?.stop();
  }, 120_000);

  it('a wired VM: its start runs Node once (prepare), its destroy never; the destroy takes away exactly what the start added', async () => {
    const before = await table();
    // The define's DHCP reservation (net-update) runs the network hook: Node re-asserts, as db-1 runs wired.
    await sb.defineGuest(WEB1);
    expect(await nodeRuns()).toEqual(['network-hook default updated']);
    await shimRuns();
    await sb.startGuest(WEB1.name);
    expect(await nodeRuns()).toEqual(['qemu-hook web-1 prepare']);
    expect(await shimRuns(), 'no watcher: libvirt runs the network hook for the NIC\'s port').toEqual(['default port-created']);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    const uuid = (await sb.virsh('domuuid', '--domain', WEB1.name)).stdout.trim();
    expect((await sb.exec(['head', '-1', `/run/virtwire/teardown/${uuid}.nft`])).stdout.trim()).toBe(`# virtwire teardown of VM ${uuid}`);
    await sb.destroyGuest(WEB1.name);
    expect(await nodeRuns(), 'stopped and release ran from the shell').toEqual([]);
    expect(await shimRuns()).toEqual(['default port-deleted']);
    expect(await table(), 'the table is as before the start: db-1 keeps its forward').toBe(before);
    expect((await sb.exec(['ls', '/run/virtwire/vms', '/run/virtwire/teardown'])).stdout).not.toContain(uuid);
    expect((await sb.exec(['tail', '-1', '/var/log/virtwire.log'])).stdout).toMatch(new RegExp(`qemu-hook-shim\\[\\d+\\] info: VM web-1 \\(${uuid}\\) (stopped|release): removed its forwards$`));
    await expect(sb.clientHttpGet(sb.hostAddress, 8080, 2000)).rejects.toThrow();
  }, 240_000);

  it('a VM no template matches: Node once at its start (to match the templates), never at its destroy or on a daemon restart', async () => {
    await sb.defineGuest(PLAIN);
    await nodeRuns();
    await sb.virsh('start', '--domain', PLAIN.name);
    expect(await nodeRuns()).toEqual(['qemu-hook plain-1 prepare']);
    await restartLibvirtd(sb);
    // The reconnect of plain-1 needs no Node; db-1's does (it re-asserts its forward).
    for (let i = 0; i < 100 && !(await sh(`grep -c reconnect ${CALLS} || true`)).stdout.startsWith('1'); i++) await new Promise((r) => setTimeout(r, 100));
    expect((await nodeRuns()).filter((l) => l.startsWith('qemu-hook'))).toEqual(['qemu-hook db-1 reconnect']);
    await sb.destroyGuest(PLAIN.name);
    expect(await nodeRuns()).toEqual([]);
    expect(await table()).toContain('5432 . tcp : 192.168.122.11 . 5432');
  }, 240_000);

  it('the watcher running: a start runs no Node (it serves prepare), refuses as the hook does, and its destroy is the watcher\'s teardown; killed, Node takes over at once', async () => {
    const pid = await startWatcher();
    await soon('the network hook stood down', async () => (await hookMode()) === '644');
    expect(await log()).toContain(`watch[${pid}] info: network hook ${NETWORK_HOOK} stood down (mode 0644)`);
    await sb.defineGuest(DB2);
    await new Promise((r) => setTimeout(r, 1000)); // the watcher's apply of db-2, and the network hook it may run
    await nodeRuns();

    const before = await table();
    await shimRuns();
    await sb.startGuest(WEB1.name);
    expect(await nodeRuns(), 'prepare was served by the watcher').toEqual([]);
    expect(await shimRuns(), 'the network hook stood down: libvirt ran it for no port').toEqual([]);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    expect(await log()).toMatch(new RegExp(`qemu-hook\\[${pid}\\] info: VM "web-1" prepare: applied 2 forward\\(s\\)`));
    // Its destroy: the watcher runs the VM's teardown (through its long-lived nft), no Node; exactly what the start added goes.
    const uuid = (await sb.virsh('domuuid', '--domain', WEB1.name)).stdout.trim();
    await sb.destroyGuest(WEB1.name);
    expect(await nodeRuns()).toEqual([]);
    expect(await table()).toBe(before);
    expect(await shimRuns()).toEqual([]);
    expect(await log()).toMatch(new RegExp(`qemu-hook\\[${pid}\\] info: VM "web-1" \\(${uuid}\\) stopped: removed its forwards`));
    expect((await sb.exec(['ls', '/run/virtwire/vms', '/run/virtwire/teardown'])).stdout).not.toContain(uuid);
    await expect(sb.clientHttpGet(sb.hostAddress, 8080, 2000)).rejects.toThrow();
    await sb.startGuest(WEB1.name);
    expect(await nodeRuns()).toEqual([]);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);

    // db-1 runs with host port 5432: db-2's start is refused, by the watcher, in the hook's words.
    // The hook operation that refused it too (libvirt names the hook's command line).
    const refusedAt: string[] = [];
    const refusal = async (name = DB2.name): Promise<string> => {
      const r = await sb.virsh('start', '--domain', name).then(() => undefined, (err: Error) => err.message);
      expect(r, 'the start is refused').toBeDefined();
      expect((await sb.virsh('domstate', '--domain', name)).stdout.trim()).toBe('shut off');
      refusedAt.push(/qemu\.d\/virtwire \S+ (prepare|start) begin/.exec(r as string)?.[1] ?? `not named in: ${r}`);
      return /virtwire: [^\n]*/.exec(r as string)?.[0] ?? (r as string);
    };
    const served = await refusal();
    expect(served).toMatch(/^virtwire: VM "db-2": tcp port 5432 on every host IPv4 address is already forwarded to running VM "db-1"/);
    expect(await nodeRuns()).toEqual([]);

    // A host service on web-1's port 8080: the watcher answered before it read the host's sockets,
    // so libvirt's `start` refuses it, in the hook's words, with nothing applied.
    await sb.destroyGuest(WEB1.name);
    const idle = await table();
    const listener = (await sh('setsid node -e "require(\'net\').createServer().listen({port: 8080, host: \'0.0.0.0\'})" >/dev/null 2>&1 & echo $!')).stdout.trim();
    await sh('for i in $(seq 50); do grep -qi ":1F90 .* 0A " /proc/net/tcp && exit 0; sleep 0.1; done; exit 1');
    const hostHeld = await refusal(WEB1.name);
    expect(hostHeld).toMatch(/^virtwire: VM "web-1": tcp port 8080 on every host IPv4 address is in use by the host itself \(0\.0\.0\.0:8080\)/);
    expect(await nodeRuns()).toEqual([]);
    expect(await table()).toBe(idle);
    expect((await sb.exec(['ls', '/run/virtwire/vms', '/run/virtwire/prepare'])).stdout).not.toContain((await sb.virsh('domuuid', '--domain', WEB1.name)).stdout.trim());

    // Killed (no clean exit: its FIFO stays, the kernel drops its lock): Node runs, and says the same.
    await sb.exec(['start-stop-daemon', '--stop', '--signal', 'KILL', '--pidfile', WATCH_PID, '--remove-pidfile']);
    await soon('the watcher is gone', async () => (await sb.exec(['test', '-d', `/proc/${pid}`], { reject: false })).exitCode !== 0);
    expect((await sb.exec(['test', '-p', '/run/virtwire/prepare/requests'], { reject: false })).exitCode).toBe(0);
    expect(await hookMode(), 'killed: nothing armed the network hook yet').toBe('644');
    expect(await refusal()).toBe(served);
    expect(await nodeRuns()).toEqual(['qemu-hook db-2 prepare']);
    // That Node run found no watcher serving, and armed the network hook again.
    expect(await hookMode()).toBe('755');
    expect(await log()).toContain(`${NETWORK_HOOK} was stood down with no watcher serving (it stopped without arming it): armed again`);
    // Node refuses the host service's port at prepare, with the same line.
    expect(await refusal(WEB1.name)).toBe(hostHeld);
    expect(await nodeRuns()).toEqual(['qemu-hook web-1 prepare']);
    expect(refusedAt, 'served: another VM at prepare, a host service at start; Node: both at prepare').toEqual(['prepare', 'start', 'prepare', 'prepare']);
    await sh('kill "$1"', listener);
    await sh('for i in $(seq 50); do grep -qi ":1F90 .* 0A " /proc/net/tcp || exit 0; sleep 0.1; done; exit 1');
    expect(await table()).toBe(idle);
  }, 300_000);

  it('the network hook stood down: a network restarted runs it not, the watcher puts virtwire\'s accept back first; armed across a libvirtd restart; the watcher stopped, libvirt runs it again', async () => {
    const pid = await startWatcher();
    await soon('the network hook stood down', async () => (await hookMode()) === '644');
    await shimRuns();
    // libvirt 11 rebuilds its chains without virtwire's accept here (the watcher's nft monitor puts
    // it back: this fails without); libvirt 9 leaves FORWARD's first rule as it was.
    await sb.virsh('net-destroy', 'default');
    await sb.virsh('net-start', 'default');
    await soon('virtwire\'s accept first again (db-1 runs wired)', acceptIsFirst);
    expect(await shimRuns(), 'libvirt ran no network hook').toEqual([]);

    // libvirtd restarted: the watcher arms the hook as it loses libvirt, before the new daemon notes
    // which hooks exist (the proof: libvirt runs it below, once the watcher is gone), and stands it
    // down again once it is back.
    await restartLibvirtd(sb);
    expect(await log()).toContain(`watch[${pid}] info: network hook ${NETWORK_HOOK} armed again (mode 0755): lost libvirt`);
    await soon('stood down again after the reconnect', async () => (await hookMode()) === '644');

    await sb.exec(['start-stop-daemon', '--stop', '--signal', 'TERM', '--retry', '15', '--pidfile', WATCH_PID, '--remove-pidfile']);
    expect(await hookMode()).toBe('755');
    expect(await log()).toContain(`watch[${pid}] info: network hook ${NETWORK_HOOK} armed again (mode 0755): the watcher is stopping`);
    await shimRuns();
    await sb.virsh('net-destroy', 'default');
    await sb.virsh('net-start', 'default');
    expect(await shimRuns(), 'libvirt runs the armed hook: it still knows of a network hook').toEqual(['default stopped', 'default start', 'default started']);
    expect(await acceptIsFirst()).toBe(true);
  }, 300_000);
});

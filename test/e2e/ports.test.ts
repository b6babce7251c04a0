// Issue 10, scope 4: define-time host ports. e2e b: a port-block template;
// `virtwire apply` gives two VMs disjoint blocks from forwards.autoPorts (and
// their DHCP reservations), and both booted guests answer on their own ports.
// e2e d: a VM undefined, then `virtwire apply --all`, gives back its
// reservation and its ports; a new VM gets them — on libvirt 9 and 11.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { dhcpHostLines, MODES, sandboxWithVirtwire, skipE2e } from './support.js';

// The mapping shorthand: one port block of 4 host ports, base+0 -> 22, base+1 -> 80.
const BLOCK = 'match: {domains: ["blk-*"], networks: [default]}\nbinding: nat\nforwards: {block: 4, guest: [22, 80]}\n';
// The stock default network, fresh: the allocator's first free addresses are .2, .3, ….
const BLK1 = { name: 'blk-1', mac: '52:54:00:e2:0b:01', ip: '192.168.122.2', reserve: false };
const BLK2 = { name: 'blk-2', mac: '52:54:00:e2:0b:02', ip: '192.168.122.3', reserve: false };
// Not .3: blk-2's released reservation is gone, but its DHCP lease of .3 runs until it expires,
// and apply never hands out an address leased to another MAC.
const BLK3 = { name: 'blk-3', mac: '52:54:00:e2:0b:03', ip: '192.168.122.4', reserve: false };
const STORE = '/var/lib/virtwire/allocations.json';

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;

  const virtwire = (...args: string[]) => sb.exec(['virtwire', ...args], { reject: false });
  const hostEntries = (...flags: string[]) => dhcpHostLines(sb, ...flags);
  const store = async () => JSON.parse((await sb.exec(['cat', STORE])).stdout) as { vms: Record<string, { name: string; nics: Record<string, Array<{ key: string; ports: { lo: number; hi: number } }>> }> };
  const uuidOf = async (name: string) => (await sb.virsh('domuuid', '--domain', name)).stdout.trim();

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { blk: BLOCK }));
    await sb.defineGuest(BLK1);
    await sb.defineGuest(BLK2);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('e2e b: a start before apply is refused naming the fix; plan shows the blocks; apply gives two VMs disjoint blocks; both guests answer on their own ports', async () => {
    const early = await sb.virsh('start', '--domain', 'blk-1').catch((err: Error) => ({ stdout: '', stderr: err.message, exitCode: 1 }));
    expect(early.exitCode).not.toBe(0);
    expect(early.stderr).toContain('asks for automatic host ports that have not been allocated; run: virtwire apply blk-1');

    const plan = await virtwire('plan', 'blk-1', 'blk-2');
    expect(plan.exitCode, plan.stdout + plan.stderr).toBe(2);
    expect(plan.stdout).toContain(`  would allocate host ports 20000-20003 tcp+udp for NIC ${BLK1.mac}\n`);
    expect(plan.stdout).toContain(`  would allocate host ports 20004-20007 tcp+udp for NIC ${BLK2.mac}\n`);
    expect(plan.stdout.split('\n')).toContain('  forward at start: tcp *:20005 -> 192.168.122.3:80');

    const apply = await virtwire('apply', 'blk-1', 'blk-2');
    expect(apply).toMatchObject({ exitCode: 0, stderr: '' });
    expect(apply.stdout.trim().split('\n')).toEqual([
      `VM "blk-1": changed (reserved ${BLK1.ip} for NIC ${BLK1.mac} on network "default"; allocated host ports 20000-20003 tcp+udp for NIC ${BLK1.mac}; recorded its wiring in the domain <metadata>)`,
      `VM "blk-2": changed (reserved ${BLK2.ip} for NIC ${BLK2.mac} on network "default"; allocated host ports 20004-20007 tcp+udp for NIC ${BLK2.mac}; recorded its wiring in the domain <metadata>)`,
    ]);
    const s = await store();
    expect(s.vms[await uuidOf('blk-1')]?.nics[BLK1.mac]).toEqual([{ key: 'block', ports: { lo: 20000, hi: 20003 } }]);
    expect(s.vms[await uuidOf('blk-2')]?.nics[BLK2.mac]).toEqual([{ key: 'block', ports: { lo: 20004, hi: 20007 } }]);

    await sb.startGuest('blk-1');
    await sb.startGuest('blk-2');
    expect((await sb.clientHttpGet(sb.hostAddress, 20001)).trim()).toBe(`virtwire-guest ${guestLabel('blk-1')}`);
    expect((await sb.clientHttpGet(sb.hostAddress, 20005)).trim()).toBe(`virtwire-guest ${guestLabel('blk-2')}`);

    const again = await virtwire('apply', 'blk-1', 'blk-2');
    expect(again.stdout.trim().split('\n')).toEqual(['VM "blk-1": unchanged', 'VM "blk-2": unchanged']);
    // status names the ssh line of each VM's block (guest port 22 is the block's first port).
    const status = await virtwire('status', 'blk-2');
    expect(status.stdout).toContain(`forward tcp *:20004 -> ${BLK2.ip}:22, ssh -p 20004 HOST\n`);
  }, 400_000);

  it('e2e d: undefine a VM, apply --all releases its reservation and ports; a new VM gets them', async () => {
    const gone = await uuidOf('blk-2');
    await sb.virsh('destroy', '--domain', 'blk-2');
    await sb.virsh('undefine', '--domain', 'blk-2');
    const apply = await virtwire('apply', '--all');
    expect(apply.exitCode, apply.stdout + apply.stderr).toBe(0);
    expect(apply.stdout.split('\n')).toContain(`VM "blk-2" (${gone}, no longer defined): released host ports 20004-20007 of NIC ${BLK2.mac}, reservation ${BLK2.ip} of NIC ${BLK2.mac} on network "default"`);
    expect(await hostEntries()).toEqual([`<host mac='${BLK1.mac}' ip='${BLK1.ip}'/>`]);
    expect(await hostEntries('--inactive')).toEqual([`<host mac='${BLK1.mac}' ip='${BLK1.ip}'/>`]);
    expect(Object.keys((await store()).vms)).toEqual([await uuidOf('blk-1')]);
    expect((await virtwire('gc')).stdout, 'nothing left to release').toBe('');

    await sb.defineGuest(BLK3);
    const next = await virtwire('apply', 'blk-3');
    expect(next.stdout.trim()).toBe(`VM "blk-3": changed (reserved ${BLK3.ip} for NIC ${BLK3.mac} on network "default"; allocated host ports 20004-20007 tcp+udp for NIC ${BLK3.mac}; recorded its wiring in the domain <metadata>)`);
    await sb.startGuest('blk-3');
    expect((await sb.clientHttpGet(sb.hostAddress, 20005)).trim()).toBe(`virtwire-guest ${guestLabel('blk-3')}`);
  }, 400_000);
});

// binding bridge with a VLAN where libvirt does not set it (a Linux bridge
// before libvirt 11.0: the definition has no <vlan>): qemu prepare checks the
// bridge filters VLANs and leaves a start marker; qemu start sets the VLAN on
// the tap with `bridge vlan`, and any failure refuses the start. This kernel
// has no bridge VLAN filtering, so the commands are checked exactly against
// a recording runner, with sysfs a tree in a temp dir (the e2e case is
// skipped for that kernel limit: test/e2e/binding-lan.test.ts).
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { handleQemuHook } from '../../src/hooks/qemu-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import type { Paths } from '../../src/paths.js';
import type { Runner } from '../../src/host/run.js';
import { tapVlanCommands } from '../../src/host/bridge-vlan.js';
import { tempDir, testPaths, writeFiles } from './helpers.js';

const UUID = '6f1f6a0e-0000-4000-8000-0000000000b1';
const MAC = '52:54:00:77:00:b1';
const live = (vlanElement = ''): string => `<domain type='qemu' id='4'>
  <name>lan-1</name>
  <uuid>${UUID}</uuid>
  <devices>
    <interface type='bridge'><mac address='${MAC}'/><source bridge='br0'/>${vlanElement}<target dev='vnet7'/><model type='virtio'/></interface>
  </devices>
</domain>`;

describe('tap VLANs at qemu start', () => {
  let paths: Paths;
  let ctx: HookContext;
  let commands: string[];
  let failBridge: string | undefined;
  const hook = (op: string, xml: string) => handleQemuHook(ctx, ['lan-1', op, op === 'release' ? 'end' : 'begin', '-'], async () => xml);
  const marker = () => join(paths.runDir, 'start', UUID);
  const entry = () => join(paths.runDir, 'vms', `${UUID}.json`);
  const sysfs = (filtering: string, pvid = '1') => writeFiles(join(paths.sysDir, 'class', 'net', 'br0', 'bridge'), { vlan_filtering: `${filtering}\n`, default_pvid: `${pvid}\n` });
  const template = (vlan: string) => writeFiles(paths.templatesDir, { 'lan.yaml': `match: {domains: ["lan-*"]}\nbinding: bridge\nbridge: {name: br0}\nvlan: ${vlan}\n` });

  beforeEach(() => {
    paths = testPaths(tempDir());
    commands = [];
    failBridge = undefined;
    // Records every command; answers as the host would with no virtwire table and no libvirt chains.
    const run: Runner = async (argv) => {
      commands.push(argv.join(' '));
      if (argv[0] === 'bridge' && failBridge) return { exitCode: 255, stdout: '', stderr: `${failBridge}\n` };
      if (argv[0] === 'nft' && argv.includes('list')) return { exitCode: 1, stdout: '', stderr: 'Error: No such file or directory' };
      return { exitCode: 0, stdout: '', stderr: '' };
    };
    ctx = makeContext(paths, run, { hostSockets: async () => [], hostAddresses: () => [] }, 'test');
    template('100');
    sysfs('1');
  });

  const bridgeCommands = () => commands.filter((c) => c.startsWith('bridge '));

  it('access VLAN: prepare leaves the start marker; start adds it as the untagged PVID and drops the default PVID; release removes both', async () => {
    expect(await hook('prepare', live())).toEqual({ exitCode: 0 });
    expect(JSON.parse(readFileSync(entry(), 'utf8')).nics).toEqual([expect.objectContaining({ mac: MAC, binding: 'bridge', tapVlan: { bridge: 'br0', vlan: { access: 100 } } })]);
    expect(existsSync(marker())).toBe(true);
    expect(bridgeCommands(), 'nothing on the tap before it exists').toEqual([]);
    expect(await hook('start', live())).toEqual({ exitCode: 0 });
    expect(bridgeCommands()).toEqual(['bridge vlan add dev vnet7 vid 100 pvid untagged', 'bridge vlan del dev vnet7 vid 1']);
    expect(readFileSync(paths.logFile, 'utf8')).toContain('VM "lan-1" start: NIC 52:54:00:77:00:b1: tap vnet7 on VLAN 100 in br0');
    expect(await hook('stopped', live())).toEqual({ exitCode: 0 });
    expect(await hook('release', live())).toEqual({ exitCode: 0 });
    expect(existsSync(entry())).toBe(false);
    expect(existsSync(marker())).toBe(false);
  });

  it('trunk: the tagged runs, the native VLAN as untagged PVID; a default PVID that is one of them stays', () => {
    expect(tapVlanCommands('vnet7', { bridge: 'br0', vlan: { tagged: [20, 21, 22, 40], native: 10 } }, 1)).toEqual([
      ['bridge', 'vlan', 'add', 'dev', 'vnet7', 'vid', '20-22'],
      ['bridge', 'vlan', 'add', 'dev', 'vnet7', 'vid', '40'],
      ['bridge', 'vlan', 'add', 'dev', 'vnet7', 'vid', '10', 'pvid', 'untagged'],
      ['bridge', 'vlan', 'del', 'dev', 'vnet7', 'vid', '1'],
    ]);
    expect(tapVlanCommands('vnet7', { bridge: 'br0', vlan: { access: 1 } }, 1)).toEqual([['bridge', 'vlan', 'add', 'dev', 'vnet7', 'vid', '1', 'pvid', 'untagged']]);
    expect(tapVlanCommands('vnet7', { bridge: 'br0', vlan: { access: 5 } }, 0)).toEqual([['bridge', 'vlan', 'add', 'dev', 'vnet7', 'vid', '5', 'pvid', 'untagged']]);
    expect(() => tapVlanCommands('vnet7 x', { bridge: 'br0', vlan: { access: 5 } }, 1)).toThrow('refusing to pass tap');
    expect(() => tapVlanCommands('vnet7', { bridge: 'br0', vlan: { access: 4095 } }, 1)).toThrow('refusing to pass tap');
  });

  it('a `bridge vlan` that fails refuses the start with one line (the guest never runs untagged)', async () => {
    await hook('prepare', live());
    failBridge = 'RTNETLINK answers: Operation not supported';
    expect(await hook('start', live())).toEqual({
      exitCode: 1,
      stderr: 'virtwire: VM "lan-1" NIC 52:54:00:77:00:b1: cannot put its tap vnet7 on VLAN 100 in bridge br0: bridge vlan add failed (exit 255): RTNETLINK answers: Operation not supported',
    });
  });

  it('a bridge that does not filter VLANs refuses at prepare, naming the fix; nothing held, no marker', async () => {
    sysfs('0');
    expect(await hook('prepare', live())).toEqual({
      exitCode: 1,
      stderr: 'virtwire: VM "lan-1" NIC 52:54:00:77:00:b1: bridge br0 does not filter VLANs (vlan_filtering is 0), so a VLAN on it would not isolate anything: enable it with "ip link set br0 type bridge vlan_filtering 1" and in the host\'s network configuration (virtwire never changes host-wide settings)',
    });
    expect(existsSync(entry())).toBe(false);
    expect(existsSync(marker())).toBe(false);
  });

  it('a kernel without bridge VLAN filtering (like this one): refused at prepare, saying so', async () => {
    rmSync(join(paths.sysDir, 'class', 'net', 'br0', 'bridge', 'vlan_filtering'));
    expect(await hook('prepare', live())).toEqual({
      exitCode: 1,
      stderr: 'virtwire: VM "lan-1" NIC 52:54:00:77:00:b1: bridge br0 cannot filter VLANs: this kernel was built without bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), so a VLAN on it would not isolate anything; use a kernel with it, or Open vSwitch (binding: ovs)',
    });
    expect(existsSync(marker())).toBe(false);
  });

  it('a definition with <vlan> (libvirt 11 sets it itself): no start work, no marker', async () => {
    expect(await hook('prepare', live("<vlan><tag id='100'/></vlan>"))).toEqual({ exitCode: 0 });
    expect(existsSync(marker())).toBe(false);
    expect(existsSync(entry())).toBe(false);
    expect(await hook('start', live("<vlan><tag id='100'/></vlan>"))).toEqual({ exitCode: 0 });
    expect(bridgeCommands()).toEqual([]);
  });
});

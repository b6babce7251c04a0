// binding sriov without SR-IOV hardware (this machine has none): the PF's
// VFs from a fake sysfs tree in a temp dir (sriov_totalvfs, sriov_numvfs,
// virtfnN links to the VFs' PCI devices, as the kernel lays them out), the
// VF a NIC gets, and the qemu hook's `ip link set … vf N …` commands at start
// and release against a recording runner. The hostdev XML is in
// bindings.test.ts (expected files, libvirt's schema and parser).
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { readPf, vfResetCommands, vfSetCommand } from '../../src/host/sriov.js';
import { vfAllocator, type PciHolder } from '../../src/engine/vf-allocate.js';
import { hostFacts } from '../../src/host/links.js';
import { handleQemuHook } from '../../src/hooks/qemu-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import type { Paths } from '../../src/paths.js';
import type { Runner } from '../../src/host/run.js';
import { parseDomain } from '../../src/xml/domain.js';
import { UserError } from '../../src/errors.js';
import { tempDir, testPaths, writeFiles } from './helpers.js';

/** /sys/class/net/PF → the PF's PCI device, with `enabled` of `total` VFs at 0000:03:10.N. */
function fakePf(sys: string, pf: string, total: number, enabled: number): void {
  const dev = join(sys, 'devices', 'pci0000:00', '0000:03:00.0');
  mkdirSync(join(dev, 'net', pf), { recursive: true });
  mkdirSync(join(sys, 'class', 'net'), { recursive: true });
  symlinkSync(join(dev, 'net', pf), join(sys, 'class', 'net', pf));
  symlinkSync(dev, join(dev, 'net', pf, 'device'));
  writeFileSync(join(dev, 'sriov_totalvfs'), `${total}\n`);
  writeFileSync(join(dev, 'sriov_numvfs'), `${enabled}\n`);
  for (let i = 0; i < enabled; i++) {
    const vf = join(sys, 'devices', 'pci0000:00', `0000:03:10.${i}`);
    mkdirSync(vf, { recursive: true });
    symlinkSync(`../0000:03:10.${i}`, join(dev, `virtfn${i}`));
  }
}

describe('the PF as sysfs shows it', () => {
  it('its enabled VFs with their PCI addresses; or why it has none, with the fix', () => {
    const sys = tempDir();
    fakePf(sys, 'enp3s0f0', 8, 4);
    expect(readPf(sys, 'enp3s0f0')).toEqual({ pf: 'enp3s0f0', totalVfs: 8, vfs: [0, 1, 2, 3].map((index) => ({ index, pci: `0000:03:10.${index}` })) });
    expect(readPf(sys, 'eth9')).toBe('the host has no link eth9');
    mkdirSync(join(sys, 'devices', 'virtual', 'net', 'br0'), { recursive: true });
    symlinkSync(join(sys, 'devices', 'virtual', 'net', 'br0'), join(sys, 'class', 'net', 'br0'));
    expect(readPf(sys, 'br0')).toBe('br0 is not an SR-IOV physical function (its device has no sriov_totalvfs)');
    const off = tempDir();
    fakePf(off, 'enp3s0f1', 8, 0);
    expect(readPf(off, 'enp3s0f1')).toBe('SR-IOV is not enabled on enp3s0f1: enable its VFs (echo N > /sys/class/net/enp3s0f1/device/sriov_numvfs, up to 8) and make that persistent');
  });
});

describe('which VF a NIC gets', () => {
  const sys = tempDir();
  fakePf(sys, 'enp3s0f0', 8, 3);
  const domain = parseDomain(`<domain><name>db-1</name><uuid>6f1f6a0e-0000-4000-8000-0000000000c1</uuid><devices/></domain>`);
  const other = { uuid: '6f1f6a0e-0000-4000-8000-0000000000c2', name: 'db-2' };

  it('the lowest VF no domain names; the one a NIC has while still free; two NICs of one domain never share one', async () => {
    const facts = await hostFacts(async () => ({ exitCode: 0, stdout: '', stderr: '' }), sys);
    const usage = new Map<string, PciHolder>([['0000:03:10.0', other]]);
    // One allocator per wiring of a domain, one call per NIC.
    expect(vfAllocator(domain, facts, usage)('enp3s0f0', undefined)).toEqual({ index: 1, pci: '0000:03:10.1' });
    expect(usage.get('0000:03:10.1'), 'noted for the next domain of the run').toEqual({ uuid: domain.uuid, name: 'db-1' });
    expect(vfAllocator(domain, facts, usage)('enp3s0f0', '0000:03:10.1'), 'applied again: kept').toEqual({ index: 1, pci: '0000:03:10.1' });
    expect(vfAllocator(domain, facts, usage)('enp3s0f0', '0000:03:10.0'), 'another domain names it').toEqual({ index: 1, pci: '0000:03:10.1' });
    const twoNics = vfAllocator(domain, facts, usage);
    expect([twoNics('enp3s0f0', '0000:03:10.1'), twoNics('enp3s0f0', '0000:03:10.1')]).toEqual([{ index: 1, pci: '0000:03:10.1' }, { index: 2, pci: '0000:03:10.2' }]);
    const next = vfAllocator({ ...domain, uuid: '6f1f6a0e-0000-4000-8000-0000000000c3', name: 'db-3' }, facts, usage);
    expect(() => next('enp3s0f0', undefined)).toThrow(new UserError('VM "db-3": all 3 enabled VFs of enp3s0f0 are in use (by "db-2", "db-1"); enable more (up to 8: /sys/class/net/enp3s0f0/device/sriov_numvfs) or free one'));
  });
});

describe('VF settings: set at qemu start, reset at release (recording runner)', () => {
  const UUID = '6f1f6a0e-0000-4000-8000-0000000000d1';
  const MAC = '52:54:00:77:00:d1';
  const live = `<domain type='qemu' id='5'><name>db-1</name><uuid>${UUID}</uuid><devices>
    <interface type='hostdev' managed='yes'><mac address='${MAC}'/><source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x2'/></source><vlan><tag id='100'/></vlan></interface>
  </devices></domain>`;
  let paths: Paths;
  let ctx: HookContext;
  let commands: string[];
  let failIp: string | undefined;
  const hook = (op: string) => handleQemuHook(ctx, ['db-1', op, op === 'release' ? 'end' : 'begin', '-'], async () => live);
  const vfCommands = () => commands.filter((c) => c.includes(' vf '));
  const template = (line: string) => writeFiles(paths.templatesDir, { 'db.yaml': `match: {domains: ["db-*"]}\nbinding: sriov\nsriov: {pf: enp3s0f0${line}}\nvlan: 100\n` });

  beforeEach(() => {
    paths = testPaths(tempDir());
    fakePf(paths.sysDir, 'enp3s0f0', 8, 4);
    commands = [];
    failIp = undefined;
    const run: Runner = async (argv) => {
      commands.push(argv.join(' '));
      if (argv[0] === 'ip' && argv.includes('vf') && failIp) return { exitCode: 2, stdout: '', stderr: `${failIp}\n` };
      if (argv[0] === 'nft' && argv.includes('list')) return { exitCode: 1, stdout: '', stderr: 'Error: No such file or directory' };
      return { exitCode: 0, stdout: '', stderr: '' };
    };
    ctx = makeContext(paths, run, { hostSockets: async () => [], hostAddresses: () => [] }, 'test');
    writeFiles(paths.runDir, {});
  });

  it('trust, spoofchk and rate in one command at start; at release the VF back to a known state, one setting per command', async () => {
    template(', trust: true, spoofchk: false, maxTxRateMbps: 1000');
    writeFileSync(paths.configFile, 'sriov: {trustPfs: [enp3s0f0]}\n');
    expect(await hook('prepare')).toEqual({ exitCode: 0 });
    expect(JSON.parse(readFileSync(join(paths.runDir, 'vms', `${UUID}.json`), 'utf8')).nics[0].vf).toEqual({ pf: 'enp3s0f0', index: 2, pci: '0000:03:10.2', trust: true, spoofchk: false, maxTxRateMbps: 1000 });
    expect(existsSync(join(paths.runDir, 'start', UUID))).toBe(true);
    expect(vfCommands(), 'nothing before start').toEqual([]);
    expect(await hook('start')).toEqual({ exitCode: 0 });
    expect(vfCommands()).toEqual(['ip link set dev enp3s0f0 vf 2 trust on spoofchk off max_tx_rate 1000']);
    commands.length = 0;
    expect(await hook('stopped')).toEqual({ exitCode: 0 });
    expect(await hook('release')).toEqual({ exitCode: 0 });
    expect(vfCommands()).toEqual([
      'ip link set dev enp3s0f0 vf 2 mac 00:00:00:00:00:00',
      'ip link set dev enp3s0f0 vf 2 vlan 0',
      'ip link set dev enp3s0f0 vf 2 trust off',
      'ip link set dev enp3s0f0 vf 2 spoofchk on',
      'ip link set dev enp3s0f0 vf 2 max_tx_rate 0',
    ]);
    expect(existsSync(join(paths.runDir, 'vms', `${UUID}.json`))).toBe(false);
    expect(JSON.parse(readFileSync(join(paths.runDir, 'host.json'), 'utf8')).vfs).toEqual({});
  });

  it('trust on a PF virtwire.yaml does not list: the start refused at prepare, naming the fix; nothing held', async () => {
    template(', trust: true');
    expect(await hook('prepare')).toEqual({
      exitCode: 1,
      stderr: 'virtwire: VM "db-1" NIC 52:54:00:77:00:d1: trust: true on enp3s0f0, which virtwire.yaml does not allow (a trusted VF can change its own MAC and see more traffic): list it under sriov: {trustPfs: [enp3s0f0]} in /etc/virtwire/virtwire.yaml, or remove trust',
    });
    expect(existsSync(join(paths.runDir, 'vms', `${UUID}.json`))).toBe(false);
  });

  it('a driver that refuses a setting refuses the start; release still resets what it can', async () => {
    template(', spoofchk: false');
    await hook('prepare');
    failIp = 'RTNETLINK answers: Operation not supported';
    expect(await hook('start')).toEqual({ exitCode: 1, stderr: 'virtwire: VM "db-1" NIC 52:54:00:77:00:d1: cannot set VF 2 of enp3s0f0 (spoofchk off): RTNETLINK answers: Operation not supported' });
    expect(await hook('release')).toEqual({ exitCode: 0 });
    expect(readFileSync(paths.logFile, 'utf8')).toContain('reset VF 2 of enp3s0f0 (0000:03:10.2); the driver refused: mac 00:00:00:00:00:00 (RTNETLINK answers: Operation not supported)');
  });

  it('a VF that is not one of the PF\'s (a stale definition) refuses at prepare', async () => {
    template('');
    const other = live.replace("function='0x2'", "function='0x7'");
    expect(await handleQemuHook(ctx, ['db-1', 'prepare', 'begin', '-'], async () => other)).toEqual({
      exitCode: 1,
      stderr: 'virtwire: VM "db-1" NIC 52:54:00:77:00:d1: its PCI device 0000:03:10.7 is not an enabled VF of enp3s0f0 (template ' + join(paths.templatesDir, 'db.yaml') + '); run "virtwire apply" to give it one',
    });
  });

  it('the exact commands, checked values only', () => {
    expect(vfSetCommand({ pf: 'enp3s0f0', index: 3, pci: '0000:03:10.3' })).toBeUndefined();
    expect(vfResetCommands({ pf: 'enp3s0f0', index: 3, pci: '0000:03:10.3' })[0]).toEqual(['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '3', 'mac', '00:00:00:00:00:00']);
    expect(() => vfSetCommand({ pf: 'enp3s0f0; x', index: 3, pci: '' })).toThrow('refusing to pass VF');
  });
});

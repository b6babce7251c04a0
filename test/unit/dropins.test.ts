// Drop-in executables per binding (hooks.d/BINDING/{start,release}): real
// scripts in a temp dir, run by the qemu hook handler at start and when the
// VM stops, with the NIC's settings in the environment; a failing start
// drop-in refuses the start (and the release drop-in still runs when libvirt
// then stops the VM); a group-writable one is refused in one line at
// prepare, and nothing runs. Every other command goes to a recording runner.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { handleQemuHook } from '../../src/hooks/qemu-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import type { Paths } from '../../src/paths.js';
import { runCommand, type Runner } from '../../src/host/run.js';
import { tempDir, testPaths, writeFiles } from './helpers.js';
import { dropinEnv } from '../../src/host/dropins.js';

const UUID = '6f1f6a0e-0000-4000-8000-0000000000e1';
const MAC = '52:54:00:77:00:e1';
const LIVE = `<domain type='qemu' id='6'><name>lan-1</name><uuid>${UUID}</uuid><devices>
  <interface type='bridge'><mac address='${MAC}'/><source bridge='br0'/><target dev='vnet9'/><model type='virtio'/></interface>
</devices></domain>`;
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot && process.env.CI !== 'true')('binding drop-ins', () => {
  let paths: Paths;
  let ctx: HookContext;
  let out: string;
  const hook = (op: string) => handleQemuHook(ctx, ['lan-1', op, op === 'release' ? 'end' : 'begin', '-'], async () => LIVE);
  const dropin = (name: 'start' | 'release', body: string, mode = 0o755) => {
    const dir = join(paths.hooksDir, 'bridge');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const file = join(dir, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, mode);
    return file;
  };

  beforeEach(() => {
    paths = testPaths(tempDir());
    out = join(paths.runDir, '..', 'dropin.out');
    writeFiles(paths.templatesDir, { 'lan.yaml': 'match: {domains: ["lan-*"]}\nbinding: bridge\nbridge: {name: br0}\n' });
    // Drop-ins run for real; everything else (nft, iptables) is recorded, never run on this host.
    const run: Runner = async (argv, opts) => (argv[0]?.startsWith(paths.hooksDir) ? runCommand(argv, opts)
      : argv[0] === 'nft' && argv.includes('list') ? { exitCode: 1, stdout: '', stderr: 'Error: No such file or directory' } : { exitCode: 0, stdout: '', stderr: '' });
    ctx = makeContext(paths, run, { hostSockets: async () => [], hostAddresses: () => [] }, 'test');
  });

  it('start gets the NIC, its tap and its settings in the environment; release runs when the VM stops, once', async () => {
    dropin('start', `env | grep ^VIRTWIRE_ | sort > '${out}'`);
    dropin('release', `echo "released $VIRTWIRE_MAC by $VIRTWIRE_HOOK" >> '${out}'`);
    expect(await hook('prepare')).toEqual({ exitCode: 0 });
    expect(existsSync(out), 'nothing runs at prepare').toBe(false);
    expect(await hook('start')).toEqual({ exitCode: 0 });
    expect(readFileSync(out, 'utf8').split('\n').filter(Boolean)).toEqual([
      'VIRTWIRE_BINDING=bridge', 'VIRTWIRE_HOOK=start', `VIRTWIRE_MAC=${MAC}`, 'VIRTWIRE_SETTINGS={"name":"br0"}', 'VIRTWIRE_SETTING_NAME=br0',
      'VIRTWIRE_TAP=vnet9', 'VIRTWIRE_TEMPLATE=lan', `VIRTWIRE_UUID=${UUID}`, 'VIRTWIRE_VM=lan-1',
    ]);
    expect(await hook('stopped')).toEqual({ exitCode: 0 });
    expect(await hook('release')).toEqual({ exitCode: 0 });
    expect(readFileSync(out, 'utf8').split('\n').filter((l) => l.startsWith('released'))).toEqual([`released ${MAC} by release`]);
  });

  it('a failing start drop-in refuses the start with its last line; the release drop-in runs when libvirt stops the VM', async () => {
    dropin('start', 'echo "no VLAN 100 on this switch" >&2; exit 3');
    dropin('release', `echo released >> '${out}'`);
    await hook('prepare');
    expect(await hook('start')).toEqual({ exitCode: 1, stderr: `virtwire: VM "lan-1" NIC ${MAC}: drop-in ${join(paths.hooksDir, 'bridge', 'start')} failed (exit 3): no VLAN 100 on this switch` });
    expect(await hook('stopped')).toEqual({ exitCode: 0 });
    expect(readFileSync(out, 'utf8')).toBe('released\n');
  });

  it('a group-writable drop-in is refused at prepare in one line, and nothing runs', async () => {
    const file = dropin('start', `echo ran > '${out}'`, 0o775);
    const r = await hook('prepare');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(`virtwire: VM "lan-1" NIC ${MAC}: ${file} is not trusted: it is group-writable (mode 0775); fix: chmod go-w ${file}`);
    expect(await hook('start')).toEqual({ exitCode: 0 });
    expect(existsSync(out)).toBe(false);
  });

  it('the environment: nested settings flattened, every value a string', () => {
    expect(dropinEnv({ vm: 'v', uuid: UUID, mac: MAC, binding: 'macvtap', template: 't', settings: { uplink: 'eth1', mode: 'bridge', hostShim: { address: { address: '198.51.100.5', prefix: 24 } } } })).toMatchObject({
      VIRTWIRE_SETTING_UPLINK: 'eth1', VIRTWIRE_SETTING_MODE: 'bridge', VIRTWIRE_SETTING_HOST_SHIM_ADDRESS_ADDRESS: '198.51.100.5', VIRTWIRE_SETTING_HOST_SHIM_ADDRESS_PREFIX: '24',
    });
  });
});

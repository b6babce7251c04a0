// The qemu shim's no-Node paths (hooks/qemu): a destroy of a wired VM runs
// the teardown Node prepared, from the shell, under the ledger lock — and
// everything unexpected goes to Node. Real nft in a throwaway netns; Node is
// a stand-in that records whether it ran and what it got on stdin.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { countElements, renderTable, renderTeardown } from '../../src/host/nft-script.js';
import { DEFAULT_PATHS } from '../../src/paths.js';
import { Ledger } from '../../src/state/ledger.js';
import { mustRun } from '../../src/host/run.js';
import type { ResolvedForward } from '../../src/model/forward.js';

const UUID_A = '6f1f6a0e-0000-4000-8000-0000000000a1';
const UUID_B = '6f1f6a0e-0000-4000-8000-0000000000b2';
const UUID_C = '6f1f6a0e-0000-4000-8000-0000000000c3';

const forward = (port: number, guestAddr: string, from: string[] = []): ResolvedForward => ({
  nic: '52:54:00:00:00:01', network: 'default', family: 4, proto: 'tcp', host: { lo: port, hi: port }, guest: { lo: 80, hi: 80 },
  guestAddr, guestSubnet: '192.168.122.0/24', from, source: 'template t',
} as unknown as ResolvedForward);
const FW_A = [forward(8080, '192.168.122.10'), forward(8081, '192.168.122.10', ['198.51.100.0/24'])];
const FW_B = [forward(9090, '192.168.122.11')];
/** libvirt's live XML as the hook gets it: <name> first, then the domain's <uuid>. */
const domainXml = (name: string, uuid: string) => `<domain type='qemu' id='7'>\n  <name>${name}</name>\n  <uuid>${uuid}</uuid>\n  <metadata><x:y xmlns:x="urn:x"><uuid>${UUID_B}</uuid></x:y></metadata>\n</domain>`;

describe('render.sh defaults', () => {
  it('are the run dir and log the hooks\' Node code uses', () => {
    const shim = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), 'qemu', '/usr/bin/node', '/x'], { encoding: 'utf8' }).stdout;
    expect(shim).toContain(`rundir='${DEFAULT_PATHS.runDir}'`);
    expect(shim).toContain(`>> '${DEFAULT_PATHS.logFile}'`);
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('qemu shim: stopped/release with no Node', () => {
  let ns: ScratchNetns;
  let dir: string;
  let runDir: string;
  let shim: string;
  let nodeLog: string;

  // Where Node's ledger keeps them: the shim must look in the same places.
  const entry = (uuid: string) => join(runDir, 'vms', `${uuid}.json`);
  const teardown = (uuid: string) => new Ledger(runDir).teardownFile(uuid);
  const map = async () => (await ns.run(['nft', 'list', 'map', 'inet', 'virtwire', 'port4'])).stdout;
  const hairpins = async () => (await ns.run(['nft', 'list', 'set', 'inet', 'virtwire', 'hairpin4'])).stdout;
  /** Runs the shim in the netns as libvirt would: argv, XML on stdin, no environment but LC_ALL. */
  const hook = (name: string, uuid: string, op: string) => {
    const r = spawnSync('ip', ['netns', 'exec', ns.name, shim, name, op, op === 'release' || op === 'stopped' ? 'end' : 'begin', '-'], { input: domainXml(name, uuid), encoding: 'utf8', env: { LC_ALL: 'C' }, timeout: 20_000 });
    return { status: r.status, stderr: r.stderr };
  };
  const nodeRuns = () => (existsSync(nodeLog) ? readFileSync(nodeLog, 'utf8') : '');

  beforeEach(async () => {
    ns = new ScratchNetns();
    dir = tempDir('vw-shim-td-', tmpdir());
    runDir = join(dir, 'run');
    nodeLog = join(dir, 'node-ran');
    mkdirSync(join(runDir, 'vms'), { recursive: true });
    mkdirSync(join(runDir, 'teardown'));
    const node = join(dir, 'node');
    writeFileSync(node, `#!/bin/sh\n{ printf '%s ' "$@"; printf '\\n'; cat; printf '\\n'; } >> ${nodeLog}\n`);
    chmodSync(node, 0o755);
    const r = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), 'qemu', node, join(dir, 'dist'), runDir, join(dir, 'virtwire.log')], { encoding: 'utf8' });
    shim = join(dir, 'qemu');
    writeFileSync(shim, r.stdout, { mode: 0o755 });
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'qemu-hook.cjs'), '// stand-in\n');
    // Two wired VMs, as Node's converge leaves them.
    await mustRun(ns.run, ['nft', '-f', '-'], renderTable([...FW_A, ...FW_B], 0x40000));
    const counts = countElements([FW_A, FW_B]);
    for (const [uuid, fw] of [[UUID_A, FW_A], [UUID_B, FW_B]] as const) {
      writeFileSync(entry(uuid), '{}');
      writeFileSync(teardown(uuid), renderTeardown(uuid, fw, counts) as string);
    }
  });
  afterEach(() => ns.delete());

  it('stopped removes exactly the VM\'s elements, entry and teardown, logs it, and runs no Node; release then has nothing to do', async () => {
    expect(hook('vm-a', UUID_A, 'stopped')).toEqual({ status: 0, stderr: '' });
    expect(await map()).not.toContain('8080');
    expect(await map()).not.toContain('8081');
    expect(await map()).toContain('9090 . tcp : 192.168.122.11 . 80');
    expect(await hairpins()).not.toContain('192.168.122.10');
    expect(await hairpins()).toContain('192.168.122.0/24 . 192.168.122.11');
    expect([existsSync(entry(UUID_A)), existsSync(teardown(UUID_A))]).toEqual([false, false]);
    expect([existsSync(entry(UUID_B)), existsSync(teardown(UUID_B))]).toEqual([true, true]);
    expect(readFileSync(join(dir, 'virtwire.log'), 'utf8')).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z qemu-hook-shim\\[\\d+\\] info: VM vm-a \\(${UUID_A}\\) stopped: removed its forwards\\n$`));
    expect(hook('vm-a', UUID_A, 'release')).toEqual({ status: 0, stderr: '' });
    expect(nodeRuns()).toBe('');
  });

  it('an entry with nothing in the table (reserved: a start that never got to apply) is dropped from the shell too', async () => {
    const before = await map();
    writeFileSync(entry(UUID_C), '{}');
    writeFileSync(teardown(UUID_C), renderTeardown(UUID_C, [], countElements([FW_A, FW_B])) as string);
    expect(hook('vm-c', UUID_C, 'release')).toEqual({ status: 0, stderr: '' });
    expect([existsSync(entry(UUID_C)), existsSync(teardown(UUID_C))]).toEqual([false, false]);
    expect(await map()).toBe(before);
    expect(nodeRuns()).toBe('');
  });

  it('a VM virtwire holds nothing for: stopped, release and reconnect exit 0 with no Node', () => {
    for (const op of ['stopped', 'release', 'reconnect']) expect(hook('vm-c', UUID_C, op), op).toEqual({ status: 0, stderr: '' });
    expect(nodeRuns()).toBe('');
  });

  it('a name the log cannot show as is is logged by UUID only', () => {
    expect(hook('vm "a"\n$(id)', UUID_A, 'stopped')).toEqual({ status: 0, stderr: '' });
    expect(readFileSync(join(dir, 'virtwire.log'), 'utf8')).toContain(`info: VM (name not shown) (${UUID_A}) stopped: removed its forwards\n`);
  });

  it('reconnect of a wired VM goes to Node, with the XML it got on stdin', () => {
    expect(hook('vm-b', UUID_B, 'reconnect')).toEqual({ status: 0, stderr: '' });
    expect(nodeRuns()).toBe(`--no-expose-wasm --lite-mode ${join(dir, 'dist', 'qemu-hook.cjs')} vm-b reconnect begin - \n${domainXml('vm-b', UUID_B)}\n\n`);
  });

  it('a teardown nft refuses (the table was flushed under it) goes to Node with the XML, touching nothing', async () => {
    await mustRun(ns.run, ['nft', 'flush', 'ruleset']);
    expect(hook('vm-b', UUID_B, 'stopped')).toEqual({ status: 0, stderr: '' });
    expect(nodeRuns()).toBe(`--no-expose-wasm --lite-mode ${join(dir, 'dist', 'qemu-hook.cjs')} vm-b stopped end - \n${domainXml('vm-b', UUID_B)}\n\n`);
    expect([existsSync(entry(UUID_B)), existsSync(teardown(UUID_B))]).toEqual([true, true]);
  });

  it('an entry with no teardown (one Node could not make exact), or a teardown naming another VM, goes to Node', async () => {
    rmSync(teardown(UUID_A));
    expect(hook('vm-a', UUID_A, 'stopped').status).toBe(0);
    expect(nodeRuns()).toContain(' vm-a stopped end - ');
    writeFileSync(teardown(UUID_B), readFileSync(teardown(UUID_B), 'utf8').replace(UUID_B, UUID_C));
    expect(hook('vm-b', UUID_B, 'release').status).toBe(0);
    expect(nodeRuns()).toContain(' vm-b release end - ');
    expect(await map()).toContain('9090 . tcp');
  });

  it('waits for the ledger lock another virtwire process holds, then tears down', async () => {
    const holder = spawn('flock', ['--exclusive', '--close', join(runDir, 'lock'), 'sleep', '30'], { stdio: 'ignore', detached: true });
    // flock and its sleep are one process group: both go (by pid), the lock with them.
    const release = () => { try { process.kill(-(holder.pid as number), 'SIGKILL'); } catch { /* gone */ } };
    try {
      await new Promise((r) => setTimeout(r, 300));
      const shimRun = spawn('ip', ['netns', 'exec', ns.name, shim, 'vm-a', 'stopped', 'end', '-'], { stdio: ['pipe', 'ignore', 'ignore'], env: { LC_ALL: 'C' } });
      shimRun.stdin.end(domainXml('vm-a', UUID_A));
      const done = new Promise<number | null>((r) => shimRun.on('close', r));
      await new Promise((r) => setTimeout(r, 700));
      expect(existsSync(teardown(UUID_A)), 'still waiting for the lock').toBe(true);
      expect(await map()).toContain('8080');
      release();
      expect(await done).toBe(0);
      expect(existsSync(teardown(UUID_A))).toBe(false);
      expect(await map()).not.toContain('8080');
    } finally {
      release();
    }
  });
});

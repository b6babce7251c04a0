// virtwire's network hook stood down while a serving watcher covers what it
// does, armed whenever it may not (src/host/network-hook-switch.ts,
// src/hooks/network-hook-guard.ts, src/cli/watch.ts): against a hook file
// rendered as install.sh renders it, real modes and owners; the watcher with
// its real prepare server and recorded event streams (fake processes).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { networkHookFile, networkHookState, switchNetworkHook } from '../../src/host/network-hook-switch.js';
import { armNetworkHookUnlessServed } from '../../src/hooks/network-hook-guard.js';
import { PrepareServer } from '../../src/hooks/prepare-server.js';
import { Watcher } from '../../src/cli/watch.js';
import type { LibvirtClient } from '../../src/libvirt/client.js';
import type { Paths } from '../../src/paths.js';
import { FakeProcess } from '../support/fake-event-process.js';
import { ROOT, tempDir, testPaths, writeFiles } from './helpers.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const mode = (file: string) => statSync(file).mode & 0o7777;

/** hooks/network rendered by hooks/render.sh into paths.libvirtHooksDir, as install.sh does (0755). */
function installHook(paths: Paths): string {
  const file = networkHookFile(paths.libvirtHooksDir);
  mkdirSync(join(paths.libvirtHooksDir, 'network.d'), { recursive: true });
  const r = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), 'network', process.execPath, '/usr/local/lib/virtwire/dist'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  writeFileSync(file, r.stdout, { mode: 0o755 });
  chmodSync(file, 0o755);
  return file;
}

describe.skipIf(process.getuid?.() !== 0)('the network hook switch', () => {
  let paths: Paths;
  let file: string;
  beforeEach(() => {
    paths = testPaths(tempDir());
    file = installHook(paths);
  });

  it('stands the hook down (0644) and arms it (0755), each once; reads the state', () => {
    expect(networkHookState(file)).toBe('armed');
    expect(switchNetworkHook(file, false)).toBe('stood down');
    expect(mode(file)).toBe(0o644);
    expect(networkHookState(file)).toBe('stood down');
    expect(switchNetworkHook(file, false)).toBe('unchanged');
    expect(switchNetworkHook(file, true)).toBe('armed');
    expect(mode(file)).toBe(0o755);
    expect(switchNetworkHook(file, true)).toBe('unchanged');
  });

  it('absent: nothing to do; a file that is not virtwire\'s hook, not root\'s, writable by others or a symlink is left as it is', () => {
    const gone = networkHookFile(join(tempDir(), 'none'));
    expect(switchNetworkHook(gone, false)).toBe('absent');
    expect(networkHookState(gone)).toBe('absent');

    const own = join(tempDir(), 'own');
    writeFileSync(own, '#!/bin/sh\n# an admin\'s own network hook\nexit 0\n', { mode: 0o755 });
    expect(switchNetworkHook(own, false)).toEqual({ refused: 'it is not virtwire\'s network hook' });
    expect(mode(own)).toBe(0o755);

    chownSync(file, 65534, 65534);
    expect(switchNetworkHook(file, false)).toEqual({ refused: 'it is owned by uid 65534, not root' });
    chownSync(file, 0, 0);
    chmodSync(file, 0o775);
    expect(switchNetworkHook(file, false)).toEqual({ refused: 'it is writable by others than root' });
    expect(mode(file)).toBe(0o775);
    chmodSync(file, 0o755);

    const link = join(tempDir(), 'link');
    symlinkSync(file, link);
    expect(switchNetworkHook(link, false)).toEqual({ refused: 'it is not a regular file' });
    expect(mode(file)).toBe(0o755);
  });

  it('a Node hook run (or virtwire reconcile) arms a hook stood down with no watcher serving, and leaves it to a serving one', async () => {
    expect(armNetworkHookUnlessServed(paths)).toBeUndefined();
    switchNetworkHook(file, false);
    const server = new PrepareServer({ runDir: paths.runDir, prepare: async () => ({ exitCode: 0 }), log: { info: () => undefined, error: () => undefined } });
    expect(await server.start()).toBe(true);
    try {
      expect(armNetworkHookUnlessServed(paths)).toBeUndefined();
      expect(mode(file)).toBe(0o644);
    } finally {
      await server.stop();
    }
    expect(armNetworkHookUnlessServed(paths)).toMatch(/ was stood down with no watcher serving \(it stopped without arming it\): armed again/);
    expect(mode(file)).toBe(0o755);
    expect(armNetworkHookUnlessServed(paths)).toBeUndefined();
  });
});

describe.skipIf(process.getuid?.() !== 0)('the serving watcher and the network hook', () => {
  let paths: Paths;
  let file: string;
  let watcher: Watcher;
  let spawned: FakeProcess[];
  let said: string[];
  let nftSees: boolean;
  const stream = (what: string) => [...spawned].reverse().find((p) => p.argv.join(' ').includes(what)) as FakeProcess;
  async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
    for (const end = Date.now() + ms; !cond(); await sleep(10)) if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}\n${said.join('\n')}`);
  }

  function newWatcher(): Watcher {
    const spawn = (command: readonly string[], args: readonly string[]) => { const p = new FakeProcess([...command, ...args]); spawned.push(p); return p; };
    return new Watcher({
      uri: 'qemu:///system', paths, run: async () => ({ exitCode: 0, stdout: '', stderr: '' }), say: (l) => said.push(l), servePrepare: true,
      events: { spawn, debounceMs: 20, maxWaitMs: 200, settleMs: 30, backoffInitialMs: 20, backoffMaxMs: 100, stableMs: 10_000 },
      firewall: { spawn, settleMs: 30, retryMs: 100 },
      deps: {
        newClient: () => ({ listDomains: async () => [], domainXml: async () => '', close: async () => undefined }) as unknown as LibvirtClient,
        applyDomain: async () => [],
        releaseGone: async () => undefined,
        reconcileHost: async () => ({ notes: [], unresolved: [] }),
        nftSeesLibvirtFirewall: () => nftSees,
      },
    });
  }

  beforeEach(() => {
    paths = testPaths(tempDir());
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["vm-*"]}\nbinding: nat\n' });
    file = installHook(paths);
    spawned = [];
    said = [];
    nftSees = true;
    watcher = newWatcher();
  });

  afterEach(async () => {
    await watcher.stop();
  });

  it('stood down once it serves, follows libvirt and watches its chains; armed the moment libvirt is lost, the monitor ends, or it stops', async () => {
    watcher.start();
    await until('stood down', () => mode(file) === 0o644);
    expect(said).toContainEqual(expect.stringMatching(/^network hook .* stood down \(mode 0644\) while this watcher covers network starts and updates/));

    // libvirtd gone: armed at once, in the handler, before any new daemon could note its hooks.
    stream('event --all').exit('exit status 1');
    expect(mode(file)).toBe(0o755);
    expect(said).toContainEqual(expect.stringMatching(/armed again \(mode 0755\): lost libvirt$/));
    await until('stood down again after the reconnect', () => mode(file) === 0o644);

    // Its nft monitor ended: libvirt's chains unwatched, so armed until it runs again.
    stream('monitor rules').exit('exit status 1');
    expect(mode(file)).toBe(0o755);
    await until('stood down once the monitor runs again', () => mode(file) === 0o644);

    await watcher.stop();
    expect(mode(file)).toBe(0o755);
    expect(said.at(-1) ?? '').not.toMatch(/stood down/);
  });

  it('a hook file that is not as install.sh wrote it is left alone, said once, with the fix', async () => {
    chownSync(file, 65534, 65534);
    watcher.start();
    await until('the refusal said', () => said.some((l) => l.includes('left as it is')));
    await sleep(200);
    expect(said.filter((l) => l.includes('left as it is'))).toEqual([
      `network hook ${file} left as it is (it is owned by uid 65534, not root): libvirt runs it for every VM start and destroy; run virtwire's install.sh again, which writes it root's and 0755; a hook of your own goes in network.d under another name`,
    ]);
    expect(mode(file)).toBe(0o755);
  });

  it('left armed where nft cannot see libvirt\'s rules (iptables-legacy)', async () => {
    nftSees = false;
    watcher.start();
    await until('serving and connected', () => said.some((l) => l.startsWith('serving the qemu hook')) && said.some((l) => l.startsWith('watching libvirt')));
    await sleep(300);
    expect(mode(file)).toBe(0o755);
    expect(said.join('\n')).not.toMatch(/network hook/);
  });

  it('a watcher that does not serve (another process holds the channel) never touches the hook, not even at its stop', async () => {
    mkdirSync(join(paths.runDir, 'prepare'), { recursive: true, mode: 0o700 });
    const holder = spawn('flock', [join(paths.runDir, 'prepare', 'alive'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      await sleep(200);
      switchNetworkHook(file, false);
      watcher.start();
      await until('it gave up serving', () => said.some((l) => l.startsWith('watching libvirt')));
      await sleep(2500);
      expect(said.join('\n')).not.toMatch(/serving the qemu hook/);
      expect(mode(file)).toBe(0o644);
      await watcher.stop();
      expect(mode(file)).toBe(0o644);
    } finally {
      holder.kill('SIGKILL');
    }
  }, 15_000);
});

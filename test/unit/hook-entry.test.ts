import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runHook, qemuOpMayFail, type HookEntry } from '../../src/hooks/entry.js';
import { handleQemuHook } from '../../src/hooks/qemu-handler.js';
import { handleNetworkHook } from '../../src/hooks/network-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import { Log } from '../../src/log.js';
import type { Runner } from '../../src/host/run.js';
import type { Paths } from '../../src/paths.js';
import { tempDir, testPaths } from './helpers.js';

/**
 * The hook entry points (src/hooks/qemu.ts, network.ts) go through runHook:
 * whatever throws — context, stdin, handler — only prepare, migrate and restore may exit
 * non-zero; every other operation is logged and exits 0.
 */
describe('hook entry: nothing escapes, and only prepare/migrate/restore may fail', () => {
  const noCommands: Runner = async (argv) => { throw new Error(`unexpected command ${argv.join(' ')}`); };

  function setup() {
    const root = tempDir();
    const paths: Paths = testPaths(root);
    const lines: string[] = [];
    const deps = {
      makeContext: (): HookContext => makeContext(paths, noCommands, { hostSockets: async () => [] }, 'test'),
      fallbackLog: () => new Log(paths.logFile, 'fallback'),
      stderr: (l: string) => { lines.push(l); },
    };
    const log = () => readFileSync(paths.logFile, 'utf8');
    return { paths, deps, lines, log };
  }
  const qemu = (handle: HookEntry['handle']): HookEntry => ({ driver: 'qemu', mayFail: qemuOpMayFail, handle });
  const stdinFails = async (): Promise<string> => { throw new Error('stdin: EIO'); };

  it('stdin that cannot be read: reconnect, stopped and release exit 0 and log it', async () => {
    for (const op of ['reconnect', 'stopped', 'release']) {
      const { deps, lines, log } = setup();
      expect(await runHook(qemu((ctx, a) => handleQemuHook(ctx, a, stdinFails)), ['vm1', op, 'begin', '-'], deps), op).toBe(0);
      // The handler itself catches it: logged, exit 0, nothing on stderr.
      expect(log()).toContain(`error: VM "vm1" ${op}: stdin: EIO`);
      expect(lines).toEqual([]);
    }
  });

  it('stdin that cannot be read at prepare refuses the start with one line', async () => {
    const { deps, lines, paths } = setup();
    expect(await runHook(qemu((ctx, a) => handleQemuHook(ctx, a, stdinFails)), ['vm1', 'prepare', 'begin', '-'], deps)).toBe(1);
    expect(lines).toEqual([`virtwire: internal error: stdin: EIO (details in ${paths.logFile})`]);
  });

  it('a handler that throws: reconnect exits 0 (logged, one stderr line); prepare exits 1 with one line', async () => {
    const boom = async (): Promise<never> => { throw new Error('boom\nsecond line'); };
    const a = setup();
    expect(await runHook(qemu(boom), ['vm "x"', 'reconnect', 'begin', '-'], a.deps)).toBe(0);
    expect(a.lines).toEqual(['virtwire: qemu reconnect "vm \\"x\\"": internal error: boom second line (ignored: libvirt must not see this operation fail)']);
    expect(a.log()).toMatch(/ error: qemu reconnect "vm \\"x\\"": Error: boom second line +at /);
    const b = setup();
    expect(await runHook(qemu(boom), ['vm1', 'prepare', 'begin', '-'], b.deps)).toBe(1);
    expect(b.lines).toEqual(['virtwire: qemu prepare "vm1": internal error: boom second line']);
  });

  it('a context that cannot be made: release exits 0 and logs through the fallback log', async () => {
    const { deps, lines, log } = setup();
    const r = await runHook(qemu(async () => ({ exitCode: 0 })), ['vm1', 'release', 'end', '-'], { ...deps, makeContext: () => { throw new Error('no context'); } });
    expect(r).toBe(0);
    expect(lines).toEqual(['virtwire: qemu release "vm1": internal error: no context (ignored: libvirt must not see this operation fail)']);
    expect(log()).toMatch(/fallback\[\d+\] error: qemu release "vm1": Error: no context/);
  });

  it('the network hook never fails, even when its handler throws', async () => {
    const { deps } = setup();
    const entry: HookEntry = { driver: 'network', mayFail: () => false, handle: async () => { throw new Error('nft gone'); } };
    expect(await runHook(entry, ['default', 'started', 'begin', '-'], deps)).toBe(0);
    expect(await runHook({ ...entry, handle: handleNetworkHook }, ['default', 'updated', 'begin', '-'], deps)).toBe(0);
  });

  it('prepare passes the handler\'s refusal through unchanged', async () => {
    const { deps, lines } = setup();
    expect(await runHook(qemu(async () => ({ exitCode: 1, stderr: 'virtwire: VM "vm1": no' })), ['vm1', 'prepare', 'begin', '-'], deps)).toBe(1);
    expect(lines).toEqual(['virtwire: VM "vm1": no']);
  });
});

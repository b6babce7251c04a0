import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { handleQemuHook } from '../../src/hooks/qemu-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import { acceptComment } from '../../src/host/libvirt-firewall.js';
import { mustRun } from '../../src/host/run.js';
import type { Paths } from '../../src/paths.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { domainXml, fixture, tempDir, writeFiles, testPaths } from './helpers.js';

const UUID = '6f1f6a0e-0000-4000-8000-0000000000c1';

/**
 * `virtwire purge` (what `install.sh --uninstall` runs) in a throwaway netns
 * with libvirt-shaped chains, after a VM got its forwards: it must leave
 * nothing, whatever virtwire.yaml and the ledger say.
 */
describe.skipIf(!canNetns && !mustRunEverything)('virtwire purge', () => {
  let ns: ScratchNetns;
  let ctx: HookContext;
  let paths: Paths;
  let out: string[];
  const cli = (...argv: string[]) => main(argv, paths, (s) => { out.push(s); }, ns.run);
  /** nft's listing does not show iptables-nft's comments: ask iptables too. */
  const leftovers = async () => {
    const listings = [await mustRun(ns.run, ['nft', 'list', 'ruleset']), await mustRun(ns.run, ['iptables-save'])];
    return listings.join('\n').split('\n').filter((l) => /virtwire/.test(l)).map((l) => l.trim());
  };

  beforeEach(async () => {
    ns = new ScratchNetns();
    out = [];
    const root = tempDir();
    paths = testPaths(root);
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n' });
    writeFiles(join(paths.libvirtRunDir, 'network'), { 'default.xml': fixture('network-default.xml') });
    ctx = makeContext(paths, ns.run, { hostSockets: async () => [] }, 'test');
    // libvirt 9's iptables shape, and libvirt 11's nftables table, side by side.
    await mustRun(ns.run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(ns.run, ['iptables', '-w', '-A', 'LIBVIRT_FWI', '-o', 'virbr0', '-j', 'REJECT']);
    await mustRun(ns.run, ['iptables', '-w', '-A', 'FORWARD', '-j', 'LIBVIRT_FWI']);
    await mustRun(ns.run, ['nft', '-f', '-'], 'table ip libvirt_network {\n chain guest_input {\n  oifname "virbr0" reject\n }\n}\n');
    const vm = domainXml('web-1', [{ mac: '52:54:00:77:00:10' }], '', UUID);
    for (const op of ['prepare', 'start']) expect(await handleQemuHook(ctx, ['web-1', op, 'begin', '-'], async () => vm)).toEqual({ exitCode: 0 });
    expect((await leftovers()).length).toBeGreaterThan(2);
  });
  afterEach(() => ns.delete());

  const purged = async () => {
    expect(await cli('purge')).toBe(0);
    expect(await leftovers()).toEqual([]);
    expect(existsSync(join(paths.runDir, 'vms')) ? readdirSync(join(paths.runDir, 'vms')) : []).toEqual([]);
  };

  it('with a broken virtwire.yaml (invalid YAML)', async () => {
    writeFileSync(paths.configFile, 'firewall: {mark: [\n');
    await purged();
    expect(out.join('')).toBe([
      'purge: dropped "web-1"', 'purge: nft table inet virtwire removed',
      'purge: accept removed from nft ip libvirt_network guest_input', 'purge: accept removed from iptables filter FORWARD', '',
    ].join('\n'));
  });

  it('with an untrusted virtwire.yaml (world-writable)', async () => {
    writeFileSync(paths.configFile, 'firewall: {mark: 0x10000000}\n');
    chmodSync(paths.configFile, 0o666);
    await purged();
  });

  it('with the ledger gone and accepts of another mark (an older virtwire.yaml) left behind', async () => {
    rmSync(paths.runDir, { recursive: true });
    const old = 0x20000000;
    await mustRun(ns.run, ['iptables', '-w', '-I', 'FORWARD', '2', '-m', 'connmark', '--mark', '0x20000000/0x20000000', '-m', 'comment', '--comment', acceptComment(old), '-j', 'ACCEPT']);
    await mustRun(ns.run, ['nft', 'add', 'rule', 'ip', 'libvirt_network', 'guest_input', 'ct', 'mark', '&', '0x20000000', '==', '0x20000000', 'accept', 'comment', `"${acceptComment(old)}"`]);
    await purged();
  });

  it('reconcile restores with a broken virtwire.yaml but exits 1 naming it; it rotates the log under the ledger lock', async () => {
    writeFileSync(paths.configFile, 'firewall: {mark: [\n');
    expect(await cli('reconcile')).toBe(1);
    expect(out.join('')).toContain(`fix ${paths.configFile}, or remove it to use the defaults`);
    expect((await leftovers()).length).toBeGreaterThan(2);
    rmSync(paths.configFile);
    writeFileSync(paths.logFile, `${'x'.repeat(1024 * 1024)}\n`);
    expect(await cli('reconcile')).toBe(0);
    expect(existsSync(`${paths.logFile}.1`)).toBe(true);
  });
});

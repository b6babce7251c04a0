// Issue 9 C: `install.sh --uninstall` removes every trace of virtwire from the
// firewall whatever /etc/virtwire/virtwire.yaml says (broken, untrusted) and
// even when Node can no longer run (its shell fallback), and leaves running
// VMs running. Both libvirt 9 (iptables backend) and 11 (nftables backend).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordFigure } from '../support/figures.js';
import { join } from 'node:path';
import { Sandbox } from '../../src/demo/sandbox.js';
import { ensureTrixieRoot } from '../support/rootfs.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { virtwireLeftovers, MODES, skipE2e } from './support.js';


const WEB = 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const WEB1 = { name: 'web-1', mac: '52:54:00:e2:00:10', ip: '192.168.122.10' };
const CONFIG = '/etc/virtwire/virtwire.yaml';


describe.skipIf(skipE2e).each(MODES)('install.sh --uninstall leaves nothing — $mode', ({ mode, trixie }) => {
  let sb: Sandbox;
  let booted = false;
  const installSh = (...args: string[]) => sb.exec(['bash', join(sb.repoDirInside, 'install.sh'), ...args]);

  /** Installs virtwire, (re)starts web-1 and proves its forward works: its accept and table are in place. */
  async function installAndStart(): Promise<void> {
    await installSh();
    await sb.exec(['tee', CONFIG], { input: 'firewall: {mark: 0x10000000}\n' });
    await sb.exec(['chmod', '0644', CONFIG]);
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB });
    if (booted) await sb.startGuest(WEB1.name);
    else await sb.bootGuest(WEB1);
    booted = true;
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    expect((await virtwireLeftovers(sb)).length).toBeGreaterThan(1);
  }

  /** Uninstalls; nothing of virtwire is left in nft or iptables, and web-1 still runs (then it is stopped for the next case). */
  async function uninstallLeavesNothing(): Promise<string> {
    const out = (await installSh('--uninstall')).stdout;
    expect(out).toContain('uninstalled');
    expect(await virtwireLeftovers(sb)).toEqual([]);
    expect((await sb.virsh('domstate', WEB1.name)).stdout.trim()).toBe('running');
    await sb.destroyGuest(WEB1.name);
    return out;
  }

  beforeAll(async () => {
    sb = await Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined });
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('with a virtwire.yaml that is not valid YAML: virtwire purge alone removes it all', async () => {
    await installAndStart();
    await sb.exec(['tee', CONFIG], { input: 'firewall: {mark: [\n' });
    const out = await uninstallLeavesNothing();
    expect(out).toContain('purge: nft table inet virtwire removed');
    expect(out).not.toContain('fallback');
    recordFigure('fault', 'install.sh --uninstall with a virtwire.yaml that is not valid YAML', mode);
  }, 180_000);

  it('with an untrusted (world-writable) virtwire.yaml', async () => {
    await installAndStart();
    await sb.exec(['chmod', '0666', CONFIG]);
    const out = await uninstallLeavesNothing();
    expect(out).toContain('purge: nft table inet virtwire removed');
    expect(out).not.toContain('fallback');
    recordFigure('fault', 'install.sh --uninstall with an untrusted (world-writable) virtwire.yaml', mode);
  }, 180_000);

  it('with Node unreachable: the shell fallback removes the table and the accepts', async () => {
    await installAndStart();
    for (const f of ['/usr/local/bin/virtwire', '/etc/libvirt/hooks/qemu.d/virtwire', '/etc/libvirt/hooks/network.d/virtwire']) {
      await sb.exec(['sed', '-i', 's|/usr/bin/node|/opt/node-was-here/bin/node|g', f]);
    }
    const r = await sb.exec(['virtwire', 'forwards'], { reject: false });
    expect(r.exitCode).toBe(127);
    const out = await uninstallLeavesNothing();
    expect(out).toContain('warning: virtwire purge could not run; removing virtwire\'s firewall rules from the shell');
    expect(out).toContain('fallback: removed nft table inet virtwire');
    expect(out).toContain(trixie
      ? 'fallback: removed virtwire\'s accept from nft ip libvirt_network guest_input'
      : 'fallback: removed virtwire\'s accept from iptables filter FORWARD');
    recordFigure('fault', 'install.sh --uninstall with Node unreachable', mode);
  }, 180_000);
});

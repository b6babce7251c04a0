// binding passt end to end (issue 14 a): on libvirt 11 (Debian 13 root) a
// template's forward reaches the booted guest from the client namespace,
// through the passt process libvirt runs for the VM (no bridge, no NAT
// network, no virtwire firewall rule); on Debian 12's libvirt 9.0, which has
// no passt backend, apply refuses the same template in one line naming the
// version needed, and leaves the definition as it was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestLabel } from '../../src/demo/domain-xml.js';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { MODES, sandboxWithVirtwire, skipE2e, virtwireLeftovers } from './support.js';

const TEMPLATE = 'match: {domains: ["dev-*"], networks: [default]}\nbinding: passt\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';

describe.skipIf(skipE2e).each(MODES)('binding passt — $mode', ({ trixie }) => {
  let sb: Sandbox;
  // passt gives the guest the host's own address on its uplink (it copies the host's addressing).
  const VM = () => ({ name: 'dev-1', mac: '52:54:00:1c:00:10', ip: sb.hostAddress });

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { dev: TEMPLATE }));
    // passt takes its addressing from the host's interface with the default route: give the
    // sandbox one, towards the client namespace (this test's own, so no traffic leaves it).
    await sb.exec(['ip', 'route', 'add', 'default', 'via', sb.clientAddress]);
    await sb.defineGuest({ ...VM(), reserve: false });
  }, 600_000);
  afterAll(async () => { await sb?.stop(); }, 120_000);

  // One case per release (what each libvirt does with the template), so nothing is skipped.
  const libvirt11 = async (): Promise<void> => {
    const r = await sb.exec(['virtwire', 'apply', VM().name], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`NIC ${VM().mac} attached to passt, forwards tcp 8080 to 80`);
    const iface = /<interface[\s\S]*?<\/interface>/.exec((await sb.virsh('dumpxml', '--inactive', '--domain', VM().name)).stdout)?.[0] ?? '';
    expect(iface).toMatch(/<interface type='user'>/);
    expect(iface).toMatch(/<backend type='passt'\/>/);
    expect(iface).toMatch(/<portForward proto='tcp'>\s*<range start='8080' to='80'\/>\s*<\/portForward>/);
    await sb.startGuest(VM().name);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(VM().name)}`);
    expect(await virtwireLeftovers(sb), 'passt needs no virtwire firewall rule').toEqual([]);
    await sb.destroyGuest(VM().name);
    await expect(sb.clientHttpGet(sb.hostAddress, 8080, 2000)).rejects.toThrow();
  };
  const libvirt9 = async (): Promise<void> => {
    const before = (await sb.virsh('dumpxml', '--inactive', '--domain', VM().name)).stdout;
    const r = await sb.exec(['virtwire', 'apply', VM().name], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stdout.trim()).toBe(`VM "dev-1": error: VM "dev-1" NIC ${VM().mac} (template /etc/virtwire/templates/dev.yaml): this libvirt 9.0.0 does not offer the passt backend (its domain capabilities list no interface backends); passt needs a libvirt that does — Debian 13's 11.3 does, Debian 12's 9.0 rejects <backend type='passt'/>`);
    expect((await sb.virsh('dumpxml', '--inactive', '--domain', VM().name)).stdout).toBe(before);
  };

  it(trixie
    ? "libvirt 11: apply makes the NIC passt's with the forward; virsh start; the client reaches the guest through it; destroy takes the port away"
    : 'libvirt 9.0 (no passt backend): apply refuses in one line naming the version needed; the definition unchanged', () => (trixie ? libvirt11() : libvirt9()), 300_000);
});

// Third-party bindings as plugins end to end (issue 14 b), on libvirt 9 and
// 11: the example plugin (templates/plugins/bridge-mtu.cjs), installed
// root-owned in /etc/virtwire/plugins, wires a NIC of a booted guest — apply
// rewrites it onto the LAN bridge with MTU 1400, the guest takes its LAN
// lease, a LAN client reaches it, its tap has that MTU — and the hooks load
// the plugin too. A group-writable plugin is refused with one line and its
// code never runs (it would leave a mark).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { guestLabel } from '../../src/demo/domain-xml.js';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { addLan, type Lan } from '../support/lan.js';
import { MODES, sandboxWithVirtwire, skipE2e } from './support.js';

const VM = { name: 'st-1', mac: '52:54:00:1f:00:10', ip: '198.51.100.31' };
const EVIL_VM = { name: 'ev-1', mac: '52:54:00:1f:00:11', ip: '198.51.100.32' };
const TEMPLATES = {
  storage: 'match: {domains: ["st-*"], networks: [default]}\nbinding: bridge-mtu\nbridgeMtu: {bridge: br-lan, mtu: 1400}\n',
  evil: 'match: {domains: ["ev-*"], networks: [default]}\nbinding: evil\n',
};
const EVIL = "require('fs').writeFileSync('/run/evil-plugin-ran', 'ran'); module.exports = { apiVersion: 1, name: 'evil', keys: [], parse: () => ({}), rewrite: () => {} };\n";

describe.skipIf(skipE2e).each(MODES)('plugins — $mode', ({ trixie }) => {
  let sb: Sandbox;
  let lan: Lan;
  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, TEMPLATES));
    await sb.exec(['install', '-d', '-m', '755', '/etc/virtwire/plugins']);
    await sb.exec(['install', '-m', '644', join(sb.repoDirInside, 'templates', 'plugins', 'bridge-mtu.cjs'), '/etc/virtwire/plugins/bridge-mtu.cjs']);
    await sb.exec(['tee', '/etc/virtwire/plugins/evil.cjs'], { input: EVIL });
    await sb.exec(['chmod', '664', '/etc/virtwire/plugins/evil.cjs']);
    lan = await addLan(sb, { uplink: 'lan0', bridge: 'br-lan', address: '198.51.100.1/24', hosts: [VM] });
    await sb.defineGuest({ ...VM, reserve: false });
    await sb.defineGuest({ ...EVIL_VM, reserve: false });
  }, 600_000);
  afterAll(async () => {
    await lan?.close();
    await sb?.stop();
  }, 120_000);

  it('the example plugin wires a booted guest: on the LAN bridge with its MTU, reachable from the LAN', async () => {
    const r = await sb.exec(['virtwire', 'apply', VM.name], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`NIC ${VM.mac} attached to plugin bridge-mtu: bridge br-lan, MTU 1400`);
    await sb.startGuest(VM.name);
    expect((await lan.httpGet(VM.ip, 80)).trim()).toBe(`virtwire-guest ${guestLabel(VM.name)}`);
    const tap = /<target dev='([^']+)'/.exec((await sb.virsh('dumpxml', '--domain', VM.name)).stdout)?.[1] ?? '';
    expect((await sb.exec(['cat', `/sys/class/net/${tap}/mtu`])).stdout.trim()).toBe('1400');
    const check = await sb.exec(['virtwire', 'templates', 'check'], { reject: false });
    expect(check.stdout).toMatch(/ok {2}\/etc\/virtwire\/templates\/storage\.yaml: binding bridge-mtu, priority 0, bridge br-lan, MTU 1400/);
  }, 300_000);

  it('a group-writable plugin is refused in one line, and its code never runs', async () => {
    const r = await sb.exec(['virtwire', 'apply', EVIL_VM.name], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stdout.trim()).toBe(`VM "${EVIL_VM.name}": error: VM "${EVIL_VM.name}": template /etc/virtwire/templates/evil.yaml is invalid (/etc/virtwire/templates/evil.yaml:1:1: binding evil: its plugin is refused, and nothing of it ran: /etc/virtwire/plugins/evil.cjs is not trusted: it is group-writable (mode 0664); fix: chmod go-w /etc/virtwire/plugins/evil.cjs); fix it — "virtwire templates check" lists every problem`);
    const start = await sb.exec(['timeout', '60', 'virsh', '-c', 'qemu:///system', 'start', EVIL_VM.name], { reject: false });
    expect(start.exitCode).not.toBe(0);
    expect(start.stderr).toContain('binding evil: its plugin is refused, and nothing of it ran');
    expect((await sb.exec(['test', '-e', '/run/evil-plugin-ran'], { reject: false })).exitCode).not.toBe(0);
  }, 120_000);
});

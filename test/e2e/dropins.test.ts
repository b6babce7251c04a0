// Drop-in executables per binding end to end (issue 14 c), on libvirt 9 and
// 11: /etc/virtwire/hooks.d/bridge/start, installed root-owned, gets the
// NIC's settings in its environment at `virsh start` and acts on the tap
// (its MTU, visible on the host before the guest runs); a failing start
// drop-in refuses the start with its own last line, and leaves nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { MODES, sandboxWithVirtwire, skipE2e } from './support.js';

const VM = { name: 'lan-7', mac: '52:54:00:1e:00:10', ip: '192.168.122.70' };
const START = `#!/bin/sh
# Example drop-in: the tap of a bridge-bound NIC gets MTU 1400, and what it was told is kept.
env | grep '^VIRTWIRE_' | sort > /run/dropin-start.env
exec ip link set dev "$VIRTWIRE_TAP" mtu 1400
`;

describe.skipIf(skipE2e).each(MODES)('binding drop-ins — $mode', ({ trixie }) => {
  let sb: Sandbox;
  const install = async (name: string, body: string, mode = '755'): Promise<void> => {
    await sb.exec(['install', '-d', '-m', '755', '/etc/virtwire/hooks.d/bridge']);
    await sb.exec(['tee', `/etc/virtwire/hooks.d/bridge/${name}`], { input: body });
    await sb.exec(['chmod', mode, `/etc/virtwire/hooks.d/bridge/${name}`]);
  };
  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { lan: 'match: {domains: ["lan-*"], networks: [default]}\nbinding: bridge\nbridge: {name: br7}\n' }));
    await sb.exec(['ip', 'link', 'add', 'br7', 'type', 'bridge']);
    await sb.exec(['ip', 'link', 'set', 'br7', 'up']);
    await sb.defineGuest({ ...VM, reserve: false });
    const r = await sb.exec(['virtwire', 'apply', VM.name], { reject: false });
    if (r.exitCode !== 0) throw new Error(`apply: ${r.stdout}${r.stderr}`);
  }, 600_000);
  afterAll(async () => { await sb?.stop(); }, 120_000);

  it('a start drop-in gets the NIC\'s settings and sets its tap\'s MTU before the guest runs', async () => {
    await install('start', START);
    await sb.virsh('start', '--domain', VM.name);
    const tap = /<target dev='([^']+)'/.exec((await sb.virsh('dumpxml', '--domain', VM.name)).stdout)?.[1] ?? '';
    expect((await sb.exec(['cat', `/sys/class/net/${tap}/mtu`])).stdout.trim()).toBe('1400');
    const env = (await sb.exec(['cat', '/run/dropin-start.env'])).stdout.split('\n');
    await sb.destroyGuest(VM.name);
    expect(env).toEqual(expect.arrayContaining([`VIRTWIRE_MAC=${VM.mac}`, `VIRTWIRE_TAP=${tap}`, 'VIRTWIRE_SETTING_NAME=br7', 'VIRTWIRE_VM=lan-7', 'VIRTWIRE_HOOK=start']));
  }, 120_000);

  it('a failing start drop-in refuses the start with its own line, and nothing of the VM is left', async () => {
    await install('start', '#!/bin/sh\necho "br7 is not cabled to the storage VLAN" >&2\nexit 3\n');
    const r = await sb.exec(['timeout', '60', 'virsh', '-c', 'qemu:///system', 'start', VM.name], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`virtwire: VM "lan-7" NIC ${VM.mac}: drop-in /etc/virtwire/hooks.d/bridge/start failed (exit 3): br7 is not cabled to the storage VLAN`);
    expect((await sb.virsh('domstate', '--domain', VM.name)).stdout.trim()).toBe('shut off');
    expect((await sb.exec(['ls', '/run/virtwire/vms'], { reject: false })).stdout.trim()).toBe('');
  }, 120_000);

  it('a group-writable drop-in is refused in one line, and it never runs', async () => {
    await install('start', '#!/bin/sh\ntouch /run/dropin-ran\n', '775');
    const r = await sb.exec(['timeout', '60', 'virsh', '-c', 'qemu:///system', 'start', VM.name], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`virtwire: VM "lan-7" NIC ${VM.mac}: /etc/virtwire/hooks.d/bridge/start is not trusted: it is group-writable (mode 0775); fix: chmod go-w /etc/virtwire/hooks.d/bridge/start`);
    expect((await sb.exec(['test', '-e', '/run/dropin-ran'], { reject: false })).exitCode).not.toBe(0);
  }, 120_000);
});

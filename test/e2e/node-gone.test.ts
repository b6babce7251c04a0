// Issue 9 A: a hook that cannot run Node must never kill running VMs. With
// the installed qemu shim pointing at a Node that no longer exists (as after
// an nvm switch or a purge of NodeSource's package), a libvirtd restart runs
// `reconnect` — which libvirt answers with killing the VM if it fails — and
// the guest must keep running; `virsh destroy` must work; a new start of a
// templated VM must fail closed with the shim's one clear line. Both libvirt
// 9 (Debian 12) and 11 (Debian 13 root).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordFigure } from '../support/figures.js';
import { join } from 'node:path';
import { Sandbox } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { restartLibvirtd, MODES, skipE2e, sandboxWithVirtwire } from './support.js';


const WEB = 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const WEB1 = { name: 'web-1', mac: '52:54:00:e2:00:10', ip: '192.168.122.10' };
const SHIM = '/etc/libvirt/hooks/qemu.d/virtwire';
const GONE = '/opt/node-was-here/bin/node';
/** A second hook after virtwire's (qemu.d runs in name order): records each call, so the test knows reconnect has run. */
const RECORDER = '/etc/libvirt/hooks/qemu.d/zz-record';
const CALLS = '/run/vw-test-hook-calls';


describe.skipIf(skipE2e).each(MODES)('Node gone under a running VM — $mode', ({ mode, trixie }) => {
  let sb: Sandbox;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const domstate = async () => (await sb.virsh('domstate', WEB1.name)).stdout.trim();
  const reconnectsRecorded = async () => ((await sb.exec(['cat', CALLS], { reject: false })).stdout.match(/^web-1 reconnect$/gm) ?? []).length;

  beforeAll(async () => {
    let installOutput: string;
    ({ sb, installOutput } = await sandboxWithVirtwire(trixie, { web: WEB }));
    expect(installOutput).toContain('hooks will run Node /usr/bin/node (v');
    await sb.exec(['tee', RECORDER], { input: `#!/bin/sh\necho "$1 $2" >> ${CALLS}\n` });
    await sb.exec(['chmod', '0755', RECORDER]);
    await sb.bootGuest(WEB1);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
    // Node "goes away": the installed shim now names a path where there is none.
    const shim = (await sb.exec(['cat', SHIM])).stdout;
    expect(shim).toContain("node='/usr/bin/node'");
    await sb.exec(['sed', '-i', `s|^node='/usr/bin/node'$|node='${GONE}'|`, SHIM]);
    expect((await sb.exec(['cat', SHIM])).stdout).toContain(`node='${GONE}'`);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('a libvirtd restart runs reconnect, which cannot run Node, and the VM keeps running', async () => {
    const id = (await sb.virsh('domid', WEB1.name)).stdout.trim();
    const before = await reconnectsRecorded();
    await restartLibvirtd(sb);
    for (let i = 0; i < 100 && (await reconnectsRecorded()) === before; i++) await sleep(200);
    expect(await reconnectsRecorded()).toBe(before + 1);
    // libvirt kills a VM whose reconnect hook failed right after the hooks ran: give it the time to.
    for (let i = 0; i < 10; i++) {
      expect(await domstate()).toBe('running');
      await sleep(200);
    }
    expect((await sb.virsh('domid', WEB1.name)).stdout.trim()).toBe(id);
    recordFigure('fault', 'the Node the hooks were installed with is gone, then libvirtd restarts under a running VM', mode);
  }, 120_000);

  it('virsh destroy succeeds (stopped and release exit 0)', async () => {
    await sb.destroyGuest(WEB1.name);
    expect(await domstate()).toBe('shut off');
    expect((await sb.exec(['cat', CALLS])).stdout).toMatch(/^web-1 stopped\nweb-1 release$/m);
  }, 60_000);

  it('virsh start of a templated VM fails closed with the shim\'s one clear line; install.sh repairs it', async () => {
    const r = await sb.virsh('start', '--domain', WEB1.name).then(() => undefined, (e: Error) => e.message);
    expect(r).toContain(`virtwire: cannot run Node at ${GONE} (missing or not executable); reinstall virtwire: apt-get install nodejs if Node is gone, then run virtwire's install.sh`);
    expect(await domstate()).toBe('shut off');
    await sb.exec(['bash', join(sb.repoDirInside, 'install.sh')]);
    await sb.startGuest(WEB1.name);
    expect((await sb.clientHttpGet(sb.hostAddress, 8080)).trim()).toBe(`virtwire-guest ${guestLabel(WEB1.name)}`);
  }, 120_000);
});

// install.sh and the watcher's systemd unit, in the sandbox (its /etc and
// /usr/local are overlays or a throwaway root): without systemd it installs
// the unit and prints one line on how to run `virtwire watch`; where systemd
// runs the host (/run/systemd/system exists) it reloads, enables and
// restarts the unit, and --uninstall disables, stops and removes it. systemd
// is not PID 1 here, so that branch runs against a stand-in `systemctl`
// (first on PATH) that records its arguments; systemd-analyze checks the
// unit itself (test/unit/systemd-unit.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Sandbox } from '../../src/demo/sandbox.js';
import { MODES, sandboxWithVirtwire, skipE2e } from './support.js';

const UNIT = '/etc/systemd/system/virtwire-watch.service';
const FAKE_SYSTEMCTL = '/usr/local/sbin/systemctl';
const TMPFILES = '/usr/local/lib/tmpfiles.d/virtwire.conf';

describe.skipIf(skipE2e).each(MODES)('install.sh and virtwire-watch.service — $mode', ({ trixie }) => {
  let sb: Sandbox;
  let firstInstall: string;
  const installSh = async (...args: string[]) => (await sb.exec(['bash', join(sb.repoDirInside, 'install.sh'), ...args])).stdout;
  const exists = async (p: string) => (await sb.exec(['test', '-e', p], { reject: false })).exitCode === 0;
  const calls = async () => (await sb.exec(['cat', join(sb.dir, 'systemctl-calls')], { reject: false })).stdout.trim().split('\n').filter(Boolean);

  beforeAll(async () => {
    ({ sb, installOutput: firstInstall } = await sandboxWithVirtwire(trixie));
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('without systemd: the unit is installed as shipped, and one line says how to run the watcher', async () => {
    for (const copy of [UNIT, '/usr/local/lib/virtwire/hooks/virtwire-watch.service']) {
      expect((await sb.exec(['cmp', copy, join(sb.repoDirInside, 'hooks', 'virtwire-watch.service')], { reject: false })).exitCode, copy).toBe(0);
    }
    // And the tmpfiles.d line that arms the network hook at boot (test/unit/systemd-unit.test.ts runs it).
    expect((await sb.exec(['cmp', TMPFILES, join(sb.repoDirInside, 'hooks', 'virtwire.tmpfiles')], { reject: false })).exitCode).toBe(0);
    const lines = firstInstall.split('\n').filter((l) => l.includes('watcher'));
    expect(lines).toEqual([
      'install.sh: watcher: systemd is not running here; start it from your init system or with: nohup /usr/local/bin/virtwire watch >>/var/log/virtwire-watch.out 2>&1 &',
    ]);
  });

  it('with systemd: daemon-reload, enable, restart; --uninstall: disable --now, remove, daemon-reload', async () => {
    await sb.exec(['mkdir', '-p', '/run/systemd/system']);
    await sb.exec(['tee', FAKE_SYSTEMCTL], { input: `#!/bin/sh\necho "$*" >> '${join(sb.dir, 'systemctl-calls')}'\n` });
    await sb.exec(['chmod', '0755', FAKE_SYSTEMCTL]);
    try {
      const out = await installSh();
      expect(out).toContain('install.sh: watcher: virtwire-watch.service enabled and started (journalctl -u virtwire-watch)');
      expect(await calls()).toEqual(['daemon-reload', 'enable --quiet virtwire-watch.service', 'restart virtwire-watch.service']);

      const un = await installSh('--uninstall');
      expect(un).toContain(`install.sh: removed ${UNIT}`);
      expect(await exists(UNIT)).toBe(false);
      expect(await exists(TMPFILES)).toBe(false);
      // The watcher stops before anything else is removed.
      expect(un.split('\n')[0]).toBe(`install.sh: removed ${UNIT}`);
      expect((await calls()).slice(3)).toEqual(['disable --now --quiet virtwire-watch.service', 'daemon-reload']);
    } finally {
      await sb.exec(['rm', '-rf', '/run/systemd', FAKE_SYSTEMCTL]);
    }
  });
});

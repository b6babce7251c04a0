// hooks/virtwire-watch.service, the watcher's unit that install.sh installs,
// checked by systemd's own parser: `systemd-analyze verify` (Debian package
// systemd; test/run.sh installs it). It runs where systemd is not PID 1.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT, tempDir } from './helpers.js';

const UNIT_FILE = join(ROOT, 'hooks', 'virtwire-watch.service');
const EXEC_START = 'ExecStart=/usr/local/bin/virtwire watch';
const haveAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * `systemd-analyze verify` on a copy of `text`. verify refuses a unit whose
 * ExecStart binary does not exist ("Command /usr/local/bin/virtwire is not
 * executable"), and /usr/local/bin/virtwire exists only once install.sh has
 * run: the copy runs an existing binary (/bin/true) instead, with the same
 * arguments. verify exits 0 even on unknown keys or bad values (it only
 * warns), so any output is a failure too.
 */
function verify(text: string): { status: number | null; output: string } {
  const file = join(tempDir(), 'virtwire-watch.service');
  writeFileSync(file, text.replace(EXEC_START, 'ExecStart=/bin/true watch'));
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', env: { LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin', SYSTEMD_LOG_COLOR: '0' } });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

describe('hooks/virtwire-watch.service', () => {
  const unit = readFileSync(UNIT_FILE, 'utf8');
  const lines = unit.split('\n');

  it.skipIf(!haveAnalyze && process.env.CI !== 'true')('passes systemd-analyze verify with no warning', () => {
    expect(lines.filter((l) => l.startsWith('ExecStart='))).toEqual([EXEC_START]);
    expect(verify(unit)).toEqual({ status: 0, output: '' });
  });

  it.skipIf(!haveAnalyze && process.env.CI !== 'true')('the check is not vacuous: a misspelt key or a bad value is reported', () => {
    expect(verify(unit.replace('Restart=on-failure', 'Restart=sometimes')).output).toMatch(/restart specifier/i);
    expect(verify(unit.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes')).output).toMatch(/Unknown key 'NoNewPrivilege'/);
  });

  it('runs `virtwire watch`, restarts on failure, logs to the journal, starts after whichever libvirt daemons exist without pulling any in', () => {
    const values = (key: string) => lines.filter((l) => l.startsWith(`${key}=`)).flatMap((l) => l.slice(key.length + 1).split(/\s+/));
    expect(values('Restart')).toEqual(['on-failure']);
    expect(values('StandardOutput')).toEqual(['journal']);
    expect(values('After')).toEqual(expect.arrayContaining(['libvirtd.service', 'virtqemud.service', 'virtnetworkd.service']));
    // libvirt's modular units declare Conflicts=libvirtd.service: wanting both flavours would start one and stop the other.
    expect([...values('Wants'), ...values('Requires'), ...values('BindsTo')]).toEqual([]);
    expect(values('WantedBy')).toEqual(['multi-user.target']);
    // Node's JIT needs writable+executable memory; nft and ip need the host's network.
    expect(values('MemoryDenyWriteExecute')).toEqual([]);
    expect(values('PrivateNetwork')).toEqual([]);
    expect(values('ProtectSystem')).toEqual(['full']);
  });

  it('may change the network hook\'s mode, and only that in /etc; arms it after any stop, outside its sandbox', () => {
    const values = (key: string) => lines.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
    expect(values('ReadWritePaths')).toEqual(['-/etc/libvirt/hooks/network.d/virtwire']);
    expect(values('ExecStopPost')).toEqual(['-+/bin/chmod 0755 /etc/libvirt/hooks/network.d/virtwire']);
  });
});

describe('hooks/virtwire.tmpfiles', () => {
  const haveTmpfiles = spawnSync('systemd-tmpfiles', ['--version'], { stdio: 'ignore' }).status === 0;
  it.skipIf((!haveTmpfiles && process.env.CI !== 'true') || process.getuid?.() !== 0)('systemd-tmpfiles --create arms a stood-down network hook, and makes none where there is none', () => {
    const root = tempDir();
    const hook = join(root, 'etc', 'libvirt', 'hooks', 'network.d', 'virtwire');
    const create = () => spawnSync('systemd-tmpfiles', ['--create', `--root=${root}`, join(ROOT, 'hooks', 'virtwire.tmpfiles')], { encoding: 'utf8' });
    let r = create();
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(hook)).toBe(false);
    mkdirSync(dirname(hook), { recursive: true });
    writeFileSync(hook, '#!/bin/sh\n', { mode: 0o644 });
    chmodSync(hook, 0o644);
    r = create();
    expect(r.status, r.stderr).toBe(0);
    expect(statSync(hook).mode & 0o7777).toBe(0o755);
  });
});

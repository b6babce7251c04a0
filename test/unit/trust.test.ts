import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTrustedFile, MAX_POLICY_FILE_BYTES } from '../../src/policy/trust.js';
import { loadConfig, DEFAULT_CONFIG } from '../../src/policy/config.js';
import { loadTemplates } from '../../src/policy/load.js';
import { tempDir } from './helpers.js';
import { BINDINGS } from '../../src/bindings/registry.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const TEMPLATE = 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const REGULAR_ONLY = 'virtwire reads only regular files (replace it with one, or remove it)';
const q = JSON.stringify;

/** Runs fn and returns the message it threw (failing the test if it did not throw). */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a refusal, got none');
}

/** As root, as the hooks run: the ownership checks are on. Temp dirs are under /run (root-owned, 0755). */
describe.skipIf(!isRoot)('readTrustedFile (as root)', () => {
  let writer: ChildProcess | undefined;
  afterEach(() => { writer?.kill('SIGKILL'); writer = undefined; });

  function dir(name: string, mode = 0o755, uid = 0): string {
    const d = join(tempDir(), name);
    mkdirSync(d);
    chmodSync(d, mode);
    chownSync(d, uid, 0);
    return d;
  }
  function file(d: string, name: string, text = TEMPLATE, mode = 0o644, uid = 0): string {
    const f = join(d, name);
    writeFileSync(f, text);
    chmodSync(f, mode);
    chownSync(f, uid, 0);
    return f;
  }
  const read = (f: string) => readTrustedFile(f, MAX_POLICY_FILE_BYTES);

  it('reads a root-owned file in root-owned directories', () => {
    expect(read(file(dir('t'), 'web.yaml'))).toBe(TEMPLATE);
  });

  it('refuses a file owned by another user', () => {
    const f = file(dir('t'), 'web.yaml', TEMPLATE, 0o644, NOBODY);
    expect(refusal(() => read(f))).toBe(`${f} is not trusted: it is owned by uid 65534 (not root); fix: chown root ${f}`);
  });

  it('refuses a group-writable file; both problems are named when both apply', () => {
    const d = dir('t');
    const f = file(d, 'web.yaml', TEMPLATE, 0o664);
    expect(refusal(() => read(f))).toBe(`${f} is not trusted: it is group-writable (mode 0664); fix: chmod go-w ${f}`);
    const g = file(d, 'both.yaml', TEMPLATE, 0o666, NOBODY);
    expect(refusal(() => read(g))).toBe(`${g} is not trusted: it is owned by uid 65534 (not root) and group- and world-writable (mode 0666); fix: chown root ${g} && chmod go-w ${g}`);
  });

  it('refuses a symlink to a root-owned file in a world-writable directory', () => {
    const ww = dir('ww', 0o777);
    const link = join(dir('templates'), 'web.yaml');
    symlinkSync(file(ww, 'web.yaml'), link);
    expect(refusal(() => read(link))).toBe(`${link} is not trusted: directory ${ww} on its path is group- and world-writable (mode 0777); fix: chmod go-w ${ww}, or keep the file in a directory only root can write to`);
  });

  it('refuses a symlink whose target directory is owned by nobody', () => {
    const nd = dir('nobody', 0o755, NOBODY);
    const link = join(dir('templates'), 'web.yaml');
    symlinkSync(file(nd, 'web.yaml'), link);
    expect(refusal(() => read(link))).toBe(`${link} is not trusted: directory ${nd} on its path is owned by uid 65534 (not root); fix: chown root ${nd}, or keep the file in a directory only root can write to`);
  });

  it('refuses a file reached through a world-writable directory (/tmp), and a link placed in one', () => {
    const inTmp = tempDir('vw-trust-', tmpdir());
    const f = file(inTmp, 'web.yaml');
    expect(refusal(() => read(f))).toBe(`${f} is not trusted: directory /tmp on its path is group- and world-writable (mode 1777); fix: keep the file in a directory only root can write to`);
    const good = file(dir('t'), 'web.yaml');
    const ww = dir('ww', 0o777);
    symlinkSync(good, join(ww, 'web.yaml'));
    expect(refusal(() => read(join(ww, 'web.yaml')))).toContain(`is not trusted: directory ${ww} on its path is group- and world-writable`);
  });

  it('refuses a FIFO at once instead of waiting for a writer', () => {
    const f = join(dir('t'), 'web.yaml');
    execFileSync('mkfifo', ['-m', '0644', f]);
    // Code that blocked in open(2) would be released by this writer after 2 s, and fail the timing below instead of hanging the run.
    writer = spawn('timeout', ['5', 'sh', '-c', `sleep 2; echo 'x: 1' > ${q(f)}`], { stdio: 'ignore' });
    const t = Date.now();
    expect(refusal(() => read(f))).toBe(`${f} is a FIFO, not a regular file; ${REGULAR_ONLY}`);
    expect(Date.now() - t).toBeLessThan(1000);
  });

  it('refuses /dev/zero behind a symlink, and a directory named like a template', () => {
    const d = dir('t');
    symlinkSync('/dev/zero', join(d, 'zero.yaml'));
    expect(refusal(() => read(join(d, 'zero.yaml')))).toBe(`${join(d, 'zero.yaml')} is a character device, not a regular file; ${REGULAR_ONLY}`);
    mkdirSync(join(d, 'x.yaml'));
    expect(refusal(() => read(join(d, 'x.yaml')))).toBe(`${join(d, 'x.yaml')} is a directory, not a regular file; ${REGULAR_ONLY}`);
  });

  it('refuses an oversized file', () => {
    const f = file(dir('t'), 'big.yaml', `# ${'x'.repeat(MAX_POLICY_FILE_BYTES)}\n`);
    expect(refusal(() => read(f))).toBe(`${f} is too large (${MAX_POLICY_FILE_BYTES + 3} bytes, at most ${MAX_POLICY_FILE_BYTES}); a template or virtwire.yaml is a few KiB — is it the right file?`);
  });

  it('accepts a hard link: it is the same root-owned file', () => {
    const d = dir('t');
    linkSync(file(d, 'a.yaml'), join(d, 'b.yaml'));
    expect(read(join(d, 'b.yaml'))).toBe(TEMPLATE);
  });

  it('never puts a raw file name into a suggested shell command', () => {
    const f = file(dir('t'), '$(reboot) x.yaml', TEMPLATE, 0o644, NOBODY);
    expect(refusal(() => read(f))).toBe(`${f} is not trusted: it is owned by uid 65534 (not root); fix: chown root '${f}'`);
  });

  it('keeps "absent" distinguishable: ENOENT for a missing file, a clear line for a dangling symlink', () => {
    const d = dir('t');
    let code: unknown;
    try { read(join(d, 'none.yaml')); } catch (err) { code = (err as NodeJS.ErrnoException).code; }
    expect(code).toBe('ENOENT');
    symlinkSync(join(d, 'gone.yaml'), join(d, 'dangling.yaml'));
    expect(refusal(() => read(join(d, 'dangling.yaml')))).toBe(`${q(join(d, 'dangling.yaml'))} is a symlink to ${q(join(d, 'gone.yaml'))}, which does not exist; fix the link or remove it`);
  });

  it('an unprivileged run skips the ownership checks, never the regular-file check', () => {
    const d = dir('t');
    const f = file(d, 'web.yaml', TEMPLATE, 0o666, NOBODY);
    expect(readTrustedFile(f, MAX_POLICY_FILE_BYTES, { ownership: false })).toBe(TEMPLATE);
    execFileSync('mkfifo', [join(d, 'fifo.yaml')]);
    expect(refusal(() => readTrustedFile(join(d, 'fifo.yaml'), MAX_POLICY_FILE_BYTES, { ownership: false }))).toBe(`${join(d, 'fifo.yaml')} is a FIFO, not a regular file; ${REGULAR_ONLY}`);
  });

  it('loadConfig: absent means the defaults; a FIFO or an untrusted file is refused', () => {
    const d = dir('etc');
    expect(loadConfig(join(d, 'virtwire.yaml'))).toEqual(DEFAULT_CONFIG);
    execFileSync('mkfifo', [join(d, 'virtwire.yaml')]);
    expect(refusal(() => loadConfig(join(d, 'virtwire.yaml')))).toBe(`${join(d, 'virtwire.yaml')} is a FIFO, not a regular file; ${REGULAR_ONLY}`);
    const f = file(dir('etc2'), 'virtwire.yaml', 'firewall: {mark: 0x20000000}\n', 0o666);
    expect(refusal(() => loadConfig(f))).toBe(`${f} is not trusted: it is group- and world-writable (mode 0666); fix: chmod go-w ${f}`);
  });

  it('loadTemplates: a FIFO, a device and a directory among the templates are broken files, never silently skipped; the rest load', () => {
    const d = dir('templates');
    file(d, 'web.yaml');
    execFileSync('mkfifo', [join(d, 'fifo.yaml')]);
    symlinkSync('/dev/zero', join(d, 'zero.yaml'));
    mkdirSync(join(d, 'dir.yaml'));
    const set = loadTemplates(d, BINDINGS);
    expect(set.templates.map((t) => t.name)).toEqual(['web']);
    expect(set.broken.map((b) => [b.name, b.problems[0]?.message])).toEqual([
      ['dir', `${join(d, 'dir.yaml')} is a directory, not a regular file; ${REGULAR_ONLY}`],
      ['fifo', `${join(d, 'fifo.yaml')} is a FIFO, not a regular file; ${REGULAR_ONLY}`],
      ['zero', `${join(d, 'zero.yaml')} is a character device, not a regular file; ${REGULAR_ONLY}`],
    ]);
  });
});

// The watcher's long-lived `nft -i` (src/host/nft-session.ts) on this host's
// real nft, in a throwaway netns: each included file one transaction, its
// errors reported, and a session that lost its nft starts a new one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NftSession } from '../../src/host/nft-session.js';
import { mustRun } from '../../src/host/run.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { tempDir } from './helpers.js';

describe.skipIf(!canNetns && !mustRunEverything)('nft session', () => {
  let ns: ScratchNetns;
  let session: NftSession;
  const dir = tempDir('vw-nfts-');
  const file = (name: string, text: string): string => { const f = join(dir, name); writeFileSync(f, text); return f; };
  const elements = async (): Promise<string> => (await mustRun(ns.run, ['nft', 'list', 'map', 'inet', 't', 'm'])).replace(/\s+/g, ' ');

  beforeAll(async () => {
    ns = new ScratchNetns();
    await mustRun(ns.run, ['nft', '-f', '-'], 'table inet t {\n\tmap m {\n\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service\n\t}\n}\n');
    session = new NftSession(join(dir, 'scratch.nft'), ['ip', 'netns', 'exec', ns.name, 'nft']);
  });
  afterAll(async () => {
    session.close();
    ns.delete();
    await new Promise((r) => setTimeout(r, 200)); // its nft exits on end of input
    expect(existsSync('/.nft.history'), 'nft -i leaves no command history behind').toBe(false);
  });

  it('runs each file as one transaction: all of it, or on an error none of it, with the error', async () => {
    const add = file('add.nft', '# two elements\nadd element inet t m { 10.0.0.1 . 80 : 10.1.1.1 . 80 }\nadd element inet t m { 10.0.0.2 . 80 : 10.1.1.2 . 80 }\n');
    expect(await session.include(add)).toEqual({ ok: true, errors: '' });
    expect(await elements()).toContain('10.0.0.1 . 80 : 10.1.1.1 . 80, 10.0.0.2 . 80 : 10.1.1.2 . 80');
    // The second line names an element that is not there: the first is not deleted either.
    const bad = file('bad.nft', 'delete element inet t m { 10.0.0.1 . 80 : 10.1.1.1 . 80 }\ndelete element inet t m { 10.0.0.9 . 80 : 10.1.1.9 . 80 }\n');
    const r = await session.include(bad);
    expect(r.ok).toBe(false);
    expect(r.errors).toMatch(/bad\.nft:2:\d+-\d+: Error: Could not process rule: No such file or directory/);
    expect(r.errors).not.toMatch(/vw-end-/);
    expect(await elements()).toContain('10.0.0.1 . 80 : 10.1.1.1 . 80');
    const del = file('del.nft', 'delete element inet t m { 10.0.0.1 . 80 : 10.1.1.1 . 80, 10.0.0.2 . 80 : 10.1.1.2 . 80 }\n');
    expect(await session.include(del)).toEqual({ ok: true, errors: '' });
    expect(await elements()).not.toContain('10.0.0');
  });

  it('runs in call order, one at a time', async () => {
    const runs = Array.from({ length: 5 }, (_, i) => session.include(file(`n${i}.nft`, `${i % 2 ? 'delete' : 'add'} element inet t m { 10.0.0.5 . 80 : 10.1.1.5 . 80 }\n`)));
    expect((await Promise.all(runs)).map((r) => r.ok)).toEqual([true, true, true, true, true]);
    expect(await elements()).toContain('10.0.0.5 . 80');
  });

  it('runs a script given as text through its scratch file, in order with the included files', async () => {
    const both = [
      session.run('add element inet t m { 10.0.0.6 . 80 : 10.1.1.6 . 80 }\n'),
      session.include(file('del6.nft', 'delete element inet t m { 10.0.0.6 . 80 : 10.1.1.6 . 80 }\n')),
      session.run('add element inet t m { 10.0.0.7 . 80 : 10.1.1.7 . 80 }\n'),
    ];
    expect((await Promise.all(both)).map((r) => r.ok)).toEqual([true, true, true]);
    expect(await elements()).not.toContain('10.0.0.6');
    expect(await elements()).toContain('10.0.0.7 . 80');
    expect(statSync(join(dir, 'scratch.nft')).mode & 0o777).toBe(0o600);
    const bad = await session.run('delete element inet t m { 10.0.0.9 . 80 : 10.1.1.9 . 80 }\n');
    expect(bad.ok).toBe(false);
    expect(bad.errors).toMatch(/scratch\.nft:1:\d+-\d+: Error: Could not process rule: No such file or directory/);
    await expect(new NftSession('/tmp/a b.nft').run('')).rejects.toThrow(/not a path it includes/);
  });

  it('lists a table or chain, in order with the runs, and tells one that is not there; runs no other command', async () => {
    const runs = [session.run('add element inet t m { 10.0.0.8 . 80 : 10.1.1.8 . 80 }\n'), session.list('list table inet t')];
    const [added, listed] = await Promise.all(runs);
    expect(added?.ok).toBe(true);
    expect(listed).toMatchObject({ ok: true });
    // nft runs with -a: each table, chain, set and rule names its handle.
    expect((listed as { output: string }).output).toMatch(/^table inet t \{ # handle \d+\n\tmap m \{ # handle \d+\n[\s\S]*10\.0\.0\.8 \. 80 : 10\.1\.1\.8 \. 80[\s\S]*\n\}\n$/);
    expect((listed as { output: string }).output).not.toMatch(/vw-end-|Error/);
    const gone = await session.list('list chain ip libvirt_network guest_input');
    expect(gone.ok).toBe(false);
    expect(gone.output).toMatch(/^Error: No such file or directory\nlist chain ip libvirt_network guest_input\n/);
    for (const bad of ['list table inet t; flush ruleset', 'flush ruleset', 'list table inet t\nflush ruleset', 'list ruleset', 'list table inet "t"']) {
      await expect(session.list(bad), bad).rejects.toThrow(/not a listing it runs/);
    }
    expect(await elements()).toContain('10.0.0.8 . 80');
  });

  it('refuses a path nft would read otherwise than as one string, before nft sees it', async () => {
    await expect(session.include('/tmp/a"; flush ruleset; "')).rejects.toThrow(/not a path it includes/);
    await expect(session.include('relative.nft')).rejects.toThrow(/not a path it includes/);
  });

  it('an nft that went away is replaced on the next run', async () => {
    // This session's nft: `nft -a -i` in this test's netns.
    const netns = `net:[${statSync(`/run/netns/${ns.name}`).ino}]`;
    const pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && (() => {
      try { return readlinkSync(`/proc/${p}/ns/net`) === netns && readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'nft\0-a\0-i\0'; } catch { return false; }
    })());
    expect(pids).toHaveLength(1);
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    expect(await session.include(file('after.nft', 'delete element inet t m { 10.0.0.5 . 80 : 10.1.1.5 . 80 }\n'))).toEqual({ ok: true, errors: '' });
  });
});

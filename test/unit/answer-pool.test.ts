// The watcher's pool of answer FIFOs (src/hooks/answer-pool.ts): when a slot
// is freed, against real FIFOs and real processes holding them as a shim
// does (its fd 7). The shim's side runs in test/unit/prepare-server.test.ts.
import { ROOT, tempDir } from './helpers.js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AnswerPool, POOL_SLOTS } from '../../src/hooks/answer-pool.js';

const dir = tempDir('vw-pool-', tmpdir());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

let n = 0;
function pool(): AnswerPool {
  const prepareDir = join(dir, `prepare-${n++}`);
  mkdirSync(prepareDir, { mode: 0o700 });
  return new AnswerPool(prepareDir);
}

/** A shim holding slot K: its claim, and the FIFO open on its fd 7 (as hooks/qemu's `exec 7<>`); resolves with what it read. */
async function holder(p: AnswerPool, slot: number, read = false): Promise<{ pid: string; exit: () => Promise<void>; line: Promise<string> }> {
  const c = spawn('dash', ['-c', `exec 7<>"$1"; echo ready; ${read ? 'IFS= read -r l <&7; echo "$l"' : 'read l'}`, 'dash', p.fifo(slot)], { stdio: ['pipe', 'pipe', 'ignore'] });
  started.push(c);
  let out = '';
  const ready = new Promise<void>((resolve) => c.stdout?.on('data', (d: Buffer) => { out += d.toString(); if (out.startsWith('ready\n')) resolve(); }));
  const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
  await ready;
  writeFileSync(join(p.dir, `${slot}.claim`), `${c.pid}\n`);
  return { pid: String(c.pid), exit: async () => { c.stdin?.end(); await closed; }, line: closed.then(() => out.slice('ready\n'.length)) };
}

const claims = (p: AnswerPool): string[] => readdirSync(p.dir).filter((f) => f.endsWith('.claim')).sort();
const deadPid = (): string => spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();

describe('the answer pool', () => {
  it('has the slots the shim tries, in the order it tries them', () => {
    const shim = readFileSync(join(ROOT, 'hooks', 'qemu'), 'utf8');
    expect(/for vw_k in ([0-9 ]+); do/.exec(shim)?.[1]).toBe(Array.from({ length: POOL_SLOTS }, (_, k) => k).join(' '));
  });

  it('makes its FIFOs, a file in the way of one replaced', () => {
    const p = pool();
    mkdirSync(p.dir, { mode: 0o700 });
    writeFileSync(p.fifo(2), 'not a FIFO');
    p.open('node');
    p.close();
    expect(readdirSync(p.dir).sort()).toEqual(Array.from({ length: POOL_SLOTS }, (_, k) => `${k}.fifo`));
    for (let k = 0; k < POOL_SLOTS; k++) expect(lstatSync(p.fifo(k)).isFIFO(), `${k}.fifo`).toBe(true);
    expect((lstatSync(p.dir).mode & 0o777).toString(8)).toBe('700');
  });

  it('an answered slot stays claimed while its shim holds the FIFO — the next claimant could read an answer it has not — and is freed once it let go', async () => {
    const p = pool();
    p.open('node');
    const shim = await holder(p, 4);
    p.queued(4);
    p.sweep();
    expect(claims(p), 'queued').toEqual(['4.claim']);
    p.done(4, shim.pid);
    p.sweep();
    expect(claims(p), 'answered, still held').toEqual(['4.claim']);
    await shim.exit();
    p.sweep();
    expect(claims(p)).toEqual([]);
    p.close();
  });

  it('a slot never answered is freed once its shim is gone, not while it lives; one holding no pid once a minute old; a claim made anew after a free is left alone', async () => {
    const p = pool();
    p.open('node');
    const shim = await holder(p, 1);
    writeFileSync(join(p.dir, '6.claim'), `${deadPid()}\n`);
    // A shim killed between making its claim and writing its pid: empty (or cut short).
    for (const k of [3, 5, 7]) writeFileSync(join(p.dir, `${k}.claim`), k === 5 ? '12' : '');
    const old = new Date(Date.now() - 61_000);
    for (const k of [3, 5]) utimesSync(join(p.dir, `${k}.claim`), old, old);
    p.sweep();
    expect(claims(p), 'the live one kept, the dead one freed; of those holding no pid, the fresh one kept').toEqual(['1.claim', '7.claim']);
    // Answered to one pid, the slot then claimed by another (its shim freed it by hand, say): not ours to free.
    p.done(1, '999999');
    p.sweep();
    expect(claims(p)).toEqual(['1.claim', '7.claim']);
    await shim.exit();
    p.sweep();
    expect(claims(p)).toEqual(['7.claim']);
    p.close();
  });

  it('sweeps by itself after an answer, until the shim let go', async () => {
    const p = pool();
    p.open('node');
    const shim = await holder(p, 0);
    p.queued(0);
    p.done(0, shim.pid);
    await new Promise((r) => setTimeout(r, 200));
    expect(claims(p)).toEqual(['0.claim']);
    await shim.exit();
    for (let i = 0; i < 100 && claims(p).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(claims(p)).toEqual([]);
    p.close();
  });

  it('claims a dead watcher left: a shim still waiting is told the stale answer, and its slot freed once it let go; a dead shim\'s freed at once', async () => {
    const first = pool();
    first.open('node');
    first.close();
    const again = new AnswerPool(join(first.dir, '..'));
    const waiting = await holder(again, 3, true);
    writeFileSync(join(again.dir, '5.claim'), `${deadPid()}\n`);
    writeFileSync(join(again.dir, '6.claim'), '');
    const old = new Date(Date.now() - 61_000);
    utimesSync(join(again.dir, '6.claim'), old, old);
    again.open('node');
    expect(claims(again).includes('6.claim'), 'an old claim holding no pid').toBe(false);
    expect(await waiting.line).toBe('node\n');
    expect(claims(again).includes('5.claim')).toBe(false);
    for (let i = 0; i < 100 && claims(again).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(claims(again)).toEqual([]);
    again.close();
    expect(existsSync(again.fifo(3))).toBe(true);
  });
});

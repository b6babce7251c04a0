import { describe, expect, it } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { chownSync, existsSync, linkSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Log } from '../../src/log.js';
import { ROOT, tempDir } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

describe('log', () => {
  it('appends one line per call to a new 0640 file; a message cannot forge a line', () => {
    const f = join(tempDir(), 'virtwire.log');
    const log = new Log(f, 'test');
    log.info('one');
    log.error('two\n2026-01-01T00:00:00.000Z forged[1] info: hi');
    expect(lines(f)).toHaveLength(2);
    expect(lines(f)[1]).toMatch(/^\S+ test\[\d+\] error: two 2026-01-01T00:00:00.000Z forged\[1\] info: hi$/);
    expect(statSync(f).mode & 0o777).toBe(0o640);
  });

  it('never writes through a symlink at its path: the target is untouched', () => {
    const d = tempDir();
    const target = join(d, 'shadow');
    writeFileSync(target, 'root:secret\n');
    const before = statSync(target);
    symlinkSync(target, join(d, 'virtwire.log'));
    const log = new Log(join(d, 'virtwire.log'), 'test');
    log.info('appended?');
    log.rotate();
    expect(readFileSync(target, 'utf8')).toBe('root:secret\n');
    expect(statSync(target).mtimeMs).toBe(before.mtimeMs);
    expect(readdirSync(d).sort()).toEqual(['shadow', 'virtwire.log']);
  });

  it('never writes a hard-linked file, a FIFO, or (as root) a file another user owns', () => {
    const d = tempDir();
    writeFileSync(join(d, 'other'), '');
    linkSync(join(d, 'other'), join(d, 'hard.log'));
    new Log(join(d, 'hard.log'), 't').info('x');
    expect(readFileSync(join(d, 'other'), 'utf8')).toBe('');
    execFileSync('mkfifo', [join(d, 'fifo.log')]);
    const t = Date.now();
    new Log(join(d, 'fifo.log'), 't').info('x'); // no reader: must not block
    expect(Date.now() - t).toBeLessThan(1000);
    if (isRoot) {
      writeFileSync(join(d, 'nobody.log'), '');
      chownSync(join(d, 'nobody.log'), 65534, 65534);
      new Log(join(d, 'nobody.log'), 't').info('x');
      expect(readFileSync(join(d, 'nobody.log'), 'utf8')).toBe('');
    }
  });

  it('writers never rotate; rotate() does, keeping at most 3 old files', () => {
    const f = join(tempDir(), 'virtwire.log');
    const log = new Log(f, 't', { maxBytes: 100 });
    for (let i = 0; i < 5; i++) log.info('x'.repeat(120));
    expect(lines(f)).toHaveLength(5);
    expect(existsSync(`${f}.1`)).toBe(false);
    for (let round = 0; round < 5; round++) {
      log.rotate();
      log.info(`after rotation ${round}`);
    }
    log.rotate(); // under the limit: nothing to do
    expect(readdirSync(join(f, '..')).sort()).toEqual(['virtwire.log', 'virtwire.log.1', 'virtwire.log.2', 'virtwire.log.3']);
    expect(lines(f)).toEqual([expect.stringContaining('after rotation 4')]);
  });

  it('several processes logging and rotating at once under the ledger lock: no line lost, no file beyond .3', async () => {
    const dir = tempDir();
    const file = join(dir, 'virtwire.log');
    const WORKERS = 4;
    const LINES = 150;
    // 4 × 150 lines of ~92 bytes ≈ 55 KB: with 20 KB files, at most two
    // rotations, all kept in FILE … FILE.2 — so every line must be found.
    const script = `
      import { Log } from ${JSON.stringify(join(ROOT, 'src/log.ts'))};
      import { withLock } from ${JSON.stringify(join(ROOT, 'src/state/lock.ts'))};
      const [id] = process.argv.slice(2);
      const log = new Log(${JSON.stringify(file)}, 'w' + id, { maxBytes: 20 * 1024 });
      for (let i = 0; i < ${LINES}; i++) {
        log.info('worker ' + id + ' line ' + i + ' ' + 'x'.repeat(30));
        if (i % 10 === 0) await withLock(${JSON.stringify(join(dir, 'lock'))}, async () => log.rotate());
      }`;
    const child = join(dir, 'child.ts');
    writeFileSync(child, script);
    const viteNode = join(ROOT, 'node_modules', '.bin', 'vite-node');
    const codes = await Promise.all(Array.from({ length: WORKERS }, (_, id) => new Promise<number>((resolve) => {
      spawn(viteNode, [child, String(id)], { stdio: 'inherit' }).on('close', (code) => resolve(code ?? 1));
    })));
    expect(codes).toEqual(Array(WORKERS).fill(0));
    const names = readdirSync(dir).filter((n) => n.startsWith('virtwire.log')).sort();
    expect(names.length).toBeGreaterThanOrEqual(2);
    expect(names.every((n) => /^virtwire\.log(\.[123])?$/.test(n))).toBe(true);
    const all = names.flatMap((n) => lines(join(dir, n))).map((l) => / (worker \d+ line \d+) /.exec(l)?.[1]);
    const want = Array.from({ length: WORKERS }, (_, id) => Array.from({ length: LINES }, (_, i) => `worker ${id} line ${i}`)).flat();
    expect(all.sort()).toEqual(want.sort());
  }, 60_000);
});

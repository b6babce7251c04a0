// What the qemu shim's served `prepare` costs on its own, outside libvirt:
// the installed shim (rendered as install.sh renders it) run as libvirt runs
// it — XML on a pipe as stdin, no environment — against a real PrepareServer in this
// process whose handler answers "ok" at once, side by side with a /bin/sh
// hook that reads its stdin and exits (what any hook pays). So the figure is
// the shell's and the channel's share of a start: the request, the answer,
// the processes the shim starts; not the handler's planning. Both are
// started alike, on a pipe another process writes (test/support/pipe-stdin.ts).
//
//   npx vite-node bench/prepare-shim.ts [--rounds 400] [--ab DIR]
//
// --ab: another virtwire checkout (e.g. `git worktree add /tmp/old REV`):
// its hooks/qemu against its own PrepareServer, measured in the same rounds
// as this tree's.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PrepareServer } from '../src/hooks/prepare-server.js';
import { median, medianInterval, printTable } from './lib.js';
import { spawnOnPipe } from '../test/support/pipe-stdin.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '400' }, ab: { type: 'string' } } });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds needs a whole number ≥ 1, got ${values.rounds}`);

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'vw-bench-shim-'));

// A 200-forward domain's XML is ~20 KB with its <metadata>: the size a shim hands over.
const XML = `<domain type='qemu'>\n  <name>bench-1</name>\n  <uuid>7e0b3a4c-1111-4222-8333-94445555aaaa</uuid>\n  <metadata>\n${'    <!-- filler to a large domain\'s size -->\n'.repeat(450)}  </metadata>\n</domain>\n`;

/** A tree's qemu shim, rendered as install.sh renders it, for a watcher on runDir. */
function renderShim(tree: string, runDir: string, name: string): string {
  const r = spawnSyncText('sh', [join(tree, 'hooks', 'render.sh'), 'qemu', '/bin/false', join(dir, 'dist'), runDir, join(dir, 'log')]);
  const file = join(dir, name);
  writeFileSync(file, r, { mode: 0o755 });
  return file;
}

function spawnSyncText(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** One run as libvirt makes it; its wall time in ms, or an error if it did not exit 0. */
function timeRun(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawnOnPipe([file, 'bench-1', 'prepare', 'begin', '-'], XML);
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (status === 0) resolve(ms);
      else reject(new Error(`${file} exited ${status}: ${stderr}`));
    });
  });
}

const noop = join(dir, 'noop');
writeFileSync(noop, '#!/bin/sh\ncat >/dev/null\nexit 0\n', { mode: 0o755 });
/** A tree's PrepareServer on a run dir of its own, answering "ok" at once, and its shim. */
async function served(tree: string, key: string, label: string): Promise<{ name: string; file: string; server: { stop(): Promise<void> } }> {
  const mod = (await import(join(tree, 'src', 'hooks', 'prepare-server.ts'))) as typeof import('../src/hooks/prepare-server.js');
  const runDir = join(dir, `run-${key}`);
  const server = new mod.PrepareServer({
    runDir,
    prepare: async () => { answered++; return { exitCode: 0 }; },
    log: { info: () => undefined, error: (m) => console.error(m) },
  });
  if (!(await server.start())) throw new Error(`the bench's PrepareServer (${tree}) could not serve`);
  return { name: `virtwire shim, served (${label})`, file: renderShim(tree, runDir, `qemu-${key}`), server };
}

let answered = 0;
const shims = [await served(ROOT, 'now', 'this tree')];
if (values.ab) shims.push(await served(values.ab, 'ab', values.ab));
const cases: Array<[string, string]> = [['/bin/sh hook: reads its stdin, exits', noop], ...shims.map((s): [string, string] => [s.name, s.file])];
try {
  for (const [, file] of cases) for (let i = 0; i < 20; i++) await timeRun(file); // warm-up
  answered = 0;
  const times = cases.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) for (const [i, [, file]] of cases.entries()) times[i]!.push(await timeRun(file));
  if (answered !== rounds * shims.length) throw new Error(`the servers answered ${answered} prepares, expected ${rounds * shims.length}: a shim did not use its watcher`);
  const base = times[0]!;
  printTable(['case', 'median ms', '95 %', '+ms over the /bin/sh hook (paired)', '95 %'], cases.map(([name], i) => {
    const t = times[i]!;
    const [lo, hi] = medianInterval(t);
    const diffs = t.map((v, k) => v - base[k]!);
    const [dlo, dhi] = medianInterval(diffs);
    return [name, median(t).toFixed(2), `${lo.toFixed(2)}–${hi.toFixed(2)}`, i === 0 ? '' : `+${median(diffs).toFixed(2)}`, i === 0 ? '' : `${dlo.toFixed(2)}–${dhi.toFixed(2)}`];
  }));
  console.log(`${rounds} rounds, interleaved; ${XML.length} bytes of XML per run`);
} finally {
  for (const s of shims) await s.server.stop();
  rmSync(dir, { recursive: true, force: true });
}

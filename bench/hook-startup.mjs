// Hook start-up cost, measured side by side with a reference in the same run:
// libvirt runs the qemu hook several times per VM start, so what a hook costs
// before it does any work matters. Run after `npm run build`:
//   node bench/hook-startup.mjs [runs]        (needs /usr/bin/time: apt-get install time)
// Prints the median wall time and peak RSS of each case and its ratio to the reference.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const runs = Number(process.argv[2] ?? 30);
const dir = mkdtempSync(join(tmpdir(), 'vw-bench-'));
const shim = join(dir, 'qemu');
// The installed shim, pointed at this checkout's bundle.
writeFileSync(shim, spawnSync('sh', ['hooks/render.sh', 'qemu', process.execPath, join(process.cwd(), 'dist')]).stdout);
chmodSync(shim, 0o755);
const domain = "<domain type='qemu'><name>bench</name><uuid>6f1f6a0e-0000-4000-8000-0000000000be</uuid><devices/></domain>";

const cases = [
  ['reference: node -e 0', [process.execPath, '-e', '0']],
  ['reference: /bin/true', ['/bin/true']],
  ['qemu hook via shim, "started" (no-op)', [shim, 'bench', 'started', 'begin', '-']],
  ['qemu hook bundle, "prepare" of a VM no template matches', [process.execPath, '--no-expose-wasm', '--lite-mode', 'dist/qemu-hook.cjs', 'bench', 'prepare', 'begin', '-']],
];

function measure(argv) {
  const times = [];
  let rss = 0;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync('/usr/bin/time', ['-f', '%M', ...argv], { input: domain, encoding: 'utf8' });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    rss = Math.max(rss, Number(r.stderr.trim().split('\n').pop()));
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], rssKiB: rss };
}

const ref = measure(cases[0][1]);
for (const [name, argv] of cases) {
  const m = name === cases[0][0] ? ref : measure(argv);
  console.log(`${name.padEnd(58)} ${m.ms.toFixed(1).padStart(7)} ms  ${String(m.rssKiB).padStart(7)} KiB  x${(m.ms / ref.ms).toFixed(2)} of node -e 0`);
}

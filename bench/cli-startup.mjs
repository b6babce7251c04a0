// `virtwire --help` start-up cost (load and parse the CLI bundle, print, exit),
// beside `node -e 0` measured in the same run, runs interleaved so that load
// from other processes hits every case alike. Run after `npm run build`:
//   node bench/cli-startup.mjs [runs] [other-virtwire.mjs ...]
// Extra bundles (e.g. a build of an older commit) are measured beside this one.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

const [runsArg, ...others] = process.argv.slice(2);
const runs = Number(runsArg ?? 20);
const cases = [
  ['reference: node -e 0', [process.execPath, '-e', '0']],
  ...['dist/virtwire.mjs', ...others].map((b) => [`${b} --help (${statSync(b).size} bytes)`, [process.execPath, b, '--help']]),
];
const times = cases.map(() => []);
for (let i = 0; i < runs; i++) {
  for (const [k, [, argv]] of cases.entries()) {
    const t = process.hrtime.bigint();
    const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    times[k].push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const ref = median(times[0]);
for (const [k, [name]] of cases.entries()) {
  const m = median(times[k]);
  console.log(`${name.padEnd(72)} ${m.toFixed(1).padStart(7)} ms  +${(m - ref).toFixed(1).padStart(6)} ms over node -e 0  (median of ${runs})`);
}

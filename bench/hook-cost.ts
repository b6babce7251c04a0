// What libvirt's qemu hooks cost a VM's `virsh start` and `virsh destroy`,
// measured side by side in one run on a real libvirtd with a booted guest
// (the e2e sandbox), as issue 12 asks:
//   - no hooks at all (the reference: 1.00),
//   - a /bin/sh hook that does nothing (the floor any hook pays),
//   - a one-iptables-rule-per-forward hook written for this comparison in
//     Python, the way the popular port-forward hooks work (bench/reference-hook.py),
//   - virtwire at 1, 50 and 200 forwards with its watcher running (as
//     install.sh sets it up: it serves the hook's prepare), and at 1 and 200
//     without it (the hook runs Node for prepare),
// each forward checked to work before anything is timed. Rounds interleave
// the cases (A B C … A B C …), so load from elsewhere hits every case alike.
// The watcher, restarted each round, is warmed by one untimed start first.
// Also the peak RSS of virtwire's hook processes (goal: ≤ 60 MiB).
//
//   npm run build && npx vite-node bench/hook-cost.ts [--rounds 10] [--trixie]
//
// --trixie runs libvirt 11 from the Debian 13 root (nftables backend; the
// iptables reference needs iptables there, else that case is left out).
import { readFileSync } from 'node:fs';
import { sandboxWithVirtwire } from '../test/e2e/support.js';
import type { Sandbox } from '../src/demo/sandbox.js';
import { guestLabel } from '../src/demo/domain-xml.js';
import { parseArgs } from 'node:util';
import { goalVerdict, median, medianInterval, printTable } from './lib.js';
import { FIRST_PORT, QEMU_D, VM, awaitNetworkHookStoodDown, keepVirtwireShims, ports, sh, useHooks, useWatcher, virtwireTemplate, watcherRss } from './hook-cases.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, trixie: { type: 'boolean', default: false } } });
const args = { rounds: Number(values.rounds), trixie: values.trixie === true };
if (!Number.isInteger(args.rounds) || args.rounds < 1) throw new Error(`--rounds needs a whole number ≥ 1, got ${values.rounds}`);
/** Issue 12's goal: a start or destroy with virtwire's hooks at most this times one with no hooks. */
const GOAL = 1.1;
const REFERENCE_HOOK = readFileSync(new URL('reference-hook.py', import.meta.url), 'utf8');

interface Case {
  name: string;
  /** Puts this case's hooks in place (the others' gone). */
  setup: (sb: Sandbox) => Promise<void>;
  /** Forwards that must answer before timing: host ports. */
  check: number[];
  /** virtwire's watcher runs (as install.sh sets it up): it serves the hook's prepare. Off in every other case. */
  watcher?: boolean;
}

/** After a case's set-up, before timing (see main). */
const SETTLE_MS = 1500;
/**
 * Between the timed start and the timed destroy. A running watcher syncs
 * ~0.2 s after each burst of libvirt events (the start's among them) and is
 * done within a second here; a destroy timed while it still works would
 * charge that to the destroy. Every case waits alike.
 */
const GAP_S = 1;

/** The installed virtwire shims (kept aside at start) put back, with this template. */
function virtwireCase(n: number, watcher: boolean): Case {
  return {
    name: `virtwire, ${n} forward${n === 1 ? '' : 's'}${watcher ? '' : ', no watcher'}`,
    watcher,
    setup: async (sb) => {
      await useHooks(sb, { '/etc/virtwire/templates/bench.yaml': virtwireTemplate(n) }, true);
    },
    check: [FIRST_PORT, FIRST_PORT + n - 1],
  };
}

function referenceCase(n: number): Case {
  return {
    name: `reference: iptables rule per forward, ${n} forward${n === 1 ? '' : 's'}`,
    setup: (sb) => useHooks(sb, {
      [`${QEMU_D}/reference`]: REFERENCE_HOOK,
      '/etc/vw-reference-forwards.json': JSON.stringify({ [VM.name]: { guest: VM.ip, forwards: ports(n).map((p) => ({ proto: 'tcp', host: p, guest: 80 })) } }),
    }),
    check: [FIRST_PORT, FIRST_PORT + n - 1],
  };
}

/** Times one `virsh start` and one `virsh destroy` inside the sandbox (no nsenter in the figure). */
async function startStop(sb: Sandbox): Promise<{ start: number; destroy: number }> {
  const out = (await sh(sb, `set -e
    t0=$(date +%s%N); virsh -q -c qemu:///system start "$1" >/dev/null; t1=$(date +%s%N)
    sleep ${GAP_S}
    t2=$(date +%s%N); virsh -q -c qemu:///system destroy "$1" >/dev/null; t3=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) $(( (t3 - t2) / 1000 ))`, VM.name)).stdout.trim().split(' ').map(Number);
  return { start: (out[0] as number) / 1000, destroy: (out[1] as number) / 1000 };
}

async function checkForwards(sb: Sandbox, c: Case): Promise<void> {
  await sb.startGuest(VM.name);
  try {
    for (const p of c.check) {
      const body = (await sb.clientHttpGet(sb.hostAddress, p)).trim();
      if (body !== `virtwire-guest ${guestLabel(VM.name)}`) throw new Error(`${c.name}: host port ${p} did not reach the guest (got ${JSON.stringify(body)})`);
    }
  } finally {
    await sb.destroyGuest(VM.name);
  }
}

/** Peak RSS (KiB) of each Node run of virtwire's hooks during one start + destroy (a Python wrapper reads the child's getrusage). */
async function hookPeakRss(sb: Sandbox, n: number): Promise<number[]> {
  const node = (await sh(sb, 'readlink -f "$(command -v node)"')).stdout.trim();
  const wrapper = `#!/usr/bin/python3\nimport resource, subprocess, sys\nr = subprocess.run([${JSON.stringify(node)}] + sys.argv[1:])\nopen('/run/vw-rss', 'a').write(f"{sys.argv[4]} {sys.argv[5]} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")\nsys.exit(r.returncode)\n`;
  await sb.exec(['tee', '/root/vw-rss-node'], { input: wrapper });
  await sb.exec(['chmod', '755', '/root/vw-rss-node']);
  await useWatcher(sb, false);
  await virtwireCase(n, false).setup(sb);
  await sh(sb, `rm -f /run/vw-rss; sh /usr/local/lib/virtwire/hooks/render.sh qemu /root/vw-rss-node /usr/local/lib/virtwire/dist > ${QEMU_D}/virtwire`);
  await startStop(sb);
  const lines = (await sh(sb, 'cat /run/vw-rss 2>/dev/null || true')).stdout.trim().split('\n').filter(Boolean);
  return lines.map((l) => Number(l.split(' ')[2]));
}

async function main(): Promise<void> {
  const { sb } = await sandboxWithVirtwire(args.trixie);
  try {
    const haveIptables = (await sh(sb, 'command -v iptables >/dev/null && echo yes || echo no')).stdout.trim() === 'yes';
    await keepVirtwireShims(sb);
    const cases: Case[] = [
      { name: 'no hooks', setup: (s) => useHooks(s, {}), check: [] },
      { name: 'a /bin/sh hook that does nothing', setup: (s) => useHooks(s, { [`${QEMU_D}/noop`]: '#!/bin/sh\nexit 0\n' }), check: [] },
      ...(haveIptables ? [referenceCase(1), referenceCase(200)] : []),
      virtwireCase(1, false), virtwireCase(200, false),
      virtwireCase(1, true), virtwireCase(50, true), virtwireCase(200, true),
    ];
    // Every case alike: after its set-up the host settles for SETTLE_MS before anything is timed. A
    // running watcher reacts to the template just written (it re-applies every domain: a one-off per
    // edit, not a cost of each start), and that must not land inside the timed start.
    const setup = async (c: Case): Promise<void> => {
      const started = await useWatcher(sb, c.watcher === true);
      await c.setup(sb);
      // A watcher runs for days; one just started serves its first start with cold code (V8
      // compiles each function on first use). The rounds restart it for the cases without it,
      // so one untimed start and destroy warms it, as any start since it came up would have.
      if (started) await startStop(sb);
      if (c.watcher === true) await awaitNetworkHookStoodDown(sb);
      await new Promise((r) => setTimeout(r, SETTLE_MS));
    };
    await sb.defineGuest(VM);
    // Not timed: every case's forwards answer (and the guest boots at all).
    for (const c of cases) {
      await setup(c);
      await checkForwards(sb, c);
      process.stderr.write(`checked: ${c.name}\n`);
    }
    const times = cases.map(() => ({ start: [] as number[], destroy: [] as number[] }));
    for (let r = 0; r < args.rounds; r++) {
      for (const [i, c] of cases.entries()) {
        await setup(c);
        const t = await startStop(sb);
        times[i]?.start.push(t.start);
        times[i]?.destroy.push(t.destroy);
      }
      process.stderr.write(`round ${r + 1}/${args.rounds}\n`);
    }
    const watchKiB = await watcherRss(sb); // the last case runs it, after all the rounds
    const rss = { 1: await hookPeakRss(sb, 1), 200: await hookPeakRss(sb, 200) };
    const base = { start: median(times[0]?.start ?? []), destroy: median(times[0]?.destroy ?? []) };
    const libvirt = (await sb.exec(['virsh', '-c', 'qemu:///system', 'version'])).stdout.match(/libvirt ([\d.]+)/)?.[1] ?? '?';
    console.log(`virsh start / virsh destroy of a booted TCG guest, libvirt ${libvirt} (${args.trixie ? 'Debian 13 root' : 'Debian 12'}), medians of ${args.rounds}, cases interleaved`);
    // Paired: each round's case minus that round's no-hooks run (the rounds interleave the cases), so
    // the machine's own drift over the run cancels out; the median of those differences.
    const paired = (i: number, k: 'start' | 'destroy'): number => median((times[i]?.[k] ?? []).map((t, r) => t - (times[0]?.[k][r] ?? Number.NaN)));
    // And each round's ratio to that round's no-hooks run: its median's ~95% interval says whether a
    // ratio near the goal is a verdict or this machine's noise.
    const ratioInterval = (i: number, k: 'start' | 'destroy'): [number, number] => medianInterval((times[i]?.[k] ?? []).map((t, r) => t / (times[0]?.[k][r] ?? Number.NaN)));
    const span = ([lo, hi]: readonly [number, number]): string => `${lo.toFixed(2)}–${hi.toFixed(2)}`;
    printTable(['hooks installed', 'start ms', 'x', '+ms paired', 'x paired 95%', 'destroy ms', 'x', '+ms paired', 'x paired 95%'], cases.map((c, i) => {
      const s = median(times[i]?.start ?? []);
      const d = median(times[i]?.destroy ?? []);
      return [c.name, s.toFixed(0), (s / base.start).toFixed(2), paired(i, 'start').toFixed(0), span(ratioInterval(i, 'start')),
        d.toFixed(0), (d / base.destroy).toFixed(2), paired(i, 'destroy').toFixed(0), span(ratioInterval(i, 'destroy'))];
    }));
    for (const [n, runs] of Object.entries(rss)) {
      console.log(`virtwire, ${n} forward(s), no watcher: ${runs.length} Node run(s) in one start + destroy, peak RSS ${runs.map((k) => `${(k / 1024).toFixed(1)} MiB`).join(', ')} (goal ≤ 60 MiB)`);
    }
    console.log(`the watcher serving prepare: no Node run per start; its own RSS after all rounds ${(watchKiB / 1024).toFixed(1)} MiB`);
    const worst = cases.slice(-3).flatMap((_, j) => {
      const i = cases.length - 3 + j;
      return [median(times[i]?.start ?? []) / base.start, median(times[i]?.destroy ?? []) / base.destroy];
    });
    console.log(`verdict: virtwire's worst ratio with the watcher ${Math.max(...worst).toFixed(2)} (goal ≤ ${GOAL.toFixed(2)})`);
    for (const [j, c] of cases.slice(-3).entries()) {
      const i = cases.length - 3 + j;
      const each = (['start', 'destroy'] as const).map((k) => `${k} ${goalVerdict(ratioInterval(i, k), GOAL)} (${span(ratioInterval(i, k))})`);
      console.log(`  ${c.name}: ${each.join(', ')}`);
    }
  } finally {
    await sb.stop();
  }
}

await main();

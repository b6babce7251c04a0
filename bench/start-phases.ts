// Where a `virsh start`'s time goes, and a `virsh destroy`'s, phase by phase, with and without
// virtwire: timestamp hooks placed first and last in qemu.d (00-phase,
// zz-phase) record when libvirt ran each operation's hooks, so the paired
// difference per phase says where virtwire's cost of a start lies:
//   before prepare | prepare's hooks | prepare→start (libvirt: network port,
//   tap, cgroups) | start's hooks | start→started (QEMU launched, CPUs
//   resumed) | started's hooks | after started (virsh returns); and a
//   second later: before stopped (QEMU killed) | stopped's hooks |
//   stopped→release (libvirt's clean-up: the tap, the network port) |
//   release's hooks | after release (virsh returns).
// The timestamp hooks cost every case alike (a `date` each). Cases
// interleave per round: the timestamp hooks alone, then virtwire (its
// watcher serving, as install.sh sets it up) at each number of forwards.
// The watcher is restarted each round and warmed by --warm untimed starts
// (bench/hook-cost.ts uses 1), so a run with --warm 10 against one with
// --warm 1 shows what a watcher that has served many starts saves.
// --others N: N more VMs run (started paused: their QEMU is there, their
// CPUs idle), as on a busy host: a start checks itself against every
// running VM, from libvirt's status files.
// --ab DIR: also virtwire as built in DIR (its virtwire.mjs, qemu-hook.cjs
// and network-hook.cjs, a path in the repository: an older build, say), in
// the same rounds, so two builds compare with this machine's drift alike.
// With DIR/qemu (that build's hooks/qemu) its qemu shim too, rendered as
// install.sh renders this one's: a shim and its watcher speak one protocol.
//
// --watcher-only: also the timestamp hooks alone with the watcher running
// (no virtwire shim, no template): what its mere presence costs a start.
//
//   npm run build && npx vite-node bench/start-phases.ts [--rounds 10] [--warm 1] [--forwards 1,200] [--others 0] [--ab DIR] [--watcher-only] [--trixie]
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { sandboxWithVirtwire } from '../test/e2e/support.js';
import type { Sandbox } from '../src/demo/sandbox.js';
import { median, medianInterval, printTable } from './lib.js';
import { QEMU_D, VM, awaitNetworkHookStoodDown, keepVirtwireShims, sh, useHooks, useWatcher, virtwireTemplate } from './hook-cases.js';

const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '10' }, warm: { type: 'string', default: '1' },
  forwards: { type: 'string', default: '1,200' }, others: { type: 'string', default: '0' }, ab: { type: 'string' }, trixie: { type: 'boolean', default: false },
  'watcher-only': { type: 'boolean', default: false },
} });
const wholeArg = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} needs a whole number ≥ ${min}, got ${v}`);
  return n;
};
const args = {
  rounds: wholeArg('rounds', values.rounds, 1),
  warm: wholeArg('warm', values.warm, 0),
  forwards: (values.forwards ?? '').split(',').map((f) => wholeArg('forwards', f, 1)),
  others: wholeArg('others', values.others, 0),
  ab: values.ab,
  trixie: values.trixie === true,
  watcherOnly: values['watcher-only'] === true,
};
if (args.others > 150) throw new Error(`--others: at most 150 (their addresses are 192.168.122.100 and up), got ${args.others}`);
if (args.ab !== undefined && !/^[A-Za-z0-9._/-]+$/.test(args.ab)) throw new Error(`--ab needs a plain relative path in the repository, got ${args.ab}`);

const LOG = '/run/vw-phases.log';
/** One line per operation it runs for: "NANOSECONDS OP a|z". */
const stampHook = (where: 'a' | 'z'): string => `#!/bin/sh\ncase "$2" in prepare|start|started|stopped|release) ;; *) exit 0 ;; esac\nexec date "+%s%N $2 ${where}" >> ${LOG}\n`;
const STAMPS = { [`${QEMU_D}/00-phase`]: stampHook('a'), [`${QEMU_D}/zz-phase`]: stampHook('z') };

const PHASES = [
  'before prepare', 'prepare hooks', 'prepare→start', 'start hooks', 'start→started', 'started hooks', 'after started', 'virsh start',
  'before stopped', 'stopped hooks', 'stopped→release', 'release hooks', 'after release', 'virsh destroy',
] as const;
type Phases = Record<(typeof PHASES)[number], number>;

/**
 * 'b': the build of --ab; the cases of one build run with its bundles in place and its watcher.
 * `watcherOnly`: the timestamp hooks alone, the watcher running (what its mere presence costs a start).
 */
interface Case { name: string; forwards?: number; build?: 'a' | 'b'; watcherOnly?: boolean }
const DIST = '/usr/local/lib/virtwire/dist';
const BUNDLES = ['virtwire.mjs', 'qemu-hook.cjs', 'network-hook.cjs'];

/** One timed `virsh start`, then `virsh destroy` a second later, their phases in ms. */
async function timedStart(sb: Sandbox): Promise<Phases> {
  const out = (await sh(sb, `set -e
    : > ${LOG}
    t0=$(date +%s%N); virsh -q -c qemu:///system start "$1" >/dev/null; t1=$(date +%s%N)
    sleep 1
    t2=$(date +%s%N); virsh -q -c qemu:///system destroy "$1" >/dev/null; t3=$(date +%s%N)
    echo "$t0 virsh 0"; echo "$t2 destroy 0"; cat ${LOG}; echo "$t1 virsh 1"; echo "$t3 destroy 1"`, VM.name)).stdout.trim().split('\n');
  const at = new Map(out.map((l) => l.split(' ')).map(([ns, op, w]) => [`${op} ${w}`, Number(BigInt(ns ?? '0') / 1000n) / 1000]));
  const t = (k: string): number => {
    const v = at.get(k);
    if (v === undefined) throw new Error(`no "${k}" timestamp in this start's log:\n${out.join('\n')}`);
    return v;
  };
  return {
    'before prepare': t('prepare a') - t('virsh 0'),
    'prepare hooks': t('prepare z') - t('prepare a'),
    'prepare→start': t('start a') - t('prepare z'),
    'start hooks': t('start z') - t('start a'),
    'start→started': t('started a') - t('start z'),
    'started hooks': t('started z') - t('started a'),
    'after started': t('virsh 1') - t('started z'),
    'virsh start': t('virsh 1') - t('virsh 0'),
    'before stopped': t('stopped a') - t('destroy 0'),
    'stopped hooks': t('stopped z') - t('stopped a'),
    'stopped→release': t('release a') - t('stopped z'),
    'release hooks': t('release z') - t('release a'),
    'after release': t('destroy 1') - t('release z'),
    'virsh destroy': t('destroy 1') - t('destroy 0'),
  };
}

async function main(): Promise<void> {
  const { sb } = await sandboxWithVirtwire(args.trixie);
  try {
    await keepVirtwireShims(sb);
    await sb.defineGuest(VM);
    for (let i = 0; i < args.others; i++) {
      const other = { name: `bench-other-${i}`, mac: `52:54:00:be:01:${i.toString(16).padStart(2, '0')}`, ip: `192.168.122.${100 + i}` };
      await sb.defineGuest(other);
      await sb.virsh('start', '--paused', '--domain', other.name);
    }
    const builds = args.ab === undefined ? ['a' as const] : ['a' as const, 'b' as const];
    const cases: Case[] = [{ name: 'timestamp hooks only' }, ...(args.watcherOnly ? [{ name: 'the same, watcher running', watcherOnly: true }] : []), ...builds.flatMap((build) => args.forwards.map((n) => ({
      name: `virtwire${args.ab === undefined ? '' : ` ${build}`}, ${n} fwd`, forwards: n, build,
    })))];
    let installed: 'a' | 'b' = 'a';
    if (args.ab !== undefined) {
      await sh(sb, `mkdir -p /root/vw-dist-a /root/vw-dist-b && cd ${DIST} && cp -a ${BUNDLES.join(' ')} /root/vw-dist-a/`);
      for (const f of BUNDLES) await sh(sb, 'cp -a "$1" /root/vw-dist-b/', join(sb.repoDirInside, args.ab, f));
      await sh(sb, `cp -a /root/vw-shims/qemu /root/vw-dist-a/qemu-shim && cp -a /root/vw-shims/qemu /root/vw-dist-b/qemu-shim
        other="$1/qemu"
        [ -f "$other" ] || exit 0
        # Rendered by this build's render.sh, with the Node the installed shim names.
        hooks=$(mktemp -d) && cp "$other" "$hooks/qemu" && cp /usr/local/lib/virtwire/hooks/render.sh /usr/local/lib/virtwire/hooks/run-node.sh "$hooks/"
        node=$(sed -n "s/^node='\\(.*\\)'$/\\1/p" /root/vw-shims/qemu)
        sh "$hooks/render.sh" qemu "$node" ${DIST} > /root/vw-dist-b/qemu-shim && chmod 755 /root/vw-dist-b/qemu-shim && rm -r "$hooks"`, join(sb.repoDirInside, args.ab));
    }
    const setup = async (c: Case): Promise<void> => {
      if (c.build !== undefined && c.build !== installed) {
        await useWatcher(sb, false);
        await sh(sb, `cp -a ${BUNDLES.map((f) => `/root/vw-dist-${c.build}/${f}`).join(' ')} ${DIST}/ && cp -a /root/vw-dist-${c.build}/qemu-shim /root/vw-shims/qemu`);
        installed = c.build;
      }
      // Off for the timestamp hooks alone, so restarted each round (as in bench/hook-cost.ts), then warmed.
      const started = await useWatcher(sb, c.forwards !== undefined || c.watcherOnly === true);
      await useHooks(sb, { ...STAMPS, ...(c.forwards === undefined ? {} : { '/etc/virtwire/templates/bench.yaml': virtwireTemplate(c.forwards) }) }, c.forwards !== undefined);
      for (let i = 0; started && i < args.warm; i++) await timedStart(sb);
      await new Promise((r) => setTimeout(r, 1500)); // the watcher's re-apply after the template edit, done
      // This build's watcher stands the network hook down; the other build's (--ab) may not.
      if (c.forwards !== undefined && c.build !== 'b') await awaitNetworkHookStoodDown(sb);
    };
    const times = cases.map(() => [] as Phases[]);
    for (let r = 0; r < args.rounds; r++) {
      for (const [i, c] of cases.entries()) {
        await setup(c);
        times[i]?.push(await timedStart(sb));
      }
      process.stderr.write(`round ${r + 1}/${args.rounds}\n`);
    }
    console.log(`phases of virsh start and destroy (ms), ${args.trixie ? 'Debian 13 root' : 'Debian 12'}, medians of ${args.rounds}, watcher warmed by ${args.warm} start(s), ${args.others} other VM(s) running${args.ab === undefined ? '' : `; a: this build, b: the build in ${args.ab}`}`);
    const base = times[0] ?? [];
    printTable(['phase', ...cases.map((c) => c.name), ...cases.slice(1).map((c) => `+ms ${c.watcherOnly ? 'watcher only' : `${args.ab === undefined ? '' : `${c.build} `}${c.forwards} fwd`} (95%)`)], PHASES.map((p) => [
      p,
      ...times.map((ts) => median(ts.map((t) => t[p])).toFixed(1)),
      ...times.slice(1).map((ts) => {
        const d = ts.map((t, r) => t[p] - (base[r]?.[p] ?? Number.NaN));
        const [lo, hi] = medianInterval(d);
        return `${median(d).toFixed(1)} (${lo.toFixed(1)}…${hi.toFixed(1)})`;
      }),
    ]));
  } finally {
    await sb.stop();
  }
}

await main();

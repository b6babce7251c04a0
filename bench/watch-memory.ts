// The watcher's memory over 10,000 libvirt events (issue 12): the real
// watcher (src/cli/watch.ts, its event source src/libvirt/events.ts and its
// libvirt client) in this process, against the e2e sandbox's libvirtd, while
// domains are defined and undefined there, BURST at a time (each define and
// each undefine is one lifecycle event; every domain gets a new UUID), the
// watcher handling each half before the next: it applies the defined
// domains, then releases them. What it does per
// domain is the real apply (no template matches the churned domains, so it
// reads, plans and records nothing) and the real release of undefined
// domains; only the host reconcile is left out (it would act on this host's
// firewall). Run as root:
//   npm run bench:watch-memory -- [--trixie] [--events N]
// After each 1,000 events have been received and handled, a forced GC, then
// heap used and RSS are sampled. Verdict "steady": heap growth between the
// 2,000th and the last sample within 512 KiB — well under what remembering
// anything per event (8,000 × ≥ 64 bytes) or per domain seen (4,000 UUIDs
// plus their XML) would add.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Sandbox } from '../src/demo/sandbox.js';
import { Watcher } from '../src/cli/watch.js';
import { LibvirtClient } from '../src/libvirt/client.js';
import { EVENT_DEFAULTS, spawnEventProcess, type EventSpawner } from '../src/libvirt/events.js';
import type { Paths } from '../src/paths.js';
import { ensureTrixieRoot } from '../test/support/rootfs.js';

const EVERY = 1000;
const BOUND_KIB = 512;
/** Domains defined before the first is undefined again: a burst, as virt-manager users and scripts make. */
const BURST = 25;
const URI = 'qemu:///system';
const TEMPLATE = 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';

interface Options { trixie: boolean; events: number }

function options(): Options {
  const { values } = parseArgs({ options: { trixie: { type: 'boolean' }, events: { type: 'string' } } });
  const events = Number(values.events ?? 10_000);
  if (!Number.isInteger(events) || events < 3 * EVERY || events % EVERY !== 0) throw new Error(`--events: a multiple of ${EVERY}, at least ${3 * EVERY}`);
  return { trixie: values.trixie === true, events };
}

/** A forced full GC: node's --expose-gc, or the same switched on from here. */
function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A private Paths tree (as root under /run: virtwire refuses what lies under /tmp). */
async function benchPaths(root: string): Promise<Paths> {
  const p: Paths = {
    configFile: join(root, 'virtwire.yaml'), templatesDir: join(root, 'templates'), runDir: join(root, 'run'),
    logFile: join(root, 'virtwire.log'), libvirtRunDir: join(root, 'libvirt'), libvirtLibDir: join(root, 'libvirt-lib'), stateDir: join(root, 'state'), sysDir: '/sys', hooksDir: join(root, 'hooks.d'), pluginsDir: join(root, 'plugins'), libvirtHooksDir: join(root, 'libvirt-hooks'),
  };
  await mkdir(p.templatesDir, { recursive: true });
  await writeFile(join(p.templatesDir, 'web.yaml'), TEMPLATE);
  return p;
}

function domainXml(k: number): string {
  return `<domain type='qemu'><name>churn-${k}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>\n`;
}

/** The real client; counts the watcher's syncs (one domain list each). */
class CountingClient extends LibvirtClient {
  constructor(private readonly counted: () => void, opts: ConstructorParameters<typeof LibvirtClient>[0]) {
    super(opts);
  }

  override listDomains(): ReturnType<LibvirtClient['listDomains']> {
    this.counted();
    return super.listDomains();
  }
}

interface Sample { events: number; heapKiB: number; rssKiB: number; domainsRemembered: number }

class Bench {
  received = 0;
  syncs = 0;
  private readonly gc = gcFunction();

  constructor(private readonly sb: Sandbox, private readonly watcher: Watcher) {}

  /** Counts event lines as the watcher's own event source reads them. */
  static countingSpawner(count: (lines: number) => void): EventSpawner {
    return (command, args) => {
      const p = spawnEventProcess(command, args);
      return {
        pid: p.pid,
        onStdout: (cb) => p.onStdout((chunk) => { count(chunk.filter((b) => b === 10).length); cb(chunk); }),
        onStderr: (cb) => p.onStderr(cb),
        onExit: (cb) => p.onExit(cb),
        kill: () => p.kill(),
      };
    };
  }

  /**
   * One half of a round through libvirt (BURST defines, or their undefines),
   * then waits until the watcher has received those events and handled
   * them (a sync: the defined domains applied, the undefined released).
   */
  async step(lines: string[]): Promise<void> {
    const target = this.received + lines.length;
    const r = await this.sb.exec(['virsh', '-c', URI], { input: `${lines.join('\n')}\n`, env: { LC_ALL: 'C' }, timeoutMs: 120_000 });
    if (r.stderr.trim()) throw new Error(`virsh: ${r.stderr.trim().split('\n').slice(0, 3).join('\n')}`);
    for (const end = Date.now() + 60_000; this.received < target; await sleep(20)) {
      if (Date.now() > end) throw new Error(`the watcher received ${this.received} of ${target} events within 60 s`);
    }
    await sleep(EVENT_DEFAULTS.debounceMs + 100);
    await this.watcher.idle();
  }

  /** How many domains the watcher remembers (its per-domain state). */
  remembered(): number {
    return (Reflect.get(this.watcher, 'seen') as Map<string, string>).size;
  }

  sample(): Sample {
    this.gc();
    this.gc();
    const m = process.memoryUsage();
    return { events: this.received, heapKiB: Math.round(m.heapUsed / 1024), rssKiB: Math.round(m.rss / 1024), domainsRemembered: this.remembered() };
  }
}

function report(samples: Sample[], elapsedS: number, syncs: number, lines: number): void {
  console.log(`${'events'.padStart(7)} ${'heap used'.padStart(11)} ${'RSS'.padStart(11)}  domains remembered`);
  for (const s of samples) console.log(`${String(s.events).padStart(7)} ${`${s.heapKiB} KiB`.padStart(11)} ${`${s.rssKiB} KiB`.padStart(11)}  ${s.domainsRemembered}`);
  const from = samples.find((s) => s.events >= 2 * EVERY) ?? samples[0];
  const last = samples[samples.length - 1];
  if (!from || !last) return;
  const heap = last.heapKiB - from.heapKiB;
  const rss = last.rssKiB - from.rssKiB;
  console.log(`${last.events} events in ${elapsedS.toFixed(1)} s (${syncs} syncs, ${lines} watcher lines); growth from event ${from.events} to ${last.events}: heap ${heap >= 0 ? '+' : ''}${heap} KiB, RSS ${rss >= 0 ? '+' : ''}${rss} KiB`);
  console.log(`verdict: ${heap <= BOUND_KIB ? 'steady' : 'GROWS'} (heap growth ${heap} KiB, bound ${BOUND_KIB} KiB = under 64 bytes per event)`);
}

async function run(o: Options, sb: Sandbox, paths: Paths): Promise<void> {
  const command = ['nsenter', '-t', String(sb.initPid), '-n', '-m', '-p', '-r', '-w', '--', 'virsh'];
  let lines = 0;
  let bench: Bench | undefined;
  const watcher = new Watcher({
    uri: URI, paths, run: async () => ({ exitCode: 0, stdout: '', stderr: '' }), say: () => { lines++; },
    events: { command, spawn: Bench.countingSpawner((n) => { if (bench) bench.received += n; }) },
    deps: {
      newClient: () => new CountingClient(() => { if (bench) bench.syncs++; }, { uri: URI, command, tempDir: false }),
      reconcileHost: async () => ({ notes: [], unresolved: [] }),
    },
  });
  bench = new Bench(sb, watcher);
  const dir = join(sb.dir, 'churn');
  await mkdir(dir, { recursive: true });
  const files = await Promise.all(Array.from({ length: BURST }, async (_, k) => { const f = join(dir, `churn-${k}.xml`); await writeFile(f, domainXml(k)); return f; }));
  watcher.start();
  try {
    for (const end = Date.now() + 60_000; (Reflect.get(watcher, 'state') as { connected: boolean }).connected !== true; await sleep(100)) {
      if (Date.now() > end) throw new Error('the watcher did not connect to the sandbox libvirtd within 60 s');
    }
    const started = Date.now();
    const samples = [bench.sample()];
    let peak = 0;
    const defines = files.map((f) => `define --file ${f}`);
    const undefines = files.map((_, k) => `undefine --domain churn-${k}`);
    while (bench.received < o.events) {
      await bench.step(defines);
      peak = Math.max(peak, bench.remembered());
      await bench.step(undefines);
      if (bench.received % EVERY !== 0) continue;
      samples.push(bench.sample());
      console.log(`  ${bench.received} events handled (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    report(samples, (Date.now() - started) / 1000, bench.syncs, lines);
    console.log(`domains remembered: up to ${peak} after a burst of ${BURST} defines, ${bench.remembered()} once they are undefined`);
  } finally {
    await watcher.stop();
  }
}

async function main(): Promise<void> {
  const o = options();
  const sb = await Sandbox.start({ rootfs: o.trixie ? await ensureTrixieRoot() : undefined });
  const root = await mkdtemp('/run/vw-bench-watch-');
  try {
    console.log(`sandbox: ${o.trixie ? 'Debian 13 root (libvirt 11)' : 'Debian 12 (libvirt 9)'}; ${o.events} events, ${BURST} domains defined then undefined per round`);
    await run(o, sb, await benchPaths(root));
  } finally {
    await sb.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();

// Forward path cost (issue 12, goal 3): with many forwards installed, a new
// connection through one of them must cost what it costs with one forward,
// because virtwire's DNAT is one lookup in a map, not a rule per forward.
// Measured side by side in one run against the linear reference, one
// iptables DNAT rule per forward:
//   npm run bench:forward-path -- [--rounds N] [--seconds S] [--forwards N] [--clients N] [--in-flight N]
//   (or npx vite-node bench/forward-path.ts [options]; as root, with ip, nft and iptables)
//
// Network namespaces of its own, TEST-NET addresses only: one client, one
// server, and one router per case between them, each router holding one
// case's rules from the start (virtwire's table from the real renderTable,
// or the iptables rules), so that going from one case to the next is only a
// matter of which router address the client connects to. The client opens
// new TCP connections as fast as it can (only a connection's first packet
// goes through the nat hooks, so every one must be new) and counts those
// established. Rounds of the cases are interleaved, A B C D then D C B A.
// Each case's figure is the median of its rounds; the 1000/1 ratio that
// decides is the median of the per-round ratios (see pairedRatios): on a
// shared 2-core machine other work comes and goes within a second, so rounds
// are short (0.2 s) and many. Exits 1 when virtwire's ratio is below the
// goal, 2 when the run cannot tell (the linear reference did not slow down,
// conntrack dropped, connections failed).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { release } from 'node:os';
import { createInterface } from 'node:readline';
import { FORWARD_MAP, PORT_MAP, renderTable } from '../src/host/nft-script.js';
import type { ResolvedForward } from '../src/model/forward.js';
import { median, medianInterval } from './lib.js';

const GOAL = 0.97;
/** A linear reference keeping this share of its rate or more saw no slowdown: the generator, not the kernel path, set the rate. */
const SENSITIVE = 0.9;

const SERVER_PORT = 8080;
/** The measured forward's host port: above every other forward's, and last in both sets. */
export const MEASURED_PORT = 30000;
const OTHER_PORTS_FROM = 20000;
const MAX_FORWARDS = MEASURED_PORT - OTHER_PORTS_FROM + 1;
const CT_MARK = 0x10000000;

export interface Options {
  rounds: number;
  seconds: number;
  forwards: number;
  clients: number;
  inFlight: number;
}

const DEFAULTS: Options = { rounds: 75, seconds: 0.2, forwards: 1000, clients: 1, inFlight: 32 };
const FLAGS: Record<string, keyof Options> = {
  '--rounds': 'rounds', '--seconds': 'seconds', '--forwards': 'forwards', '--clients': 'clients', '--in-flight': 'inFlight',
};

export function parseArgs(argv: readonly string[]): Options {
  const out = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i += 2) {
    const key = FLAGS[argv[i] ?? ''];
    if (key === undefined) throw new Error(`unknown option ${JSON.stringify(argv[i])}; options: ${Object.keys(FLAGS).join(' ')}`);
    const value = Number(argv[i + 1]);
    if (!(value > 0) || (key !== 'seconds' && !Number.isInteger(value))) throw new Error(`${argv[i]} wants a positive number, found ${JSON.stringify(argv[i + 1])}`);
    out[key] = value;
  }
  if (out.forwards < 2 || out.forwards > MAX_FORWARDS) throw new Error(`--forwards: 2 to ${MAX_FORWARDS}`);
  return out;
}

/** Host ports of n forwards: n - 1 others, then the measured one, so that a scan in order meets it last. */
export function forwardPorts(n: number): number[] {
  if (!Number.isInteger(n) || n < 1 || n > MAX_FORWARDS) throw new Error(`cannot lay out ${n} forwards`);
  return [...Array.from({ length: n - 1 }, (_, i) => OTHER_PORTS_FROM + i), MEASURED_PORT];
}

/** Where one case's forwards listen (a router address) and go (the server's address and subnet on that router's link). */
export interface Path { routerAddr: string; serverAddr: string; serverSubnet: string }

/**
 * n forwards as virtwire resolves them: TCP, any source, all to the server;
 * on the router's address (`listen`: virtwire's forward map, an interval
 * map) or on every address (its port map, a hash map).
 */
export function benchForwards(n: number, path: Path, listen: boolean): ResolvedForward[] {
  return forwardPorts(n).map((port) => ({
    family: 4,
    proto: 'tcp',
    ...(listen ? { listen: path.routerAddr } : {}),
    host: { lo: port, hi: port },
    guestAddr: path.serverAddr,
    guest: { lo: SERVER_PORT, hi: SERVER_PORT },
    from: [],
    guestSubnet: path.serverSubnet,
    nic: '52:54:00:00:00:01',
    network: 'bench',
    origin: 'bench/forward-path.ts',
    allowHostConflict: false,
  }));
}

/** The linear reference as iptables-restore input: one nat PREROUTING DNAT rule per forward, same order. */
export function iptablesRules(n: number, path: Path): string {
  const rules = forwardPorts(n).map((port) =>
    `-A PREROUTING -d ${path.routerAddr}/32 -p tcp -m tcp --dport ${port} -j DNAT --to-destination ${path.serverAddr}:${SERVER_PORT}`);
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ...rules, 'COMMIT', ''].join('\n');
}

/**
 * The per-round ratios many/one, whose median decides. Round r of the two
 * cases ran back to back, so a load that comes and goes (other work on the
 * machine) hits both sides of each ratio; the ratio of the two medians can
 * pair a calm round with a busy one.
 */
export function pairedRatios(one: readonly number[], many: readonly number[]): number[] {
  if (one.length !== many.length) throw new Error('unpaired rounds');
  return one.map((x, i) => many[i]! / x);
}

/** Round r's order of the case indexes: forwards, then backwards, so no case always comes first after a pause. */
export function roundOrder(cases: number, r: number): number[] {
  const order = Array.from({ length: cases }, (_, i) => i);
  return r % 2 ? order.reverse() : order;
}

// ---- the helper processes (fixed scripts; their values come as argv or stdin) ----

/** Accepts and closes. pauseOnConnect: no read is ever started, the least work per connection Node can do. */
const SERVER_JS = `
const net = require('node:net');
const [port] = process.argv.slice(1);
net.createServer({ pauseOnConnect: true }, (s) => { s.on('error', () => {}); s.destroy(); })
  .listen({ host: '0.0.0.0', port: Number(port), backlog: 4096 }, () => process.stdout.write('ready\\n'));
`;

/**
 * One round per stdin line "HOST PORT SECONDS": keeps inFlight connections
 * being opened for that long, then, once the last one is closed (so nothing
 * spills into the next round), prints {done, failed}. Each connection is
 * reset as soon as it is established (SO_LINGER 0): no TIME_WAIT piles up in
 * the client, and the router's conntrack entry goes to CLOSE, which the
 * router forgets fast. The process lives for the whole run: no start-up or
 * cold JIT inside a round.
 */
const CLIENT_JS = `
const net = require('node:net');
const inFlight = Number(process.argv[1]);
let done = 0, failed = 0, open = 0, running = false, report = null;
function next(host, port) {
  if (!running) { if (--open === 0) report(); return; }
  const s = net.connect({ host, port });
  s.once('connect', () => { if (running) done++; s.resetAndDestroy(); });
  s.once('error', () => { if (running) failed++; });
  s.once('close', () => next(host, port));
}
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [host, port, seconds] = line.split(' ');
  done = 0; failed = 0; open = inFlight; running = true;
  report = () => process.stdout.write(JSON.stringify({ done, failed }) + '\\n');
  for (let i = 0; i < inFlight; i++) next(host, Number(port));
  setTimeout(() => { running = false; }, Number(seconds) * 1000);
});
process.stdout.write('ready\\n');
`;

// ---- namespaces, processes, cleanup ----

const prefix = `vwfp-${process.pid}`;
const CLIENT_NS = `${prefix}-client`;
const SERVER_NS = `${prefix}-server`;
const created: string[] = [];
const started = new Set<ChildProcess>();

/** Kills what this run started (by pid) and deletes its namespaces; synchronous, so it also runs from process.on('exit'). */
function cleanup(): void {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  started.clear();
  for (const ns of created.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

function run(argv: readonly string[], input?: string): string {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty command');
  try {
    return execFileSync(cmd, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${argv.join(' ')}: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

function inNs(ns: string, argv: readonly string[], input?: string): string {
  return run(['ip', 'netns', 'exec', ns, ...argv], input);
}

function addNs(name: string): string {
  run(['ip', 'netns', 'add', name]);
  created.push(name);
  inNs(name, ['ip', 'link', 'set', 'lo', 'up']);
  return name;
}

function addAddr(ns: string, dev: string, cidr: string): void {
  inNs(ns, ['ip', 'addr', 'add', cidr, 'dev', dev]);
  inNs(ns, ['ip', 'link', 'set', dev, 'up']);
}

/** virtwire's table with forwards on every address (its port map) or on one (its forward map), or the iptables reference. */
type Method = 'virtwire-port' | 'virtwire-listen' | 'iptables';
const VIRTWIRE_METHODS = ['virtwire-port', 'virtwire-listen'] as const;
interface Case { method: Method; forwards: number; name: string; router: string; path: Path }

/**
 * Case i's router sits on 198.51.100.(32i)/27 towards the client and
 * 203.0.113.(32i)/27 towards the server; the server sends each client
 * subnet back through its own router (DNAT keeps the client's address).
 */
function setupCase(i: number, method: Method, forwards: number, name: string): Case {
  const router = addNs(`${prefix}-router${i}`);
  const [outer, inner, base] = ['198.51.100', '203.0.113', 32 * i];
  const path: Path = { routerAddr: `${outer}.${base + 1}`, serverAddr: `${inner}.${base + 2}`, serverSubnet: `${inner}.${base}/27` };
  // Interface names only need to be unique inside each namespace.
  run(['ip', 'link', 'add', `vw-c${i}`, 'netns', CLIENT_NS, 'type', 'veth', 'peer', 'name', 'vw-c', 'netns', router]);
  run(['ip', 'link', 'add', `vw-s${i}`, 'netns', SERVER_NS, 'type', 'veth', 'peer', 'name', 'vw-s', 'netns', router]);
  addAddr(CLIENT_NS, `vw-c${i}`, `${outer}.${base + 2}/27`);
  addAddr(router, 'vw-c', `${path.routerAddr}/27`);
  addAddr(router, 'vw-s', `${inner}.${base + 1}/27`);
  addAddr(SERVER_NS, `vw-s${i}`, `${path.serverAddr}/27`);
  inNs(SERVER_NS, ['ip', 'route', 'add', `${outer}.${base}/27`, 'via', `${inner}.${base + 1}`]);
  inNs(router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // A reset connection's entry stays 10 s by default: at tens of thousands a
  // second the router's table would fill, and the bench would measure
  // conntrack exhaustion, not the lookup. (nf_conntrack_max is the host's.)
  inNs(router, ['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_timeout_close=1']);
  if (method === 'iptables') inNs(router, ['iptables-restore'], iptablesRules(forwards, path));
  else inNs(router, ['nft', '-f', '-'], renderTable(benchForwards(forwards, path, method === 'virtwire-listen'), CT_MARK));
  const c: Case = { method, forwards, name, router, path };
  const held = installedCount(c);
  if (held !== forwards) throw new Error(`${name}: the router holds ${held} forwards`);
  return c;
}

/** What a router really holds, so that a slip cannot turn a case into another. */
function installedCount(c: Case): number {
  if (c.method === 'iptables') {
    return inNs(c.router, ['iptables', '-t', 'nat', '-S', 'PREROUTING']).split('\n').filter((l) => l.includes('-j DNAT')).length;
  }
  const map = c.method === 'virtwire-port' ? PORT_MAP[4] : FORWARD_MAP[4];
  const json = JSON.parse(inNs(c.router, ['nft', '-j', 'list', 'map', 'inet', 'virtwire', map])) as { nftables: { map?: { elem?: unknown[] } }[] };
  return json.nftables.reduce((n, o) => n + (o.map?.elem?.length ?? 0), 0);
}

/** "nf_tables" or "legacy": what `iptables` is on this host. */
function iptablesKind(): string {
  const versions = ['iptables', 'iptables-restore'].map((cmd) => run([cmd, '--version']).trim());
  const kinds = versions.map((v) => /\((nf_tables|legacy)\)/.exec(v)?.[1]);
  if (kinds[0] === undefined || kinds[0] !== kinds[1]) throw new Error(`cannot tell which iptables this is: ${versions.join(' / ')}`);
  return kinds[0];
}

function setup(opts: Options, kind: string): Case[] {
  addNs(CLIENT_NS);
  addNs(SERVER_NS);
  // Every client port, so that a port comes round again as late as possible.
  inNs(CLIENT_NS, ['sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65535']);
  const plural = (n: number, word: string): string => `${n} ${word}${n > 1 ? 's' : ''}`;
  const specs: [Method, number, string][] = [
    ['virtwire-port', 1, `virtwire, on every address (hash map), ${plural(1, 'forward')}`],
    ['virtwire-port', opts.forwards, `virtwire, on every address (hash map), ${plural(opts.forwards, 'forward')}`],
    ['virtwire-listen', 1, `virtwire, on one address (interval map), ${plural(1, 'forward')}`],
    ['virtwire-listen', opts.forwards, `virtwire, on one address (interval map), ${plural(opts.forwards, 'forward')}`],
    ['iptables', 1, `iptables DNAT rules (${kind}), ${plural(1, 'rule')}`],
    ['iptables', opts.forwards, `iptables DNAT rules (${kind}), ${plural(opts.forwards, 'rule')}`],
  ];
  return specs.map(([method, n, name], i) => setupCase(i, method, n, name));
}

interface Helper { child: ChildProcess; lines: AsyncIterableIterator<string> }

/** Starts a helper in a namespace and waits for its "ready" line. */
async function startHelper(ns: string, script: string, args: readonly string[]): Promise<Helper> {
  // `ip netns exec` execs node in place: the pid held here is node's.
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  started.add(child);
  child.on('exit', () => started.delete(child));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done || first.value !== 'ready') throw new Error(`helper in ${ns} did not start (${first.done ? 'it exited' : first.value})`);
  return { child, lines };
}

interface Round { rate: number; failed: number }

function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function measureRound(clients: readonly Helper[], c: Case, seconds: number): Promise<Round> {
  for (const h of clients) h.child.stdin!.write(`${c.path.routerAddr} ${MEASURED_PORT} ${seconds}\n`);
  let done = 0;
  let failed = 0;
  for (const h of clients) {
    // A lost SYN is retried for minutes: give up on a round that far overdue rather than hang.
    const line = await within(h.lines.next(), (seconds + 30) * 1000, `${c.name}: a client did not report its round`);
    if (line.done) throw new Error('a client exited without its count');
    const r = JSON.parse(line.value) as { done: number; failed: number };
    done += r.done;
    failed += r.failed;
  }
  return { rate: done / seconds, failed };
}

interface Conntrack { count: number; max: number; drops: number }

const readConntrack = (router: string, key: string): number => Number(inNs(router, ['cat', `/proc/sys/net/netfilter/${key}`]).trim());
const conntrackCount = (router: string): number => readConntrack(router, 'nf_conntrack_count');

/** A router's conntrack table: entries now, its limit, and drops so far (drop, early_drop, insert_failed over all CPUs). */
function conntrack(router: string): Conntrack {
  const [head, ...rows] = inNs(router, ['cat', '/proc/net/stat/nf_conntrack']).trim().split('\n');
  const cols = (head ?? '').trim().split(/\s+/);
  const wanted = ['drop', 'early_drop', 'insert_failed'].map((k) => cols.indexOf(k)).filter((i) => i >= 0);
  const drops = rows.reduce((sum, row) => {
    const f = row.trim().split(/\s+/);
    return sum + wanted.reduce((s, i) => s + parseInt(f[i] ?? '0', 16), 0);
  }, 0);
  return { count: conntrackCount(router), max: readConntrack(router, 'nf_conntrack_max'), drops };
}

// ---- run and report ----

const ratioText = (r: number): string => `x${r.toFixed(3)}`;

interface Measured { rounds: Map<Case, Round[]>; conntrackPeak: Map<Case, number> }

async function measureAll(opts: Options, cases: readonly Case[], clients: readonly Helper[]): Promise<Measured> {
  // Warm-up: JIT, ARP, each router's first conntrack entries; not counted.
  for (const c of cases) await measureRound(clients, c, 0.5);
  const rounds = new Map<Case, Round[]>(cases.map((c) => [c, []]));
  const conntrackPeak = new Map<Case, number>(cases.map((c) => [c, 0]));
  for (let r = 0; r < opts.rounds; r++) {
    for (const i of roundOrder(cases.length, r)) {
      const c = cases[i]!;
      rounds.get(c)!.push(await measureRound(clients, c, opts.seconds));
    }
    // Between cycles, not between rounds: reading it takes a few processes, and
    // paired rounds should run back to back. Entries last 1 s, so this sees
    // nearly all a round left.
    for (const c of cases) conntrackPeak.set(c, Math.max(conntrackPeak.get(c)!, conntrackCount(c.router)));
  }
  return { rounds, conntrackPeak };
}

interface CaseConntrack { before: Conntrack; after: Conntrack; peak: number }

/** Why a case's figures would not measure the lookup. */
function caseProblems(c: Case, rounds: readonly Round[], ct: CaseConntrack): string[] {
  const out: string[] = [];
  if (ct.after.drops > ct.before.drops) out.push(`${c.name}: conntrack dropped connections (this measured conntrack, not the lookup)`);
  if (ct.peak > 0.9 * ct.after.max) out.push(`${c.name}: the conntrack table was nearly full`);
  if (rounds.some((x) => x.failed)) out.push(`${c.name}: connections failed`);
  return out;
}

function report(opts: Options, cases: readonly Case[], rounds: Map<Case, Round[]>, ct: Map<Case, CaseConntrack>): number {
  const med = new Map(cases.map((c) => [c, median(rounds.get(c)!.map((x) => x.rate))]));
  const width = Math.max(...cases.map((c) => c.name.length)) + 2;
  for (const c of cases) {
    const rs = rounds.get(c)!;
    const failed = rs.reduce((n, x) => n + x.failed, 0);
    const { before, after, peak } = ct.get(c)!;
    const rates = rs.map((x) => Math.round(x.rate));
    console.log(`${c.name.padEnd(width)} ${Math.round(med.get(c)!).toString().padStart(7)} conn/s   rounds ${Math.min(...rates)}-${Math.max(...rates)}`
      + `   conntrack peak ${peak}/${after.max}, ${after.drops - before.drops} dropped${failed ? `, ${failed} FAILED` : ''}`);
  }
  const ratios = (m: Method): { paired: number; interval: [number, number]; ofMedians: number } => {
    const [one, many] = cases.filter((c) => c.method === m);
    const rates = (c: Case | undefined): number[] => rounds.get(c!)!.map((x) => x.rate);
    const each = pairedRatios(rates(one), rates(many));
    return { paired: median(each), interval: medianInterval(each), ofMedians: med.get(many!)! / med.get(one!)! };
  };
  // The verdict reads the paired ratio (see pairedRatios); the ratio of the medians is shown beside it.
  const vws = VIRTWIRE_METHODS.map((m) => ({ m, r: ratios(m) }));
  const ipt = ratios('iptables');
  const line = (label: string, r: ReturnType<typeof ratios>, note = ''): void =>
    console.log(`${label.padEnd(width)} ${ratioText(r.paired).padStart(7)} paired (95% ${r.interval.map((x) => x.toFixed(3)).join('-')})   ${ratioText(r.ofMedians)} of medians${note}`);
  for (const { m, r } of vws) line(`${m} ${opts.forwards}/1`, r, `   (goal >= ${GOAL})`);
  line(`iptables ${opts.forwards}/1 (linear reference)`, ipt);

  const problems = [...cases.flatMap((c) => caseProblems(c, rounds.get(c)!, ct.get(c)!)),
    ...(ipt.paired >= SENSITIVE ? [`the linear reference kept ${ratioText(ipt.paired)} of its rate: the load generator, not the kernel path, set the rate`] : [])];
  if (problems.length) {
    console.log(`INCONCLUSIVE: ${problems.join('; ')}`);
    return 2;
  }
  const pass = vws.every(({ r }) => r.paired >= GOAL);
  const noise = vws.some(({ r }) => r.interval[0] < GOAL && r.interval[1] >= GOAL) ? ' (the goal is within an interval: noise could turn it; more --rounds narrow it)' : '';
  const kept = vws.map(({ m, r }) => `${ratioText(r.paired)} (${m === 'virtwire-port' ? 'on every address' : 'on one address'})`).join(' and ');
  console.log(`${pass ? 'PASS' : 'FAIL'}: virtwire with ${opts.forwards} forwards keeps ${kept} of its 1-forward rate (goal >= ${GOAL}); one iptables rule per forward keeps ${ratioText(ipt.paired)}${noise}`);
  return pass ? 0 : 1;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const kind = iptablesKind();
  const cases = setup(opts, kind);
  await startHelper(SERVER_NS, SERVER_JS, [String(SERVER_PORT)]);
  const clients = await Promise.all(Array.from({ length: opts.clients }, () => startHelper(CLIENT_NS, CLIENT_JS, [String(opts.inFlight)])));

  console.log(`forward path: new TCP connections/s through one DNAT forward, the last of its set; median of ${opts.rounds} interleaved rounds x ${opts.seconds} s`);
  console.log(`client: ${opts.clients} process(es) x ${opts.inFlight} connections in flight, each reset once established; \`iptables\` is iptables-${kind === 'nf_tables' ? 'nft' : 'legacy'}; kernel ${release()}, node ${process.version}`);
  console.log('ratio N/1 "paired": median over rounds of (N-case rate / 1-case rate of the round run next to it); "of medians": median / median');
  const before = new Map(cases.map((c) => [c, conntrack(c.router)]));
  const { rounds, conntrackPeak } = await measureAll(opts, cases, clients);
  const ct = new Map(cases.map((c) => [c, { before: before.get(c)!, after: conntrack(c.router), peak: conntrackPeak.get(c)! }]));
  return report(opts, cases, rounds, ct);
}

// The unit test imports the pure functions above; only a real run measures.
if (process.env.VITEST === undefined) {
  process.on('exit', cleanup);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(signal, () => { cleanup(); process.exit(code); });
  }
  main().then(
    (code) => { cleanup(); process.exit(code); },
    (e: unknown) => { cleanup(); console.error(`forward-path bench: ${e instanceof Error ? e.message : String(e)}`); process.exit(2); },
  );
}

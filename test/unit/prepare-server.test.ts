// The qemu shim handing `prepare` to the watcher (src/hooks/prepare-server.ts):
// the installed shim, rendered as install.sh renders it, run as libvirt runs
// it, against a real PrepareServer in this process. Node is a stand-in that
// logs each run, so "served" means: the shim exited as the handler said, and
// Node never ran. The handler is the seam (the watcher passes the hook's own
// handleQemuHook: test/e2e/hook-path.test.ts runs that on a real libvirtd).
import { ROOT, tempDir } from './helpers.js';
import { spawnOnPipe } from '../support/pipe-stdin.js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants, copyFileSync, existsSync, openSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrepareServer, applyingMarker, prepareChannel, serverStamp, type EarlyOk } from '../../src/hooks/prepare-server.js';
import { holdLocksThroughHelpers, lockAhead, withLock } from '../../src/state/lock.js';
import type { HookResult } from '../../src/hooks/qemu-handler.js';

const dir = tempDir('vw-serve-', tmpdir());
const dist = join(dir, 'dist');
mkdirSync(dist);
writeFileSync(join(dist, 'qemu-hook.cjs'), '// stand-in bundle\n');
const nodeRuns = join(dir, 'node-runs');
const node = join(dir, 'node');
// Logs its argv (the hook's NAME OP) and the XML it got on stdin.
writeFileSync(node, `#!/bin/sh\nxml=$(cat)\nprintf '%s %s %s\\n' "$4" "$5" "$(printf '%s' "$xml" | grep -o '<name>[^<]*</name>')" >> ${nodeRuns}\nexit 0\n`, { mode: 0o755 });

function render(runDir: string, timeoutS?: number): string {
  const r = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), 'qemu', node, dist, runDir, join(dir, 'virtwire.log')], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const file = join(dir, `qemu-${Math.random().toString(36).slice(2)}`);
  // A test may shorten the shim's wait for an answer (70 s) to see what follows it.
  expect(r.stdout).toContain('vw_read_answer 70\n');
  writeFileSync(file, timeoutS === undefined ? r.stdout : r.stdout.replace('vw_read_answer 70\n', `vw_read_answer ${timeoutS}\n`), { mode: 0o755 });
  return file;
}

const xmlOf = (name: string): string => `<domain type='qemu'>\n  <name>${name}</name>\n  <uuid>7e0b3a4c-1111-4222-8333-94445555aaaa</uuid>\n</domain>`;

interface ShimRun {
  /** The shell to run it with (else its #! line: dash). */
  shell?: string;
  /** Told the shim's pid (unless `wrap` puts a process before it). */
  started?: (pid: number) => void;
  /** stdin from this file, as when run by hand, instead of libvirt's pipe. */
  stdinFile?: string;
  /** A command that runs the rest of its arguments (the shim's command line). */
  wrap?: string[];
  /** libvirt keeps the pipe open this many seconds after writing the XML. */
  holdS?: number;
}

/** Runs the shim as libvirt does (no environment, XML on a pipe as stdin), without blocking this process's event loop. */
function runShim(shim: string, name: string, op = 'prepare', o: ShimRun = {}): Promise<{ status: number | null; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const cmd = [...(o.wrap ?? []), ...(o.shell ? [o.shell, shim] : [shim]), name, op, 'begin', '-'];
    const c: ChildProcess = o.stdinFile === undefined ? spawnOnPipe(cmd, xmlOf(name), { holdS: o.holdS }) : spawn('dash', ['-c', 'exec "$@" < "$0"', o.stdinFile, ...cmd], { env: {}, stdio: ['ignore', 'ignore', 'pipe'] });
    if (c.pid !== undefined) o.started?.(c.pid);
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stderr, ms: Date.now() - t0 }));
  });
}

const ran = (): string[] => (existsSync(nodeRuns) ? readFileSync(nodeRuns, 'utf8').split('\n').filter(Boolean) : []);

/**
 * The request files left in a run dir's channel, once the watcher had time
 * to free the pool slots of shims that exited: its directory's entries, the
 * pool's FIFOs (always there) not listed, its claims as "pool/K.claim".
 */
async function channelFiles(runDir: string): Promise<string[]> {
  const ch = prepareChannel(runDir);
  const pool = join(ch.dir, 'pool');
  const claims = (): string[] => (existsSync(pool) ? readdirSync(pool).filter((f) => !f.endsWith('.fifo')).map((f) => `pool/${f}`) : []);
  for (let i = 0; i < 100 && claims().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return [...readdirSync(ch.dir).filter((f) => f !== 'pool'), ...claims()].sort();
}

interface Served { xml: string[]; server: PrepareServer; errors: string[] }

const servers: PrepareServer[] = [];
async function serve(runDir: string, prepare: (xml: string, early: EarlyOk) => Promise<HookResult>, mustRunNode?: () => boolean, teardown?: (uuid: string, op: string) => Promise<boolean>, lockAhead?: () => () => Promise<void>, xmlReadMs?: number): Promise<Served & { serving: boolean }> {
  const xml: string[] = [];
  const errors: string[] = [];
  const server = new PrepareServer({
    runDir,
    prepare: (x, early) => { xml.push(x); return prepare(x, early); },
    mustRunNode,
    teardown,
    lockAhead,
    xmlReadMs,
    log: { info: () => undefined, error: (m) => errors.push(m) },
  });
  servers.push(server);
  return { xml, server, errors, serving: await server.start() };
}

afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  rmSync(nodeRuns, { force: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OK: HookResult = { exitCode: 0 };

describe('qemu prepare served by the watcher', () => {
  it('served: the shim exits 0 with no Node run, the handler got the XML, and no request files are left', async () => {
    const runDir = join(dir, 'run-ok');
    const { xml, serving, errors } = await serve(runDir, async () => OK);
    expect(serving).toBe(true);
    const r = await runShim(render(runDir), 'web-1');
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(ran()).toEqual([]);
    expect(xml, 'exactly what libvirt wrote').toEqual([xmlOf('web-1')]);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
    expect(errors).toEqual([]);
  });

  it('the ledger lock is asked for as the request arrives, before the handler runs, and dropped once the prepare is done', async () => {
    const runDir = join(dir, 'run-ahead');
    const events: string[] = [];
    await serve(runDir, async () => { events.push('handler'); return OK; }, undefined, undefined, () => { events.push('lock ahead'); return async () => { events.push('dropped'); }; });
    expect((await runShim(render(runDir), 'web-1')).status).toBe(0);
    for (let i = 0; i < 100 && events.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual(['lock ahead', 'handler', 'dropped']);
  });

  it('with the ledger lock held elsewhere, prepares that need no lock (VMs nothing concerns) are still answered at once, one after another', async () => {
    const runDir = join(dir, 'run-ahead-held');
    mkdirSync(runDir, { recursive: true });
    const lock = join(runDir, 'lock');
    holdLocksThroughHelpers(true);
    // Its own process group, so the kill below ends flock and its sleep alike.
    const holder = spawn('flock', ['-o', lock, 'sleep', '30'], { detached: true, stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      await serve(runDir, async () => OK, undefined, undefined, () => lockAhead(lock));
      const shim = render(runDir);
      for (const name of ['web-1', 'web-2', 'web-3']) {
        const r = await runShim(shim, name);
        expect(r.status, name).toBe(0);
        expect(r.ms, name).toBeLessThan(5_000);
      }
      expect(ran()).toEqual([]);
    } finally {
      process.kill(-(holder.pid as number), 'SIGKILL');
      for (const s of servers.splice(0)) await s.stop();
      holdLocksThroughHelpers(false);
    }
  });

  it('a refusal: the shim fails the start with the handler\'s one line, as the hook would, and Node never runs', async () => {
    const runDir = join(dir, 'run-refuse');
    const line = 'virtwire: VM "web-1": tcp port 8080 on every host IPv4 address is already forwarded to running VM "db-1" (template web); use another host port or stop "db-1"';
    await serve(runDir, async () => ({ exitCode: 1, stderr: line }));
    const r = await runShim(render(runDir), 'web-1');
    expect(r).toEqual({ status: 1, stderr: `${line}\n`, ms: r.ms });
    expect(ran()).toEqual([]);
  });

  it('with plugins installed the watcher answers "node": the shim runs Node, which gets the XML', async () => {
    const runDir = join(dir, 'run-plugins');
    const { xml } = await serve(runDir, async () => OK, () => true);
    const r = await runShim(render(runDir), 'web-1');
    expect(r.status).toBe(0);
    expect(xml, 'the handler is not run').toEqual([]);
    expect(ran()).toEqual(['web-1 prepare <name>web-1</name>']);
  });

  it('the handler throwing: the shim runs Node on the XML the watcher took and handed back, and no request files are left', async () => {
    const runDir = join(dir, 'run-throw');
    const { errors } = await serve(runDir, async () => { throw new Error('boom'); });
    expect(await runShim(render(runDir), 'web-1')).toMatchObject({ status: 0, stderr: '' });
    expect(ran()).toEqual(['web-1 prepare <name>web-1</name>']);
    expect(errors.join('\n')).toMatch(/serving qemu prepare: boom; the hook runs it itself/);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('libvirt never closing the XML\'s pipe: the start is refused with one line naming the VM (in the log too), Node never runs, no request files are left', async () => {
    const runDir = join(dir, 'run-unread');
    const { xml, errors } = await serve(runDir, async () => OK, undefined, undefined, undefined, 300);
    const r = await runShim(render(runDir), 'web-"1"', 'prepare', { holdS: 2 });
    const line = 'virtwire: VM "web-\\"1\\"" not started: libvirt did not finish writing its domain XML to the hook within 0.3 s; start it again';
    expect(r).toEqual({ status: 1, stderr: `${line}\n`, ms: r.ms });
    expect(r.ms, 'refused when the read gave up, not when the pipe closed').toBeLessThan(1_800);
    expect(xml, 'the handler is not run').toEqual([]);
    expect(ran()).toEqual([]);
    expect(errors).toEqual([`serving qemu prepare: ${line}`]);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('served, the XML is read by the watcher and the answer comes on a FIFO it made: a cat and a mkfifo that log their runs never run', async () => {
    const runDir = join(dir, 'run-no-cat');
    const { xml } = await serve(runDir, async () => OK);
    const log = join(dir, 'tool-runs');
    const logging = ['cat', 'mkfifo'].map((tool) => {
      const real = join(dir, `real-${tool}`);
      copyFileSync(`/usr/bin/${tool}`, real);
      const file = join(dir, `logging-${tool}`);
      writeFileSync(file, `#!/bin/sh\necho "${tool} $*" >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
      return file;
    });
    // /usr/bin/cat and mkfifo are the logging ones in a mount namespace of the shim's own; the probes show they log.
    const probes = `mkfifo ${join(dir, 'probe.fifo')} && rm ${join(dir, 'probe.fifo')} && cat /dev/null`;
    const wrap = ['unshare', '-m', '--propagation', 'private', 'dash', '-c', `mount --bind "$0" /usr/bin/cat && mount --bind "$1" /usr/bin/mkfifo && ${probes} && shift && exec "$@"`, ...logging];
    const r = await runShim(render(runDir), 'web-1', 'prepare', { wrap });
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(xml, 'exactly what libvirt wrote').toEqual([xmlOf('web-1')]);
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual([`mkfifo ${join(dir, 'probe.fifo')}`, 'cat /dev/null']);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('a PID.taken a killed shim of the same pid left (older than the request) does not keep the next one from being served', async () => {
    const runDir = join(dir, 'run-old-taken');
    const { xml } = await serve(runDir, async () => OK);
    // The shim's pid is the wrapper's: it execs the shim.
    const wrap = ['dash', '-c', 'touch -d @1 "$0/$$.taken" && exec "$@"', prepareChannel(runDir).dir];
    expect(await runShim(render(runDir), 'web-1', 'prepare', { wrap })).toMatchObject({ status: 0, stderr: '' });
    expect(xml, 'exactly what libvirt wrote').toEqual([xmlOf('web-1')]);
    expect(ran()).toEqual([]);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('a domain XML larger than a pipe holds (64 KiB): the watcher reads it whole while libvirt\'s side still writes', async () => {
    const runDir = join(dir, 'run-big');
    const { xml } = await serve(runDir, async () => OK);
    const big = `<domain type='qemu'>\n  <name>web-1</name>\n  <metadata>\n${'    <!-- a large domain -->\n'.repeat(4000)}  </metadata>\n</domain>\n`;
    expect(big.length).toBeGreaterThan(65536);
    const c = spawnOnPipe([render(runDir), 'web-1', 'prepare', 'begin', '-'], big);
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    const status = await new Promise((resolve) => c.on('close', resolve));
    expect(status, stderr).toBe(0);
    expect(xml).toEqual([big]);
    expect(ran()).toEqual([]);
  });

  it('stdin a file, not libvirt\'s pipe (the shim run by hand): the watcher leaves it, and Node reads it', async () => {
    const runDir = join(dir, 'run-file');
    const { xml } = await serve(runDir, async () => OK);
    const file = join(dir, 'by-hand.xml');
    writeFileSync(file, xmlOf('web-9'));
    expect(await runShim(render(runDir), 'web-9', 'prepare', { stdinFile: file })).toMatchObject({ status: 0, stderr: '' });
    expect(xml, 'the handler is not run').toEqual([]);
    expect(ran()).toEqual(['web-9 prepare <name>web-9</name>']);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('no watcher, one stopped, or one killed (its files left: a dead pid, or its pid reused): Node runs at once, not after the wait', async () => {
    expect((await runShim(render(join(dir, 'run-none')), 'web-1')).status).toBe(0);
    expect(ran()).toHaveLength(1);
    const runDir = join(dir, 'run-dead');
    const ch = prepareChannel(runDir);
    const { server } = await serve(runDir, async () => OK);
    const [pid, fd] = readFileSync(ch.server, 'utf8').trimEnd().split(' ');
    expect(pid).toBe(String(process.pid));
    expect(readlinkSync(`/proc/self/fd/${fd}`), 'the line names its fd of the requests FIFO').toBe(ch.requests);
    servers.splice(servers.indexOf(server), 1);
    await server.stop();
    expect([existsSync(ch.requests), existsSync(ch.server)]).toEqual([true, false]);
    const shim = render(runDir);
    const dead = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
    // The pid reused: a live process, with no such fd, or another file on it.
    for (const stamp of [`${dead} ${fd}`, `${process.pid} 987`, `${process.pid} 0`, `${process.pid}`, 'garbage']) {
      writeFileSync(ch.server, `${stamp}\n`);
      const r = await runShim(shim, 'web-2');
      expect(r.status, stamp).toBe(0);
      expect(r.ms, stamp).toBeLessThan(10_000);
    }
    expect(ran()).toHaveLength(6);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('no answer in time, the XML taken by the watcher: the shim refuses the start (it has no XML for Node) and cleans up; the late answer goes nowhere', async () => {
    const runDir = join(dir, 'run-slow');
    let finish: () => void = () => undefined;
    const { errors } = await serve(runDir, () => new Promise((resolve) => { finish = () => resolve(OK); }));
    const r = await runShim(render(runDir, 1), 'web-1').finally(() => setTimeout(() => finish(), 100));
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`virtwire: VM "web-1" not started: the watcher took its domain XML, then gave no answer in time; start it again, and see ${join(dir, 'virtwire.log')}\n`);
    expect(r.ms, 'the clock ran out, not sooner').toBeGreaterThanOrEqual(1000);
    expect(ran()).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
    expect(errors.join('\n')).toMatch(/could not answer request \d+/);
  });

  it('no answer in time from a watcher that never took the XML (alive, not serving): the shim claims its stdin and runs Node', async () => {
    const runDir = join(dir, 'run-deaf');
    const ch = prepareChannel(runDir);
    mkdirSync(ch.dir, { recursive: true, mode: 0o700 });
    // A live watcher by its stamp (this process holds the requests FIFO open), that never reads it.
    spawnSync('mkfifo', [ch.requests]);
    const held = openSync(ch.requests, constants.O_RDWR | constants.O_NONBLOCK);
    writeFileSync(ch.server, `${serverStamp(held)}\n`);
    const r = await runShim(render(runDir, 1), 'web-1').finally(() => closeSync(held));
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(r.ms).toBeGreaterThanOrEqual(1000);
    expect(ran()).toEqual(['web-1 prepare <name>web-1</name>']);
    expect(await channelFiles(runDir)).toEqual(['requests', 'server']);
  });

  /** A process's descendants' command lines, depth first. */
  const descendants = (pid: number): string[] => {
    let kids: number[] = [];
    try { kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number); } catch { /* gone */ }
    return kids.flatMap((k) => {
      let cmd = '';
      try { cmd = readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '); } catch { /* gone */ }
      return [cmd, ...descendants(k)];
    });
  };

  it.each([
    ['dash: its read, woken by the clock\'s SIGCHLD', undefined, ['sleep 70']],
    // bash's subshell for $(…), and timeout's child.
    ['bash, whose read does not wake: timeout + head', 'bash', [expect.stringMatching(/^bash \/.* web-1 prepare begin -$/), 'timeout 70 head -n 1', 'head -n 1']],
  ])('waits for its answer with no process on the way of it (%s), and leaves none behind', async (_how, shell, waiting) => {
    const runDir = join(dir, `run-wait-${shell ?? 'dash'}`);
    let shimPid = 0;
    let seen: string[] = [];
    let clockFds: string[] = [];
    await serve(runDir, async () => {
      await new Promise((r) => setTimeout(r, 150));
      seen = descendants(shimPid);
      // What the clock holds open: not the answer FIFO (a clock left behind must not look like a shim waiting).
      const kids = readFileSync(`/proc/${shimPid}/task/${shimPid}/children`, 'utf8').trim().split(' ').filter(Boolean);
      clockFds = kids.flatMap((k) => readdirSync(`/proc/${k}/fd`).map((fd) => { try { return readlinkSync(`/proc/${k}/fd/${fd}`); } catch { return ''; } }));
      return OK;
    });
    const r = await runShim(render(runDir), 'web-1', 'prepare', { shell, started: (pid) => { shimPid = pid; } });
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(seen, 'what the shim runs while it waits').toEqual(waiting);
    if (!shell) expect(clockFds.filter((f) => /\.(answer|fifo)$/.test(f))).toEqual([]);
    expect(ran()).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const clocks = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'sleep\u000070\u0000'; } catch { return false; }
    });
    expect(clocks, 'no clock left running').toEqual([]);
  });

  it('no answer in time, under bash too (timeout + head): the XML taken, the shim refuses the start', async () => {
    const runDir = join(dir, 'run-slow-bash');
    let finish: () => void = () => undefined;
    await serve(runDir, () => new Promise((resolve) => { finish = () => resolve(OK); }));
    const r = await runShim(render(runDir, 1), 'web-1', 'prepare', { shell: 'bash' }).finally(() => setTimeout(() => finish(), 100));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^virtwire: VM "web-1" not started: the watcher took its domain XML, then gave no answer in time/);
    expect(r.ms).toBeGreaterThanOrEqual(1000);
    expect(ran()).toEqual([]);
  });

  it('concurrent starts, more than the pool has slots (8): each shim gets its own answer, the ones left without a slot on a FIFO of their own', async () => {
    const runDir = join(dir, 'run-many');
    const ch = prepareChannel(runDir);
    let waitingOn: string[] = [];
    await serve(runDir, async (x) => {
      // The first answer waits until every shim asked: what they wait on then.
      if (waitingOn.length === 0) {
        for (let i = 0; i < 200 && readdirSync(ch.dir).filter((f) => f.endsWith('.answer')).length < 6; i++) await new Promise((r) => setTimeout(r, 25));
        waitingOn = [...readdirSync(join(ch.dir, 'pool')).filter((f) => f.endsWith('.claim')), ...readdirSync(ch.dir).filter((f) => f.endsWith('.answer')).map(() => 'own FIFO')];
      }
      return { exitCode: 1, stderr: `virtwire: refused ${/<name>(.*)<\/name>/.exec(x)?.[1]}` };
    });
    const shim = render(runDir);
    const names = Array.from({ length: 14 }, (_, i) => `vm-${i}`);
    const results = await Promise.all(names.map((n) => runShim(shim, n)));
    expect(results.map((r) => [r.status, r.stderr])).toEqual(names.map((n) => [1, `virtwire: refused ${n}\n`]));
    expect(waitingOn.sort()).toEqual([...Array.from({ length: 8 }, (_, k) => `${k}.claim`), ...Array<string>(6).fill('own FIFO')]);
    expect(ran()).toEqual([]);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('a second watcher does not serve while the first does, and leaves its requests alone', async () => {
    const runDir = join(dir, 'run-two');
    const first = await serve(runDir, async () => ({ exitCode: 1, stderr: 'virtwire: from the first' }));
    const second = await serve(runDir, async () => ({ exitCode: 1, stderr: 'virtwire: from the second' }));
    expect([first.serving, second.serving]).toEqual([true, false]);
    const r = await runShim(render(runDir), 'web-1');
    expect(r.stderr).toBe('virtwire: from the first\n');
  });

  it('requests left by a dead watcher: the next one answers "node" to a shim still waiting (its XML taken: left to the shim, which refuses the start) and removes a dead shim\'s files', async () => {
    const runDir = join(dir, 'run-stale');
    const ch = prepareChannel(runDir);
    mkdirSync(ch.dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(ch.dir, '4242.taken'), '');
    for (const f of ['4243.taken', '4243.xml']) writeFileSync(join(ch.dir, f), '');
    spawnSync('mkfifo', [join(ch.dir, '4242.answer'), join(ch.dir, '4243.answer')]);
    // The waiting shim: reads its answer FIFO (opened read-write, as the shim does).
    // And in the pool: a shim waiting on slot 3, and slot 5 claimed by a shim long gone.
    const pool = join(ch.dir, 'pool');
    mkdirSync(pool, { mode: 0o700 });
    spawnSync('mkfifo', [join(pool, '3.fifo'), join(pool, '5.fifo')]);
    const waiters = [join(ch.dir, '4242.answer'), join(pool, '3.fifo')].map((fifo) => {
      const w = spawn('sh', ['-c', 'exec 7<>"$1"; head -n 1 <&7', 'sh', fifo], { stdio: ['ignore', 'pipe', 'ignore'] });
      let answer = '';
      w.stdout.on('data', (d: Buffer) => { answer += d.toString(); });
      return { pid: w.pid as number, answer: new Promise<string>((resolve) => w.on('close', () => resolve(answer))) };
    });
    writeFileSync(join(pool, '3.claim'), `${waiters[1]?.pid}\n`);
    writeFileSync(join(pool, '5.claim'), `${spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim()}\n`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const past = new Date(Date.now() - 60_000);
    spawnSync('touch', ['-h', '-d', past.toISOString(), ...readdirSync(ch.dir).map((f) => join(ch.dir, f))]);
    await serve(runDir, async () => OK);
    expect(await Promise.all(waiters.map((w) => w.answer))).toEqual(['node\n', 'node\n']);
    expect(await channelFiles(runDir)).toEqual(['4242.taken', 'alive', 'requests', 'server']);
    expect(readdirSync(pool).sort(), 'every FIFO made, every claim freed').toEqual(['0.fifo', '1.fifo', '2.fifo', '3.fifo', '4.fifo', '5.fifo', '6.fifo', '7.fifo']);
  });
});

describe('an early "ok": the start goes on while the watcher applies, and the shim\'s start waits for its word', () => {
  const UUID = '7e0b3a4c-1111-4222-8333-94445555aaaa';
  /** A handler shaped like prepareVm's: under the ledger lock, claimed, then applied (or refused) once `gate` opens. */
  function applyLater(runDir: string, refusal?: string): { handler: (xml: string, early: EarlyOk) => Promise<HookResult>; open: () => void } {
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => { open = resolve; });
    const handler = (_xml: string, early: EarlyOk): Promise<HookResult> => withLock(join(runDir, 'lock'), async () => {
      early.claimed(UUID);
      await gate;
      early.settled(refusal);
      return refusal === undefined ? OK : { exitCode: 1, stderr: refusal };
    });
    return { handler, open: () => open() };
  }

  it('applied: prepare returns at the claim, start waits for the lock and goes on with no Node run; the marker is gone', async () => {
    const runDir = join(dir, 'early-ok');
    const { handler, open } = applyLater(runDir);
    await serve(runDir, handler);
    const shim = render(runDir);
    expect(await runShim(shim, 'web-1')).toMatchObject({ status: 0, stderr: '' });
    expect(readFileSync(applyingMarker(runDir, UUID), 'utf8'), 'still applying').toBe('');
    let done = false;
    const start = runShim(shim, 'web-1', 'start').finally(() => { done = true; });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(done, 'start waits while the watcher applies').toBe(false);
    open();
    expect(await start).toMatchObject({ status: 0, stderr: '' });
    expect(existsSync(applyingMarker(runDir, UUID))).toBe(false);
    expect(ran()).toEqual([]);
  });

  it('refused after the early "ok": start fails with the watcher\'s line, once; a later start is not refused by it', async () => {
    const runDir = join(dir, 'early-refused');
    const line = 'virtwire: VM "web-1": internal error: nft -f - failed (exit 1): Error: Could not process rule';
    const { handler, open } = applyLater(runDir, line);
    await serve(runDir, handler);
    const shim = render(runDir);
    expect((await runShim(shim, 'web-1')).status).toBe(0);
    const start = runShim(shim, 'web-1', 'start');
    setTimeout(open, 100);
    expect(await start).toMatchObject({ status: 1, stderr: `${line}\n` });
    expect(existsSync(applyingMarker(runDir, UUID))).toBe(false);
    expect(await runShim(shim, 'web-1', 'start')).toMatchObject({ status: 0, stderr: '' });
    expect(ran()).toEqual([]);
  });

  it('the watcher died after its "ok" (an empty marker, the lock free): start is refused, the guest never runs without its forwards', async () => {
    const runDir = join(dir, 'early-died');
    mkdirSync(prepareChannel(runDir).dir, { recursive: true });
    writeFileSync(applyingMarker(runDir, UUID), '');
    const r = await runShim(render(runDir), 'web-1', 'start');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`virtwire: VM "web-1" (${UUID}): the watcher stopped before its forwards were in place; start the VM again, and see ${join(dir, 'virtwire.log')} for why the watcher stopped\n`);
    expect(existsSync(applyingMarker(runDir, UUID))).toBe(false);
    // A name the shell does not print as it is (quotes, spaces, newlines): the UUID alone names the VM.
    writeFileSync(applyingMarker(runDir, UUID), '');
    const odd = await runShim(render(runDir), 'web "1"\n$(x)', 'start');
    expect(odd.stderr).toBe(`virtwire: VM (${UUID}): the watcher stopped before its forwards were in place; start the VM again, and see ${join(dir, 'virtwire.log')} for why the watcher stopped\n`);
  });

  it('a start aborted before its start hook: stopped removes the watcher\'s word, so it refuses no later start', async () => {
    const runDir = join(dir, 'early-aborted');
    mkdirSync(prepareChannel(runDir).dir, { recursive: true });
    writeFileSync(applyingMarker(runDir, UUID), 'virtwire: refused back then\n');
    expect(await runShim(render(runDir), 'web-1', 'stopped')).toMatchObject({ status: 0, stderr: '' });
    expect(existsSync(applyingMarker(runDir, UUID))).toBe(false);
    expect(ran()).toEqual([]);
  });
});

describe('stopped/release served by the watcher (its teardown of the VM)', () => {
  const UUID = '7e0b3a4c-1111-4222-8333-94445555aaaa';
  /** The VM's entry and teardown as prepare leaves them; `header` another VM's to make the shim's own teardown hand over to Node. */
  function ledger(runDir: string, header = `# virtwire teardown of VM ${UUID}`): string {
    mkdirSync(join(runDir, 'vms'), { recursive: true });
    mkdirSync(join(runDir, 'teardown'), { recursive: true });
    writeFileSync(join(runDir, 'vms', `${UUID}.json`), '{}\n');
    const teardown = join(runDir, 'teardown', `${UUID}.nft`);
    writeFileSync(teardown, `${header}\n`);
    return teardown;
  }

  it('done by the watcher: the shim exits 0, runs neither its own teardown nor Node', async () => {
    const runDir = join(dir, 'td-served');
    const teardown = ledger(runDir);
    const asked: string[] = [];
    await serve(runDir, async () => OK, undefined, async (uuid, op) => { asked.push(`${op} ${uuid}`); return true; });
    const shim = render(runDir);
    expect(await runShim(shim, 'web-1', 'stopped')).toMatchObject({ status: 0, stderr: '' });
    expect(asked).toEqual([`stopped ${UUID}`]);
    expect(existsSync(teardown), 'the shim did not run it itself (the stand-in removes nothing)').toBe(true);
    expect(ran()).toEqual([]);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });

  it('not done by the watcher ("node"): the shim goes on as without it — here its own teardown finds another VM\'s header and hands over to Node', async () => {
    const runDir = join(dir, 'td-declined');
    ledger(runDir, '# virtwire teardown of VM 00000000-0000-4000-8000-000000000000');
    const asked: string[] = [];
    await serve(runDir, async () => OK, undefined, async (uuid, op) => { asked.push(`${op} ${uuid}`); return false; });
    expect((await runShim(render(runDir), 'web-1', 'release')).status).toBe(0);
    expect(asked).toEqual([`release ${UUID}`]);
    expect(ran()).toEqual(['web-1 release <name>web-1</name>']);
    expect(await channelFiles(runDir)).toEqual(['alive', 'requests', 'server']);
  });
});

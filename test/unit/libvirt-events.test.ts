// src/libvirt/events.ts and event-lines.ts against the virsh output recorded
// from libvirt 9 and 11 (test/data/events/, see its README), replayed through
// an injected spawner under fake timers: partial lines, a name that spells a
// fake event, bursts, a virsh exit → backoff → reconnect, stop(). One test
// runs the real spawner on a stand-in virsh (a Node script) to prove the
// process group is killed and reaped.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineSplitter, MAX_LINE_BYTES, parseEventLine } from '../../src/libvirt/event-lines.js';
import { LibvirtEvents, STREAM_ARGS, type EventHandlers, type EventProcess, type EventTrigger } from '../../src/libvirt/events.js';
import { alive } from '../support/process.js';
import { FakeProcess } from '../support/fake-event-process.js';
import { ROOT, tempDir } from './helpers.js';

const DATA = join(ROOT, 'test', 'data', 'events');
const VERSIONS = ['libvirt9', 'libvirt11'] as const;
const rec = (file: string) => readFileSync(join(DATA, file));

function harness() {
  const spawned: FakeProcess[] = [];
  const log: string[] = [];
  const syncs: EventTrigger[][] = [];
  const handlers: EventHandlers = {
    sync: (t) => syncs.push([...t]),
    connected: () => log.push('connected'),
    reconnected: () => log.push('reconnected'),
    disconnected: (why) => log.push(`disconnected: ${why}`),
    retrying: (_why, ms) => log.push(`retry in ${ms}`),
  };
  const src = new LibvirtEvents(handlers, {
    spawn: (command, args) => {
      const p = new FakeProcess([...command, ...args]);
      spawned.push(p);
      return p;
    },
  });
  /** The latest pair: [domain stream, network stream]. */
  const pair = () => {
    const [d, n] = spawned.slice(-2);
    expect(d?.argv).toEqual(['virsh', '-c', 'qemu:///system', ...STREAM_ARGS.domain]);
    expect(n?.argv).toEqual(['virsh', '-c', 'qemu:///system', ...STREAM_ARGS.network]);
    return [d, n] as [FakeProcess, FakeProcess];
  };
  return { src, spawned, log, syncs, pair };
}

/** Feeds bytes in chunks of `size`, `gapMs` apart (fake time). */
async function feed(p: FakeProcess, bytes: Buffer, size: number, gapMs: number): Promise<void> {
  for (let i = 0; i < bytes.length; i += size) {
    p.stdout(bytes.subarray(i, i + size));
    await vi.advanceTimersByTimeAsync(gapMs);
  }
}

const lines = (b: Buffer) => b.toString('utf8').split('\n').slice(0, -1);

describe.each(VERSIONS)('recorded %s output: lines → triggers', (v) => {
  it('domain lifecycle verbs come from the end of the line, never from the name', () => {
    const verbs = lines(rec(`${v}-domain.txt`)).map((l) => parseEventLine('domain', l)?.lifecycle ?? null);
    expect(verbs).toEqual([
      'Defined', 'Resumed', 'Started', 'Shutdown', 'Stopped', 'Undefined', // the tricky name, whose text holds "Undefined Removed"
      ...Array(5).fill('Defined'), ...Array(5).fill('Undefined'),
      null, null, // "events received: 16", the empty line
    ]);
    const first = parseEventLine('domain', lines(rec(`${v}-domain.txt`))[0] as string);
    expect(first).toEqual({ kind: 'domain', event: 'lifecycle', lifecycle: 'Defined' });
    expect(Object.keys(first ?? {})).not.toContain('name');
  });

  it('network lifecycle: Stopped, Started', () => {
    expect(lines(rec(`${v}-network.txt`)).map((l) => parseEventLine('network', l) ?? null)).toEqual([
      { kind: 'network', event: 'lifecycle', lifecycle: 'Stopped' },
      { kind: 'network', event: 'lifecycle', lifecycle: 'Started' },
      null,
      null,
    ]);
  });

  it('the tricky name holds U+2028 and U+0085 but no newline byte: one line each', () => {
    const first = lines(rec(`${v}-domain.txt`))[0] as string;
    expect(first).toContain('\u2028');
    expect(first).toContain('\u0085');
    expect(first.endsWith("': Defined Added")).toBe(true);
  });

  it('splits the same lines whatever the chunking (mid-line, mid-character)', () => {
    const bytes = rec(`${v}-domain.txt`);
    for (const size of [1, 2, 3, 5, 7, 64, bytes.length]) {
      const s = new LineSplitter();
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...s.push(bytes.subarray(i, i + size)));
      expect(got, `chunks of ${size}`).toEqual(lines(bytes));
    }
  });
});

describe('lines that are not virsh\'s usual ones', () => {
  it('other event types keep their type; unknown text is still a trigger of its stream\'s kind', () => {
    expect(parseEventLine('domain', "event 'reboot' for domain 'a': x")).toEqual({ kind: 'domain', event: 'reboot' });
    expect(parseEventLine('domain', "event 'device-added' for domain 'vm': net1")).toEqual({ kind: 'domain', event: 'device-added' });
    expect(parseEventLine('domain', "event 'lifecycle' for domain 'a': Exploded")).toEqual({ kind: 'domain', event: 'lifecycle' });
    expect(parseEventLine('network', 'garbage')).toEqual({ kind: 'network', event: 'unknown' });
    expect(parseEventLine('network', "event 'lifecycle' for network a: b: Undefined")).toEqual({ kind: 'network', event: 'lifecycle', lifecycle: 'Undefined' });
  });

  it('an endless line is cut at MAX_LINE_BYTES, not kept growing', () => {
    const s = new LineSplitter();
    expect(s.push(Buffer.alloc(MAX_LINE_BYTES + 10, 0x61))).toHaveLength(1);
    expect(s.push(Buffer.from('tail\nevent\n'))).toEqual(['tail', 'event']);
  });
});

describe('LibvirtEvents (recorded streams, fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each(VERSIONS)('%s: connected after settling; a burst in partial chunks is one sync', async (v) => {
    const h = harness();
    h.src.start();
    const [dom, net] = h.pair();
    expect(h.src.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(999);
    expect(h.log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.log).toEqual(['connected']);
    expect(h.src.state).toBe('up');

    // The ten burst lines (defines, then undefines), 7 bytes every 1 ms: partial lines throughout.
    const burst = Buffer.from(lines(rec(`${v}-domain.txt`)).slice(6, 16).map((l) => `${l}\n`).join(''));
    await feed(dom, burst, 7, 1);
    expect(h.syncs).toEqual([]);
    await vi.advanceTimersByTimeAsync(200);
    expect(h.syncs).toEqual([[
      { kind: 'domain', event: 'lifecycle', lifecycle: 'Defined' },
      { kind: 'domain', event: 'lifecycle', lifecycle: 'Undefined' },
    ]]);

    net.stdout(rec(`${v}-network.txt`));
    await vi.advanceTimersByTimeAsync(200);
    expect(h.syncs[1]).toEqual([
      { kind: 'network', event: 'lifecycle', lifecycle: 'Stopped' },
      { kind: 'network', event: 'lifecycle', lifecycle: 'Started' },
    ]);
    await h.src.stop();
  });

  it('a stream that never pauses still syncs every maxWaitMs (2 s)', async () => {
    const h = harness();
    h.src.start();
    const [dom] = h.pair();
    const line = lines(rec('libvirt9-domain.txt'))[0] as string;
    const at: number[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) {
      dom.stdout(`${line}\n`);
      await vi.advanceTimersByTimeAsync(100);
      if (h.syncs.length > at.length) at.push(Date.now() - t0);
    }
    expect(at).toEqual([2000, 4000]);
    await vi.advanceTimersByTimeAsync(200);
    expect(h.syncs).toHaveLength(3);
    await h.src.stop();
  });

  it.each(VERSIONS)('%s: virsh exits → disconnected once → backoff 0.5 s doubling to 30 s → reconnected; reset after a stable connection', async (v) => {
    const h = harness();
    h.src.start();
    let [dom, net] = h.pair();
    await vi.advanceTimersByTimeAsync(1000);

    // libvirtd goes away: what both virsh processes printed, then exit 1.
    dom.stdout('events received: 16\n\n');
    dom.stderr(rec(`${v}-disconnect.stderr`));
    dom.exit('exit status 1');
    await vi.advanceTimersByTimeAsync(0);
    expect(net.killed).toBe(true);
    expect(h.log).toEqual(['connected', 'disconnected: virsh event: Disconnected from qemu:///system due to end of file', 'retry in 500']);
    expect(h.src.state).toBe('down');

    // Each attempt fails the way virsh does with no daemon listening.
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const before = h.spawned.length;
      const wait = Number(/retry in (\d+)$/.exec(h.log.at(-1) as string)?.[1]);
      delays.push(wait);
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(h.spawned).toHaveLength(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(h.spawned).toHaveLength(before + 2);
      [dom, net] = h.pair();
      dom.stderr(rec(`${v}-refused.stderr`));
      dom.exit('exit status 1');
      await vi.advanceTimersByTimeAsync(0);
      expect(net.killed).toBe(true);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(h.log.filter((l) => l.startsWith('disconnected'))).toHaveLength(1);
    expect(h.log.at(-1)).toBe('retry in 30000');

    // The daemon is back: the next pair stays up → reconnected (once).
    await vi.advanceTimersByTimeAsync(30000);
    [dom, net] = h.pair();
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.log.at(-1)).toBe('reconnected');
    expect(h.log.filter((l) => l === 'reconnected')).toHaveLength(1);

    // Lost again before it was stable (30 s): the backoff keeps growing…
    net.stderr(rec(`${v}-disconnect.stderr`));
    net.exit();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.log.slice(-2)).toEqual(['disconnected: virsh net-event: Disconnected from qemu:///system due to end of file', 'retry in 30000']);
    await vi.advanceTimersByTimeAsync(30000);
    [dom, net] = h.pair();
    // …but a connection that lasts 30 s resets it.
    await vi.advanceTimersByTimeAsync(1000 + 30000);
    dom.exit();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.log.at(-1)).toBe('retry in 500');
    await h.src.stop();
  });

  it('a first connection that fails is reported as disconnected, with virsh\'s reason on one line', async () => {
    const h = harness();
    h.src.start();
    const [dom] = h.pair();
    dom.stderr(rec('libvirt11-refused.stderr'));
    dom.exit('exit status 1');
    await vi.advanceTimersByTimeAsync(0);
    expect(h.log).toEqual([
      "disconnected: virsh event ended (exit status 1): failed to connect to the hypervisor | Failed to connect socket to '/run/virtwire-no-such.sock': No such file or directory",
      'retry in 500',
    ]);
    await vi.advanceTimersByTimeAsync(500);
    h.pair();
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.log.at(-1)).toBe('connected');
    await h.src.stop();
  });

  it('stop() kills both streams, drops a pending sync, spawns nothing more, and waits for the exits', async () => {
    const h = harness();
    h.src.start();
    const [dom, net] = h.pair();
    await vi.advanceTimersByTimeAsync(1000);
    dom.stdout(rec('libvirt9-domain.txt'));
    let stopped = false;
    const p = h.src.stop().then(() => (stopped = true));
    expect([dom.killed, net.killed]).toEqual([true, true]);
    await p;
    expect(stopped).toBe(true);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(h.spawned).toHaveLength(2);
    expect(h.syncs).toEqual([]);
    expect(h.log).toEqual(['connected']);
    expect(h.src.state).toBe('stopped');
  });

  it('a handler that throws does not stop the source', async () => {
    const errors: unknown[] = [];
    const spawned: FakeProcess[] = [];
    const src = new LibvirtEvents(
      { sync: () => { throw new Error('boom'); }, handlerError: (e) => errors.push(e) },
      { spawn: (c, a) => { const p = new FakeProcess([...c, ...a]); spawned.push(p); return p; } },
    );
    src.start();
    await vi.advanceTimersByTimeAsync(1000);
    for (let i = 0; i < 2; i++) {
      spawned[0]?.stdout("event 'lifecycle' for domain 'a': Defined Added\n");
      await vi.advanceTimersByTimeAsync(200);
    }
    expect(errors).toHaveLength(2);
    expect(src.state).toBe('up');
    await src.stop();
  });
});

describe('the real spawner', () => {
  it('runs the command with -c URI and the stream args, reads its lines, and kills and reaps its process group on stop()', async () => {
    // A stand-in virsh: prints the recording, forks a grandchild that sleeps
    // (as `nsenter --pid` forks virsh), then waits forever.
    const dir = tempDir();
    const script = join(dir, 'fake-virsh.cjs');
    writeFileSync(script, `
      const fs = require('fs');
      const { spawn } = require('child_process');
      fs.writeFileSync(${JSON.stringify(join(dir, 'argv-'))} + process.argv[4], JSON.stringify(process.argv.slice(2)));
      const kid = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      fs.writeFileSync(${JSON.stringify(join(dir, 'kid-'))} + process.argv[4], String(kid.pid));
      if (process.argv[4] === 'event') process.stdout.write(fs.readFileSync(${JSON.stringify(join(DATA, 'libvirt9-domain.txt'))}).subarray(0, 300));
      setInterval(() => {}, 1000);
    `);
    const syncs: EventTrigger[][] = [];
    let connected = false;
    const src = new LibvirtEvents({ sync: (t) => syncs.push([...t]), connected: () => (connected = true) }, { command: [process.execPath, script], uri: 'test:///x', settleMs: 300 });
    src.start();
    const deadline = Date.now() + 10_000;
    while ((!connected || syncs.length === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(connected).toBe(true);
    expect(syncs[0]).toEqual([{ kind: 'domain', event: 'lifecycle', lifecycle: 'Defined' }, { kind: 'domain', event: 'lifecycle', lifecycle: 'Resumed' }]);
    expect(JSON.parse(readFileSync(join(dir, 'argv-net-event'), 'utf8'))).toEqual(['-c', 'test:///x', ...STREAM_ARGS.network]);
    const children = src.pids;
    const grandchildren = ['event', 'net-event'].map((k) => Number(readFileSync(join(dir, `kid-${k}`), 'utf8')));
    expect(children).toHaveLength(2);
    expect([...children, ...grandchildren].every(alive)).toBe(true);
    await src.stop();
    // stop() resolves once both children have exited and Node has reaped
    // them: not even a zombie is left. The grandchildren died with their
    // process group (their reaper is PID 1, which may take a moment).
    expect(children.filter(alive)).toEqual([]);
    const dead = (pid: number) => !alive(pid) || /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    for (let i = 0; i < 100 && !grandchildren.every(dead); i++) await new Promise((r) => setTimeout(r, 20));
    expect(grandchildren.filter((p) => !dead(p))).toEqual([]);
  });
});

// A test "LAN" for a Sandbox (src/demo/sandbox.ts): another network namespace
// with its own DHCP server, joined to the sandbox host netns by a veth — the
// wire a host NIC would be plugged into. For e2e tests of bindings that put a
// guest straight on that wire: a host Linux bridge (<interface type='bridge'>)
// or macvtap (<interface type='direct'>).
//
//   sandbox host netns (vw-h-…)                      LAN netns (vw-l-PID-HEX)
//   [br-lan] ── lan0  <──────── veth ────────>  eth0 198.51.100.1/24
//   (bridge: optional)                            dnsmasq -k: DHCP, fixed dhcp-host=MAC,IP only
//                                           (hairpin: eth0 is a hairpin port of br0,
//                                            which holds the address and dnsmasq)
//
// The sandbox side gets no address unless asked (sandboxAddress: on the
// bridge, else on the uplink); addShim() adds a macvlan "host shim" with one
// when the sandbox itself must reach macvtap guests.
//
// Lifetime: the LAN netns is named vw-l-PID-HEX and registered with
// sb.adoptNetns(), so sb.stop() — and, after a killed run, the next
// Sandbox.cleanupStale() — kill what still runs in it (by pid) and delete it.
// close() does all of that earlier. dnsmasq runs in the foreground under
// `setpriv --pdeathsig KILL` (it dies with the test runner), tracked by its
// pid (`ip netns exec` execs it, so the spawned pid is dnsmasq's).
// Second line of defence: an owner record /tmp/virtwire-lan-NETNS.json, swept
// by cleanupStaleLans() (every addLan calls it). Needed because a
// cleanupStale() from code without adoptNetns (another checkout on the same
// machine) deletes a dead run's sandbox dir, and with it the adoption record,
// but not the vw-l netns (seen here: a concurrent run of another worktree did
// exactly that).
//
// No traffic leaves the namespaces: the LAN netns has no other link and no
// route beyond its /24.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { HTTP_GET_JS, type ExecOptions, type ExecResult, type Sandbox } from '../../src/demo/sandbox.js';
import { alive } from './process.js';

export interface LanHost {
  mac: string;
  ip: string;
}

export interface LanOptions {
  /** The veth end in the sandbox host netns (default 'lan0'). */
  uplink?: string;
  /**
   * Name of a host Linux bridge to create in the sandbox host netns with the
   * uplink enslaved (for <interface type='bridge'><source bridge=…/>). Omit it
   * to leave the uplink bare (for macvtap: <source dev=UPLINK mode=…/>).
   */
  bridge?: string;
  /** The LAN netns's own address, CIDR (default '198.51.100.1/24'); dnsmasq serves that /24 (prefix must be 24). */
  address?: string;
  /**
   * An address (CIDR, in the LAN's /24) for the sandbox host netns: on the
   * bridge if there is one, else on the uplink itself — where, with macvtap,
   * it reaches the LAN but not the macvtap guests (use addShim for those).
   * Default: none.
   */
  sandboxAddress?: string;
  /** Fixed leases: dnsmasq hands out nothing else (a `static` range). */
  hosts?: LanHost[];
  /**
   * Make the LAN side a VEPA-capable switch: a bridge (br0) in the LAN netns
   * with the veth end as a port in hairpin mode (802.1Qbg reflective relay),
   * the address and dnsmasq on br0. Frames that arrive on the port can go
   * back out of it, so macvtap/macvlan devices in mode vepa on the uplink
   * reach each other through the LAN. Default false: a plain veth end.
   */
  hairpin?: boolean;
}

export interface Lan {
  /** The LAN's netns (vw-l-PID-HEX). */
  readonly netns: string;
  /** The veth end in the sandbox host netns. */
  readonly uplink: string;
  /** The host bridge in the sandbox host netns, if asked for. */
  readonly bridge: string | undefined;
  /** The LAN side reflects frames back to the uplink (LanOptions.hairpin). */
  readonly hairpin: boolean;
  /** The LAN netns's address (no prefix), also the DHCP server and the router it offers. */
  readonly address: string;
  readonly prefixLength: number;
  /** dnsmasq's host pid. */
  readonly dnsmasqPid: number;
  /** dnsmasq's lease file and log (in sb.dir). */
  readonly leaseFile: string;
  readonly logFile: string;
  /** Runs argv in the LAN netns (host filesystem, like Sandbox.clientExec). */
  exec(argv: string[], o?: ExecOptions): Promise<ExecResult>;
  /** HTTP GET / from the LAN netns; returns the body, throws with the reason. */
  httpGet(ip: string, port: number, timeoutMs?: number): Promise<string>;
  /** The lease file's lines ("EXPIRY MAC IP NAME CLIENTID"). */
  leases(): Promise<string[]>;
  /**
   * A macvlan on the uplink in the sandbox host netns with `address` (CIDR),
   * mode bridge by default: how a host reaches its own macvtap guests (the
   * lower device itself cannot). Removed by removeShim() or close().
   */
  addShim(name: string, address: string, mode?: 'bridge' | 'vepa' | 'private'): Promise<void>;
  removeShim(name: string): Promise<void>;
  /** Kills dnsmasq (by pid), deletes the LAN netns (and with it the veth), the bridge and shims. Idempotent. */
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IP4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** The LAN side of the veth, inside the LAN netns. */
const LAN_IF = 'eth0';
/** The LAN netns's bridge with hairpin: true. */
const LAN_BR = 'br0';
const DNSMASQ_START_MS = 10_000;
const RECORD_PREFIX = 'virtwire-lan-';
const LAN_NETNS_RE = /^vw-l-\d+-[0-9a-f]+$/;

interface LanRecord { netns: string; pidns: string; pid: number; start: string }

/** Start time of a process (field 22 of /proc/PID/stat), '' if it does not exist: pids get reused. */
async function processStart(pid: number): Promise<string> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat ? (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '') : '';
}

const recordFile = (netns: string) => path.join('/tmp', `${RECORD_PREFIX}${netns}.json`);

/**
 * Deletes the LAN netns (killing, by pid, what still runs in them) of owner
 * records whose process is gone — only records made in this PID namespace
 * (a pid means nothing elsewhere) — and those records. Returns the netns removed.
 */
export async function cleanupStaleLans(): Promise<string[]> {
  const removed: string[] = [];
  const ourPidns = await fs.readlink('/proc/self/ns/pid').catch(() => '');
  for (const f of await fs.readdir('/tmp').catch(() => [] as string[])) {
    if (!f.startsWith(RECORD_PREFIX) || !f.endsWith('.json')) continue;
    let r: LanRecord;
    try {
      r = JSON.parse(await fs.readFile(path.join('/tmp', f), 'utf8')) as LanRecord;
    } catch {
      continue;
    }
    if (r.pidns !== ourPidns || !LAN_NETNS_RE.test(r.netns) || (await processStart(r.pid)) === r.start) continue;
    if (await fs.stat(`/run/netns/${r.netns}`).catch(() => undefined)) {
      const pids = await execa('ip', ['netns', 'pids', r.netns], { timeout: 10_000, reject: false, stdin: 'ignore' });
      for (const p of (pids.stdout ?? '').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      const del = await execa('ip', ['netns', 'del', r.netns], { timeout: 10_000, reject: false, stdin: 'ignore' });
      if (del.exitCode === 0) removed.push(r.netns);
    }
    await fs.rm(path.join('/tmp', f), { force: true });
  }
  return removed;
}

async function ip(args: string[]): Promise<void> {
  const r = await execa('ip', args, { timeout: 15_000, reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`lan: ip ${args.join(' ')} failed: ${r.stderr.trim() || r.exitCode}`);
}


function checkName(what: string, name: string): void {
  if (!IFNAME.test(name)) throw new Error(`lan: ${what} ${JSON.stringify(name)} is not a valid interface name (1-15 of [A-Za-z0-9_.-])`);
}

/** Builds the LAN (see the file comment). Tear down with close(); sb.stop() does it too. */
export async function addLan(sb: Sandbox, opts: LanOptions = {}): Promise<Lan> {
  const uplink = opts.uplink ?? 'lan0';
  const bridge = opts.bridge;
  checkName('uplink', uplink);
  if (bridge !== undefined) checkName('bridge', bridge);
  const cidr = opts.address ?? '198.51.100.1/24';
  const [address = '', prefix = ''] = cidr.split('/');
  const m = IP4.exec(address);
  if (!m || prefix !== '24') throw new Error(`lan: address ${JSON.stringify(cidr)} must be an IPv4 /24, e.g. 198.51.100.1/24`);
  const net24 = `${m[1]}.${m[2]}.${m[3]}.`;
  const hosts = opts.hosts ?? [];
  const hairpin = !!opts.hairpin;
  const sandboxAddress = opts.sandboxAddress;
  if (sandboxAddress !== undefined && (!sandboxAddress.startsWith(net24) || !sandboxAddress.endsWith('/24') || !IP4.test(sandboxAddress.slice(0, -3)))) {
    throw new Error(`lan: sandboxAddress ${JSON.stringify(sandboxAddress)} is not an address/24 in ${net24}0/24`);
  }
  const lanIf = hairpin ? LAN_BR : LAN_IF;
  for (const h of hosts) {
    if (!MAC.test(h.mac)) throw new Error(`lan: host MAC ${JSON.stringify(h.mac)} is not aa:bb:cc:dd:ee:ff`);
    if (!IP4.test(h.ip) || !h.ip.startsWith(net24)) throw new Error(`lan: host IP ${JSON.stringify(h.ip)} is not in ${net24}0/24`);
  }

  await cleanupStaleLans();
  const id = randomBytes(3).toString('hex');
  const netns = `vw-l-${process.pid}-${id}`;
  const leaseFile = path.join(sb.dir, `lan-${id}.leases`);
  const logFile = path.join(sb.dir, 'logs', `lan-${id}-dnsmasq.log`);
  const shims = new Set<string>();
  let dnsmasqPid = 0;
  let closing: Promise<void> | undefined;
  const h = sb.hostNetns;

  const exec = async (argv: string[], o: ExecOptions = {}): Promise<ExecResult> => {
    const timeoutMs = o.timeoutMs ?? 60_000;
    const base = { timeout: timeoutMs, reject: false, extendEnv: false, env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', ...o.env } } as const;
    const r = await execa('ip', ['netns', 'exec', netns, ...argv], o.input === undefined ? { ...base, stdin: 'ignore' } : { ...base, input: o.input });
    const res: ExecResult = { stdout: r.stdout, stderr: r.stderr, exitCode: r.timedOut ? 124 : (r.exitCode ?? 128) };
    if (res.exitCode !== 0 && o.reject !== false) {
      const why = res.exitCode === 124 ? `timed out after ${timeoutMs} ms` : `exit ${res.exitCode}`;
      throw new Error(`lan ${netns}: ${JSON.stringify(argv)} failed (${why}): ${(res.stderr || res.stdout).trim()}`);
    }
    return res;
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (dnsmasqPid && alive(dnsmasqPid)) {
        try {
          process.kill(dnsmasqPid, 'SIGTERM');
        } catch {
          /* gone */
        }
        for (let i = 0; i < 50 && alive(dnsmasqPid); i++) await sleep(50);
        if (alive(dnsmasqPid)) process.kill(dnsmasqPid, 'SIGKILL');
      }
      // Deleting the netns destroys the veth pair (both ends) with it.
      await execa('ip', ['netns', 'del', netns], { timeout: 15_000, reject: false, stdin: 'ignore' });
      // Best effort: the sandbox may already be gone (then so are these links).
      for (const s of shims) await execa('ip', ['-n', h, 'link', 'del', s], { timeout: 15_000, reject: false, stdin: 'ignore' });
      if (bridge !== undefined) await execa('ip', ['-n', h, 'link', 'del', bridge], { timeout: 15_000, reject: false, stdin: 'ignore' });
      await fs.rm(recordFile(netns), { force: true });
    })();
    return closing;
  };

  const lan: Lan = {
    netns, uplink, bridge, hairpin, address, prefixLength: 24, leaseFile, logFile,
    get dnsmasqPid() {
      return dnsmasqPid;
    },
    exec,
    async httpGet(host: string, port: number, timeoutMs = 5000): Promise<string> {
      const r = await exec([process.execPath, '-e', HTTP_GET_JS, host, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
      return r.stdout;
    },
    async leases(): Promise<string[]> {
      return (await fs.readFile(leaseFile, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    },
    async addShim(name: string, shimAddress: string, mode: 'bridge' | 'vepa' | 'private' = 'bridge'): Promise<void> {
      checkName('shim', name);
      shims.add(name);
      await ip(['-n', h, 'link', 'add', 'link', uplink, 'name', name, 'type', 'macvlan', 'mode', mode]);
      await ip(['-n', h, 'addr', 'add', shimAddress, 'dev', name]);
      await ip(['-n', h, 'link', 'set', name, 'up']);
    },
    async removeShim(name: string): Promise<void> {
      checkName('shim', name);
      shims.delete(name);
      await ip(['-n', h, 'link', 'del', name]);
    },
    close,
  };

  const record: LanRecord = { netns, pidns: await fs.readlink('/proc/self/ns/pid'), pid: process.pid, start: await processStart(process.pid) };
  await fs.writeFile(recordFile(netns), JSON.stringify(record));
  try {
    await ip(['netns', 'add', netns]);
    await sb.adoptNetns(netns);
    await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', h, 'link', 'add', uplink, 'type', 'veth', 'peer', 'name', LAN_IF, 'netns', netns]);
    if (hairpin) {
      await ip(['-n', netns, 'link', 'add', LAN_BR, 'type', 'bridge', 'stp_state', '0']);
      await ip(['-n', netns, 'link', 'set', LAN_IF, 'master', LAN_BR]);
      await ip(['-n', netns, 'link', 'set', LAN_IF, 'type', 'bridge_slave', 'hairpin', 'on']);
      await ip(['-n', netns, 'link', 'set', LAN_BR, 'up']);
    }
    await ip(['-n', netns, 'addr', 'add', cidr, 'dev', lanIf]);
    await ip(['-n', netns, 'link', 'set', LAN_IF, 'up']);
    if (bridge !== undefined) {
      // No STP: the port forwards at once (STP would hold it in listening/learning for 2 × forward_delay).
      await ip(['-n', h, 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0']);
      await ip(['-n', h, 'link', 'set', uplink, 'master', bridge]);
      await ip(['-n', h, 'link', 'set', bridge, 'up']);
    }
    await ip(['-n', h, 'link', 'set', uplink, 'up']);
    if (sandboxAddress !== undefined) await ip(['-n', h, 'addr', 'add', sandboxAddress, 'dev', bridge ?? uplink]);

    await fs.mkdir(path.dirname(logFile), { recursive: true });
    const args = [
      '--keep-in-foreground',
      '--conf-file=/dev/null', // no /etc/dnsmasq.conf or conf-dir
      '--port=0', // DHCP only, no DNS
      `--interface=${lanIf}`,
      '--bind-interfaces',
      '--pid-file=', // none: tracked by the spawned pid
      // Stay root:root. Any change of uid/gid clears the parent-death signal
      // (checked: with dnsmasq's default group "dip" it outlived a SIGKILLed
      // test runner); and it writes its lease file in sb.dir.
      '--user=root',
      '--group=root',
      `--dhcp-range=${net24}0,static,255.255.255.0,1h`,
      ...hosts.map((x) => `--dhcp-host=${x.mac.toLowerCase()},${x.ip}`),
      '--dhcp-authoritative',
      `--dhcp-leasefile=${leaseFile}`,
      `--log-facility=${logFile}`,
      '--log-dhcp',
    ];
    const errLog = openSync(path.join(sb.dir, 'logs', `lan-${id}-dnsmasq.stderr`), 'a');
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'ip', 'netns', 'exec', netns, 'dnsmasq', ...args], {
      stdio: ['ignore', errLog, errLog],
    });
    closeSync(errLog);
    child.unref();
    let exited: string | undefined;
    child.on('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
    child.on('error', (e) => (exited = e.message));
    dnsmasqPid = child.pid ?? 0;
    if (!dnsmasqPid) throw new Error('lan: could not spawn setpriv/ip/dnsmasq');

    // Ready once its DHCP socket (udp/67) is open in the LAN netns.
    const deadline = Date.now() + DNSMASQ_START_MS;
    for (;;) {
      if (exited) {
        const err = await fs.readFile(path.join(sb.dir, 'logs', `lan-${id}-dnsmasq.stderr`), 'utf8').catch(() => '');
        throw new Error(`lan: dnsmasq ${exited}: ${err.trim()}`);
      }
      const ss = await execa('ip', ['netns', 'exec', netns, 'ss', '-Hlun', 'sport = :67'], { timeout: 10_000, reject: false, stdin: 'ignore' });
      if (ss.stdout.trim()) break;
      if (Date.now() > deadline) throw new Error(`lan: dnsmasq (pid ${dnsmasqPid}) opened no DHCP socket within ${DNSMASQ_START_MS / 1000} s; see ${logFile}`);
      await sleep(50);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return lan;
}

/**
 * macvtap char devices are named /dev/tapIFINDEX, and libvirt opens exactly
 * that path ("/dev/tap%d" in libvirt.so). ifindex is per netns but /dev
 * (devtmpfs) is one for the whole machine, in both sandbox modes: two
 * sandboxes running macvtap guests at the same time get macvtaps with the
 * same low ifindex, and the node belongs to whichever was made first
 * (checked: with two netns each holding a macvtap of index 4242,
 * /dev/tap4242 was 246:1, the second's sysfs said 246:2; deleting the first
 * removed the node). libvirt in the second sandbox then hands QEMU the other
 * sandbox's queue, or finds no node. Returns one line per macvtap in the
 * sandbox host netns whose /dev node is not its own; [] when all are.
 */
export async function macvtapNodeClashes(sb: Sandbox): Promise<string[]> {
  const list = (await execa('ip', ['-n', sb.hostNetns, '-o', 'link', 'show', 'type', 'macvtap'], { timeout: 15_000 })).stdout;
  const clashes: string[] = [];
  for (const m of list.matchAll(/^(\d+): ([^@:\s]+)[@:]/gm)) {
    const [, index, name] = m;
    const own = (await sb.exec(['cat', `/sys/class/net/${name}/macvtap/tap${index}/dev`], { reject: false })).stdout.trim();
    const st = await sb.exec(['stat', '-c', '%t %T', `/dev/tap${index}`], { reject: false });
    const node = st.exitCode === 0 ? st.stdout.trim().split(' ').map((h) => parseInt(h, 16)).join(':') : '(no node)';
    if (node !== own) clashes.push(`${name}: /dev/tap${index} is ${node}, its own device is ${own || '(unknown)'} — another netns's macvtap with ifindex ${index} owns the node`);
  }
  return clashes;
}

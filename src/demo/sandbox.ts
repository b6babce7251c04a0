// A private libvirtd for `virtwire demo` and the e2e tests, in its own network,
// mount and PID namespaces, plus a "client" netns that plays a remote user.
// Test-only helpers built on it live in test/support/ (sandbox-traffic.ts,
// rootfs.ts for the Debian 13 root passed as `rootfs`).
//
//   client netns (vw-c-…)            sandbox host netns (vw-h-…)
//   eth0 192.0.2.2/24  <── veth ──>  uplink0 192.0.2.1/24   virbr0 192.168.122.1/24 ── guests
//        2001:db8:77::2/64                   2001:db8:77::1/64      fd00:77::1/64 (start({ipv6: true}))
//
// Neither netns has a route anywhere else: test traffic cannot leave them.
// sandbox-init.sh is PID 1 of the sandbox PID namespace; killing it tears
// down every daemon and QEMU inside, and with them the private mount
// namespace, so stop() never has anything to unmount on the host.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { create } from 'xmlbuilder2';
import { guestDomainXml, guestLabel } from './domain-xml.js';
import { ensureGuestImage, GUEST_READY_PREFIX } from './guest-image.js';

export interface SandboxStartOptions {
  /** A prepared Debian 13 root (e.g. from ensureTrixieRoot()): run its libvirt 11 instead of the host's. */
  rootfs?: string;
  /** Repo seen inside at /opt/virtwire-src in rootfs mode (default: this project's root). */
  repoDir?: string;
  /** Keep the temp dir (logs, overlay upper dirs) after stop(). */
  keep?: boolean;
  /**
   * Give the `default` network an IPv6 range too (fd00:77::/64, DHCPv6 +
   * router advertisements, <nat ipv6='yes'/>; see sandbox-init.sh), and boot
   * guests from the image that holds udhcpc6 (its first build reads Debian
   * 13's package list, see guest-image.ts).
   */
  ipv6?: boolean;
}

export interface ExecOptions {
  input?: string;
  /** Default 120 s. The command is killed (TERM, then KILL 5 s later) when it runs out. */
  timeoutMs?: number;
  /** Throw on non-zero exit (default true). */
  reject?: boolean;
  env?: Record<string, string>;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface GuestSpec {
  name: string;
  mac: string;
  /** The DHCP reservation, e.g. 192.168.122.10. */
  ip: string;
  /** vw.name the guest reports (default guestLabel(name)). */
  label?: string;
  /** IPv4:PORT the guest keeps fetching as a client (waitForGuestFetch reads the answers). */
  fetch?: string;
  /**
   * false: define the guest without its DHCP reservations (something else,
   * e.g. `virtwire apply`, must reserve `ip` — and `ip6` — before the start). Default true.
   */
  reserve?: boolean;
  /** libvirt network the NIC is attached to (default: 'default'; reservations are made only on 'default'). */
  network?: string;
  /**
   * The guest's DHCPv6 reservation, e.g. fd00:77::10 (needs start({ipv6: true})).
   * Reserved as <host id='00:03:00:01:MAC' name=DOMAIN-NAME ip=…/>: busybox
   * udhcpc6 identifies itself by that DUID-LL, and virtwire finds a guest's
   * IPv6 reservation by name= (libvirt's IPv6 <host> has no MAC). dnsmasq can
   * also match a name-only entry, but only by the client's FQDN option, which
   * udhcpc6 always sends empty (checked in the sandbox).
   * Boot such a guest once per sandbox: udhcpc6 picks a random IAID on every
   * run, and dnsmasq keeps the reserved address leased to the previous
   * (DUID, IAID) for the lease time (1 day), so a second boot gets an address
   * from the range and guestReady() fails saying so (checked in the sandbox).
   */
  ip6?: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INIT_SCRIPT = path.join(HERE, 'sandbox-init.sh');
const PROJECT_ROOT = path.resolve(HERE, '..', '..');
// vw-h: sandbox host, vw-c: client, vw-l: a test LAN (test/support/lan.ts, registered with adoptNetns).
const NETNS_RE = /^vw-[hcl]-(\d+)-[0-9a-f]+$/;
/** In DIR: more netns (one name a line) that stop() and cleanupStale() remove with the sandbox (adoptNetns). */
const ADOPTED_NETNS_FILE = 'NETNS';
const TMP_PREFIX = 'virtwire-sandbox-';
/** In a temp dir stop() kept on purpose (keep: true): cleanupStale() leaves it alone. */
const KEPT_MARK = 'KEPT';
const PATH_INSIDE = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const START_TIMEOUT_MS = 180_000;

// Small tools the client helpers run with `node -e` (argv, never a shell);
// test/support/sandbox-traffic.ts runs them from the sandbox host too.
export const HTTP_GET_JS = `
const [host, port, ms] = process.argv.slice(1);
const req = require('http').get({ host, port: Number(port), path: '/', timeout: Number(ms) }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => (body += c));
  res.on('end', () => { process.stdout.write(body); process.exit(res.statusCode === 200 ? 0 : 3); });
});
req.on('timeout', () => { console.error('timeout after ' + ms + ' ms'); process.exit(2); });
req.on('error', (e) => { console.error(e.message); process.exit(1); });
`;
export const UDP_JS = `
const [host, port, payload, ms] = process.argv.slice(1);
const s = require('dgram').createSocket(require('net').isIPv6(host) ? 'udp6' : 'udp4');
const send = () => s.send(payload, Number(port), host);
s.on('message', (m) => { process.stdout.write(m.toString()); process.exit(0); });
s.on('error', (e) => { console.error(e.message); process.exit(1); });
send();
setInterval(send, 500); // UDP: resend until an answer or the deadline
setTimeout(() => { console.error('no UDP answer within ' + ms + ' ms'); process.exit(2); }, Number(ms));
`;

/**
 * The sandboxes of this process not yet stopped, and one synchronous 'exit'
 * listener that stops them: the last resort when a test run ends without
 * stop() (crash, forgotten afterAll). A SIGKILLed runner is handled by
 * --kill-child / pdeathsig (the sandbox dies with it) and cleanupStale()
 * (its netns). Kept on `process`, not in this module: the e2e files run one
 * after another in one forked process, each with its own copy of this module
 * (vitest isolates files), and a listener per copy piled up
 * (MaxListenersExceededWarning at the 11th file).
 */
export function liveSandboxes(): Set<{ stopSync(): void }> {
  const holder = process as unknown as Record<symbol, Set<{ stopSync(): void }> | undefined>;
  const key = Symbol.for('virtwire.sandbox.live');
  let live = holder[key];
  if (!live) {
    const set = new Set<{ stopSync(): void }>();
    holder[key] = live = set;
    process.on('exit', () => {
      for (const s of set) s.stopSync();
    });
  }
  return live;
}

const OWNER_FILE = 'OWNER';

interface Owner { pidns: string; pid: number; start: string; hostNetns: string; clientNetns: string }

/** Start time of a process (field 22 of /proc/PID/stat), '' if it does not exist: pids get reused. */
function processStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const o = JSON.parse(text) as Owner;
    return typeof o.pidns === 'string' && Number.isInteger(o.pid) ? o : undefined;
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function adoptedNetns(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync(path.join(dir, ADOPTED_NETNS_FILE), 'utf8');
  } catch {
    /* none adopted */
  }
  return text.split('\n').filter((ns) => NETNS_RE.test(ns));
}

/** Kills (SIGKILL, by pid) whatever still runs in netns `ns`, then deletes it. Returns whether it was deleted. */
async function killAndDeleteNetns(ns: string): Promise<boolean> {
  const pids = await execa('ip', ['netns', 'pids', ns], { timeout: 10_000, reject: false, stdin: 'ignore' });
  for (const p of (pids.stdout ?? '').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const del = await execa('ip', ['netns', 'del', ns], { timeout: 10_000, reject: false, stdin: 'ignore' });
  return del.exitCode === 0;
}

async function ip(args: string[]): Promise<void> {
  const r = await execa('ip', args, { timeout: 15_000, reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`sandbox: ip ${args.join(' ')} failed: ${r.stderr.trim() || r.exitCode}`);
}

async function childPid(parent: number): Promise<number | undefined> {
  for (const e of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await fs.readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    // Field 4 (ppid) follows the ")" that closes the command name.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === parent) return Number(e);
  }
  return undefined;
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

function assertIp4(ip4: string): void {
  if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(ip4)) throw new Error(`sandbox: ${JSON.stringify(ip4)} is not an IPv4 address`);
}

function assertIp6(ip6: string): void {
  if (!isIPv6(ip6) || ip6 !== ip6.toLowerCase() || /(^|:)0[0-9a-f]/.test(ip6)) {
    throw new Error(`sandbox: ${JSON.stringify(ip6)} is not an IPv6 address in the short form the guest prints (e.g. fd00:77::10)`);
  }
}

/** DUID-LL (RFC 8415 type 3, hardware type 1) of a MAC: what busybox udhcpc6 sends as its client id. */
export function duidLL(mac: string): string {
  return `00:03:00:01:${mac.toLowerCase()}`;
}

export class Sandbox {
  readonly hostAddress = '192.0.2.1';
  readonly hostAddress6 = '2001:db8:77::1';
  readonly clientAddress = '192.0.2.2';
  readonly clientAddress6 = '2001:db8:77::2';
  /** Where the repo is seen inside the sandbox. */
  readonly repoDirInside: string;
  /** 'debian12' runs the host's libvirt; 'rootfs' the root given to start(). */
  readonly mode: 'debian12' | 'rootfs';
  /** Host pid of sandbox-init.sh (PID 1 of the sandbox PID namespace). */
  initPid = 0;
  private stopping: Promise<void> | undefined;
  private readonly guests = new Map<string, { label: string; ip: string; ip6?: string; serialLog: string }>();

  private constructor(
    /** The sandbox's temp dir (same path inside and outside). */
    readonly dir: string,
    readonly hostNetns: string,
    readonly clientNetns: string,
    readonly rootfs: string | undefined,
    readonly repoDir: string,
    private readonly keep: boolean,
    /** The default network has an IPv6 range (start({ipv6: true})). */
    readonly ipv6: boolean,
  ) {
    this.mode = rootfs ? 'rootfs' : 'debian12';
    this.repoDirInside = rootfs ? '/opt/virtwire-src' : repoDir;
  }

  static async start(opts: SandboxStartOptions = {}): Promise<Sandbox> {
    if (process.getuid?.() !== 0) {
      throw new Error('Sandbox.start: must run as root (it creates network namespaces and runs libvirtd). Fix: run the e2e tests as root.');
    }
    await Sandbox.cleanupStale();
    if (opts.rootfs) {
      const st = await fs.stat(path.join(opts.rootfs, 'etc')).catch(() => undefined);
      if (!st?.isDirectory()) throw new Error(`Sandbox.start: rootfs ${opts.rootfs} is not a prepared root (no etc/). Fix: build it with ensureTrixieRoot().`);
    }
    const id = randomBytes(3).toString('hex');
    const dir = await fs.mkdtemp(path.join('/tmp', `${TMP_PREFIX}${process.pid}-`));
    // QEMU runs as libvirt-qemu and must traverse DIR to reach the guest image.
    await fs.chmod(dir, 0o755);
    const sb = new Sandbox(dir, `vw-h-${process.pid}-${id}`, `vw-c-${process.pid}-${id}`, opts.rootfs, opts.repoDir ?? PROJECT_ROOT, !!opts.keep, !!opts.ipv6);
    const owner: Owner = {
      pidns: await fs.readlink('/proc/self/ns/pid'), pid: process.pid, start: processStart(process.pid),
      hostNetns: sb.hostNetns, clientNetns: sb.clientNetns,
    };
    await fs.writeFile(path.join(dir, OWNER_FILE), JSON.stringify(owner));
    liveSandboxes().add(sb);
    try {
      await sb.setupNetns();
      await sb.launchInit();
    } catch (err) {
      await sb.stop();
      throw err;
    }
    return sb;
  }

  private async setupNetns(): Promise<void> {
    const h = this.hostNetns;
    const c = this.clientNetns;
    await ip(['netns', 'add', h]);
    await ip(['netns', 'add', c]);
    await ip(['-n', h, 'link', 'set', 'lo', 'up']);
    await ip(['-n', c, 'link', 'set', 'lo', 'up']);
    await ip(['-n', h, 'link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c]);
    await ip(['-n', h, 'addr', 'add', `${this.hostAddress}/24`, 'dev', 'uplink0']);
    await ip(['-n', h, 'addr', 'add', `${this.hostAddress6}/64`, 'dev', 'uplink0', 'nodad']);
    await ip(['-n', c, 'addr', 'add', `${this.clientAddress}/24`, 'dev', 'eth0']);
    await ip(['-n', c, 'addr', 'add', `${this.clientAddress6}/64`, 'dev', 'eth0', 'nodad']);
    await ip(['-n', h, 'link', 'set', 'uplink0', 'up']);
    await ip(['-n', c, 'link', 'set', 'eth0', 'up']);
  }

  private async launchInit(): Promise<void> {
    const args = [this.dir];
    if (this.rootfs) args.push(this.rootfs, this.repoDir);
    const log = openSync(path.join(this.dir, 'init.log'), 'a');
    // setpriv --pdeathsig: if this Node process dies, unshare gets SIGKILL;
    // --kill-child then SIGKILLs PID 1, which ends the whole PID namespace.
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig', 'KILL',
        'nsenter', `--net=/run/netns/${this.hostNetns}`, '--',
        'unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc', '--',
        'bash', INIT_SCRIPT, ...args,
      ],
      { stdio: ['ignore', log, log], env: { PATH: PATH_INSIDE, LC_ALL: 'C', HOME: '/root', ...(this.ipv6 ? { VW_SANDBOX_IPV6: '1' } : {}) } },
    );
    closeSync(log);
    child.unref();
    let exited: string | undefined;
    child.on('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
    child.on('error', (e) => (exited = e.message));
    const unsharePid = child.pid;
    if (!unsharePid) throw new Error('Sandbox.start: could not spawn setpriv/nsenter/unshare (util-linux installed?)');

    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!this.initPid) this.initPid = (await childPid(unsharePid)) ?? 0;
      if (await fs.stat(path.join(this.dir, 'ready')).catch(() => undefined)) {
        if (!this.initPid) throw new Error('Sandbox.start: sandbox is ready but its init pid was not found');
        return;
      }
      const failed = await fs.readFile(path.join(this.dir, 'failed'), 'utf8').catch(() => undefined);
      if (failed !== undefined || exited) {
        throw new Error(
          `Sandbox.start: sandbox-init.sh failed: ${failed?.trim() ?? exited}\n` +
            `--- init.log\n${await tail(path.join(this.dir, 'init.log'))}\n` +
            `--- libvirtd.log\n${await tail(path.join(this.dir, 'logs', 'libvirtd.log'), 15)}`,
        );
      }
      await sleep(100);
    }
    throw new Error(
      `Sandbox.start: not ready within ${START_TIMEOUT_MS / 1000} s\n--- init.log\n${await tail(path.join(this.dir, 'init.log'))}`,
    );
  }

  // ------------------------------------------------------------- running things

  /** Runs argv inside the sandbox (its netns, mount ns, PID ns and root). */
  async exec(argv: string[], o: ExecOptions = {}): Promise<ExecResult> {
    if (!this.initPid || this.stopping) throw new Error(`sandbox.exec(${argv[0]}): sandbox is not running`);
    const timeoutMs = o.timeoutMs ?? 120_000;
    const secs = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
    // Inner `timeout` kills the real command; the execa timeout is the backstop
    // for nsenter itself.
    const full = ['-t', String(this.initPid), '-n', '-m', '-p', '-r', '-w', '--', 'timeout', '-k', '5', secs, ...argv];
    return this.run('nsenter', full, argv, o, timeoutMs + 10_000);
  }

  /** virsh on the sandbox's qemu:///system, bounded (a blocked hook holds libvirt's job lock). */
  async virsh(...args: string[]): Promise<ExecResult> {
    return this.exec(['timeout', '60', 'virsh', '-c', 'qemu:///system', ...args], { env: { LC_ALL: 'C' }, timeoutMs: 70_000 });
  }

  /** Runs argv in the client netns (host filesystem, host processes' view). */
  async clientExec(argv: string[], o: ExecOptions = {}): Promise<ExecResult> {
    const timeoutMs = o.timeoutMs ?? 60_000;
    return this.run('ip', ['netns', 'exec', this.clientNetns, ...argv], argv, o, timeoutMs);
  }

  private async run(cmd: string, args: string[], argv: string[], o: ExecOptions, timeoutMs: number): Promise<ExecResult> {
    const base = { timeout: timeoutMs, reject: false, extendEnv: false, env: { PATH: PATH_INSIDE, HOME: '/root', ...o.env } } as const;
    const r = await execa(cmd, args, o.input === undefined ? { ...base, stdin: 'ignore' } : { ...base, input: o.input });
    const res: ExecResult = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? (r.timedOut ? 124 : 128) };
    if (r.timedOut) res.exitCode = 124;
    if (res.exitCode !== 0 && o.reject !== false) {
      const why = res.exitCode === 124 ? `timed out after ${timeoutMs} ms` : `exit ${res.exitCode}`;
      throw new Error(`sandbox: ${JSON.stringify(argv)} failed (${why}): ${(res.stderr || res.stdout).trim()}`);
    }
    return res;
  }

  /** HTTP GET / from the client netns; returns the body, throws with the reason. */
  async clientHttpGet(host: string, port: number, timeoutMs = 5000): Promise<string> {
    const r = await this.clientExec([process.execPath, '-e', HTTP_GET_JS, host, String(port), String(timeoutMs)], {
      timeoutMs: timeoutMs + 10_000,
    });
    return r.stdout;
  }

  /** Sends payload to host:port/udp from the client netns (resending every 0.5 s); returns the first answer. */
  async clientUdp(host: string, port: number, payload: string, timeoutMs = 5000): Promise<string> {
    const r = await this.clientExec([process.execPath, '-e', UDP_JS, host, String(port), payload, String(timeoutMs)], {
      timeoutMs: timeoutMs + 10_000,
    });
    return r.stdout;
  }

  // ------------------------------------------------------------- guests

  /**
   * Reserves g.ip for g.mac on the default network, defines and starts the
   * test guest, and waits for its READY line with that ip.
   */
  async bootGuest(g: GuestSpec): Promise<void> {
    await this.defineGuest(g);
    await this.startGuest(g.name);
  }

  /**
   * What bootGuest does before `virsh start`: the DHCP reservation(s) and
   * `virsh define` (the domain is then shut off; start it with startGuest).
   */
  async defineGuest(g: GuestSpec): Promise<void> {
    assertIp4(g.ip);
    if (g.ip6 !== undefined) {
      assertIp6(g.ip6);
      if (!this.ipv6) throw new Error(`sandbox: guest ${g.name} asks for IPv6 ${g.ip6}, but the sandbox was started without ipv6: true`);
    }
    const image = await this.guestImage();
    if ((g.network ?? 'default') === 'default' && g.reserve !== false) await this.reserve(g.mac, g.ip);
    if (g.ip6 !== undefined && g.reserve !== false) await this.reserve6(g.name, g.mac, g.ip6);
    const label = g.label ?? guestLabel(g.name);
    const serialDir = path.join(this.dir, 'serial');
    await fs.mkdir(serialDir, { recursive: true, mode: 0o755 });
    const serialLog = path.join(serialDir, `${label}.log`);
    const xml = guestDomainXml({ name: g.name, mac: g.mac, network: g.network, label, serialLog, fetch: g.fetch, ip6: g.ip6 !== undefined, ...image });
    const xmlFile = path.join(this.dir, `domain-${label}.xml`);
    await fs.writeFile(xmlFile, xml);
    await this.virsh('define', '--file', xmlFile);
    this.guests.set(g.name, { label, ip: g.ip, ip6: g.ip6, serialLog });
  }

  /** Starts an already booted-once guest again and waits until it is READY. */
  async startGuest(name: string, timeoutMs = 90_000): Promise<void> {
    const g = this.guest(name);
    // A fresh log, so the READY line found is this boot's.
    await fs.rm(g.serialLog, { force: true });
    await this.virsh('start', '--domain', name);
    await this.guestReady(name, timeoutMs);
  }

  /** virsh destroy; returns how long it took (ms). */
  async destroyGuest(name: string): Promise<number> {
    const t = Date.now();
    await this.virsh('destroy', '--domain', name);
    return Date.now() - t;
  }

  /**
   * Waits for `VIRTWIRE-GUEST-READY name=<label> ip=<reserved ip>` (plus
   * ` ip6=<reserved IPv6>` for a guest with ip6) on the guest's console.
   */
  async guestReady(name: string, timeoutMs = 90_000): Promise<{ label: string; ip: string; ip6?: string }> {
    const g = this.guest(name);
    const want = `${GUEST_READY_PREFIX} name=${g.label} ip=${g.ip}${g.ip6 !== undefined ? ` ip6=${g.ip6}` : ''}`;
    const deadline = Date.now() + timeoutMs;
    // Only complete lines count: the log is read while the guest writes it.
    const ready = new RegExp(`${GUEST_READY_PREFIX} name=(\\S*) ip=(\\S*)(?: ip6=(\\S*))?\\r?\\n`);
    let text = '';
    while (Date.now() < deadline) {
      text = await fs.readFile(g.serialLog, 'latin1').catch(() => '');
      const m = ready.exec(text);
      if (m && m[1] === g.label && m[2] === g.ip && (m[3] ?? undefined) === g.ip6) return { label: g.label, ip: g.ip, ip6: g.ip6 };
      if (m) {
        throw new Error(
          `sandbox: guest ${name} came up as name=${m[1]} ip=${m[2] || '(none)'}${m[3] !== undefined ? ` ip6=${m[3] || '(none)'}` : ''}, ` +
            `expected ${want.slice(GUEST_READY_PREFIX.length + 1)} ` +
            `(DHCP reservation not applied, or another guest's serial log?)\n${this.logTail(text)}`,
        );
      }
      await sleep(100);
    }
    const state = await this.virsh('domstate', '--domain', name).then((r) => r.stdout.trim(), (e: Error) => e.message);
    throw new Error(
      `sandbox: guest ${name} printed no "${want}" within ${timeoutMs / 1000} s (domstate: ${state}). ` +
        `Serial log ${g.serialLog}:\n${this.logTail(text)}\nSee also ${this.dir}/logs/ and /var/log/libvirt/qemu/ inside the sandbox.`,
    );
  }

  /** The file a guest's serial console is written to (its READY line, and the `fetch` answers, land there). */
  consoleLog(name: string): string {
    return this.guest(name).serialLog;
  }

  private logTail(text: string): string {
    return text.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '').split('\n').slice(-25).join('\n');
  }

  private guest(name: string) {
    const g = this.guests.get(name);
    if (!g) throw new Error(`sandbox: no guest ${JSON.stringify(name)} was booted with bootGuest()`);
    return g;
  }

  /**
   * The test guest's kernel and initrd, staged in the sandbox's dir (the same
   * path inside and out): for domains defined by other means than
   * defineGuest, e.g. virt-install's --boot kernel=…,initrd=….
   */
  async guestImage(): Promise<{ kernel: string; initrd: string }> {
    // Copied (not hard-linked) into DIR: DIR is visible inside in both modes,
    // and libvirt's dynamic ownership chowns kernel/initrd while a guest runs.
    const dst = { kernel: path.join(this.dir, 'image', 'vmlinuz'), initrd: path.join(this.dir, 'image', 'initrd.gz') };
    if (await fs.stat(dst.initrd).catch(() => undefined)) return dst;
    const src = await ensureGuestImage(undefined, { ipv6: this.ipv6 });
    await fs.mkdir(path.dirname(dst.kernel), { recursive: true, mode: 0o755 });
    await fs.copyFile(src.kernel, dst.kernel);
    await fs.copyFile(src.initrd, dst.initrd);
    return dst;
  }

  private async reserve(mac: string, ip4: string): Promise<void> {
    const net = (await this.virsh('net-dumpxml', '--network', 'default')).stdout;
    const m = mac.toLowerCase();
    const existing = new RegExp(`<host\\b[^>]*mac=['"]${m}['"][^>]*>`, 'i').exec(net)?.[0];
    if (existing?.includes(`'${ip4}'`) || existing?.includes(`"${ip4}"`)) return;
    const host = create().ele('host', { mac: m, ip: ip4 }).end({ headless: true });
    await this.virsh('net-update', '--network', 'default', '--command', existing ? 'modify' : 'add', '--section', 'ip-dhcp-host', '--xml', host, '--live', '--config');
  }

  /**
   * The IPv6 reservation: <host id=DUID-LL(mac) name=NAME ip=IP6/> in the
   * default network's IPv6 <ip> (the second one: --parent-index 1).
   */
  private async reserve6(name: string, mac: string, ip6: string): Promise<void> {
    const net = (await this.virsh('net-dumpxml', '--network', 'default')).stdout;
    const id = duidLL(mac);
    const existing = new RegExp(`<host\\b[^>]*id=['"]${id}['"][^>]*>`, 'i').exec(net)?.[0];
    if (existing?.includes(`ip='${ip6}'`) && existing.includes(`name='${name}'`)) return;
    const host = create().ele('host', { id, name, ip: ip6 }).end({ headless: true });
    await this.virsh('net-update', '--network', 'default', '--command', existing ? 'modify' : 'add', '--section', 'ip-dhcp-host',
      '--xml', host, '--parent-index', '1', '--live', '--config');
  }

  // ------------------------------------------------------------- teardown

  /**
   * Ties a netns made outside this class (e.g. a test LAN, vw-l-PID-…) to the
   * sandbox's lifetime: stop() and, after a killed run, cleanupStale() kill
   * what still runs in it (by pid) and delete it. Deleting it earlier is fine.
   */
  async adoptNetns(ns: string): Promise<void> {
    if (!NETNS_RE.test(ns)) throw new Error(`sandbox.adoptNetns: ${JSON.stringify(ns)} is not a vw-[hcl]-PID-HEX name`);
    await fs.appendFile(path.join(this.dir, ADOPTED_NETNS_FILE), `${ns}\n`);
  }

  /** Destroys the guests, kills the sandbox (PID 1 ⇒ whole PID namespace), deletes both netns (and adopted ones) and DIR. Idempotent. */
  async stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.initPid && pidAlive(this.initPid)) {
      // Destroy first so hooks see a normal stop; bounded, best effort.
      const list = await this.execInternal(['virsh', '-c', 'qemu:///system', 'list', '--name'], 15_000);
      for (const name of list.split('\n').map((s) => s.trim()).filter(Boolean)) {
        await this.execInternal(['virsh', '-c', 'qemu:///system', 'destroy', '--domain', name], 15_000);
      }
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      for (let i = 0; i < 100 && pidAlive(this.initPid); i++) await sleep(50);
    }
    for (const ns of [this.hostNetns, this.clientNetns]) {
      await execa('ip', ['netns', 'del', ns], { timeout: 15_000, reject: false, stdin: 'ignore' });
    }
    for (const ns of adoptedNetns(this.dir)) {
      if ((await fs.stat(`/run/netns/${ns}`).catch(() => undefined)) !== undefined) await killAndDeleteNetns(ns);
    }
    if (this.keep) await fs.writeFile(path.join(this.dir, KEPT_MARK), '');
    else await fs.rm(this.dir, { recursive: true, force: true });
    liveSandboxes().delete(this);
  }

  /** exec for teardown: never throws, returns stdout. */
  private async execInternal(argv: string[], timeoutMs: number): Promise<string> {
    const r = await execa(
      'nsenter',
      ['-t', String(this.initPid), '-n', '-m', '-p', '-r', '-w', '--', 'timeout', '-k', '2', String(timeoutMs / 1000), ...argv],
      { timeout: timeoutMs + 5000, reject: false, stdin: 'ignore', extendEnv: false, env: { PATH: PATH_INSIDE, LC_ALL: 'C' } },
    );
    return r.stdout ?? '';
  }

  /** Synchronous teardown for process 'exit' (no destroy: the kill ends every guest). */
  stopSync(): void {
    if (this.initPid) {
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const ns of [this.hostNetns, this.clientNetns]) spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000, stdio: 'ignore' });
    for (const ns of adoptedNetns(this.dir)) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { timeout: 10_000, encoding: 'utf8' }).stdout ?? '';
      for (const p of pids.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000, stdio: 'ignore' });
    }
    if (this.keep) writeFileSync(path.join(this.dir, KEPT_MARK), '');
    else rmSync(this.dir, { recursive: true, force: true });
    liveSandboxes().delete(this);
  }

  /**
   * Removes what a killed test run left: vw-h-PID-… / vw-c-PID-… netns (and
   * the vw-l-… ones adoptNetns() recorded) and /tmp/virtwire-sandbox-PID-…
   * dirs whose PID is dead, killing (by pid) any process still inside such a netns.
   */
  /**
   * Removes what a killed run left: its temp dir and its two netns. Only
   * sandboxes whose OWNER file says they were made in this PID namespace by a
   * process that no longer exists: /tmp is shared with sandboxes nested in
   * other PID namespaces (the demo inside the e2e sandbox), where a pid means
   * something else — judging those would delete a live sandbox's overlays.
   */
  static async cleanupStale(): Promise<string[]> {
    const removed: string[] = [];
    const ourPidns = await fs.readlink('/proc/self/ns/pid').catch(() => '');
    for (const d of await fs.readdir('/tmp').catch(() => [] as string[])) {
      if (!d.startsWith(TMP_PREFIX)) continue;
      const dir = path.join('/tmp', d);
      const owner = parseOwner(await fs.readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => ''));
      if (!owner || owner.pidns !== ourPidns || processStart(owner.pid) === owner.start) continue;
      if (await fs.stat(path.join(dir, KEPT_MARK)).catch(() => undefined)) continue;
      for (const ns of [owner.hostNetns, owner.clientNetns, ...adoptedNetns(dir)]) {
        if (!NETNS_RE.test(ns)) continue;
        if (await killAndDeleteNetns(ns)) removed.push(ns);
      }
      await fs.rm(dir, { recursive: true, force: true });
      removed.push(dir);
    }
    return removed;
  }

}

// Test-only (the e2e suite; the demo runs the host's own libvirt).
// Builds (once) and caches a Debian 13 "trixie" root holding libvirt 11 + QEMU 10
// + Node 20, so the e2e sandbox can test virtwire against libvirt 11 and its
// nftables firewall backend on a Debian 12 machine (LIBVIRT-NOTES.md, "Testing
// libvirt 11 and its nftables backend from a Debian 13 root").
//
// The sandbox enters the root with pivot_root (not chroot: under chroot QEMU
// cannot make its mount namespace private and passt cannot create its user
// namespace), normally through an overlay so a run never modifies the cache.
//
// Crash safety: the root is built in `<cacheDir>.tmp-<pid>`, renamed to
// cacheDir, and only then is the ready marker written (atomically). A root
// without the marker, or with a marker from another recipe version, is rebuilt.
//
// Keyed by TRIXIE_ROOT_RECIPE (how the root is made) and TRIXIE_ROOT_PACKAGES
// (what is in it). A root of the current recipe that lacks packages added to
// the list since is extended, not rebuilt: copied to `<cacheDir>.tmp-<pid>`,
// the missing packages installed there, then swapped in like a new build
// (seconds instead of a debootstrap). A root is never changed in place: other
// test runs may have it mounted as an overlay's lower layer, whose changes
// overlayfs leaves undefined; the previous root is deleted only when no
// process names it in its argv (else the next build removes it).
// Every step that mounts something (debootstrap, apt in the chroot) runs inside
// `unshare --mount --pid`, so a crash leaves no mount and no daemon behind.
// Concurrent builders are serialised by `<cacheDir>.lock` (O_EXCL, holding the
// builder's pid and start time; a lock whose process is gone is stale).
import { constants as fsc, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { findDebianMirror } from '../../src/demo/debian-mirror.js';

export const DEFAULT_TRIXIE_ROOT = '/var/cache/virtwire/trixie-root';

/** Bump whenever anything the build puts into the root changes: cached roots are then rebuilt. */
export const TRIXIE_ROOT_RECIPE = 1;

/** Written last, inside the root, once the root is complete. JSON, see TrixieRootInfo. */
export const TRIXIE_ROOT_MARKER = '.virtwire-root-ready';

export const TRIXIE_SUITE = 'trixie';

/**
 * Installed with --no-install-recommends. Deliberately absent:
 * - iptables, so libvirt's automatic backend choice would also be nftables
 *   (network.conf pins it anyway);
 * - libvirt-daemon-system: its service glue expects a running systemd.
 * systemd itself still gets unpacked (libvirt-daemon-driver-qemu needs
 * systemd-container, polkitd needs a logind); its postinst is harmless in a chroot
 * and nothing runs it.
 * libvirt-daemon-config-network only ships /usr/share/libvirt/networks/default.xml
 * (its postinst's copy under /etc is removed again).
 */
export const TRIXIE_ROOT_PACKAGES: readonly string[] = [
  'libvirt-daemon',
  'libvirt-daemon-driver-qemu',
  'libvirt-daemon-driver-network',
  'libvirt-daemon-config-network',
  'libvirt-clients',
  'qemu-system-x86',
  'nftables',
  'dnsmasq-base',
  'iproute2',
  'passt',
  'nodejs',
  'busybox-static',
  'ca-certificates',
  // The watcher's e2e tests create VMs the way virt-install does (Python; no iptables).
  'virtinst',
  // test/support/ovs.ts: ovsdb-server + ovs-vswitchd (userspace datapath) inside
  // the sandbox, and the ovs-vsctl libvirt runs for <virtualport type='openvswitch'/>.
  // Its postinst would start the daemons: policy-rc.d (see aptScript's callers) stops that.
  'openvswitch-switch',
];

/** Inside the root: the stock NAT network, for `virsh net-define`. */
export const ROOT_DEFAULT_NETWORK_XML = '/usr/share/libvirt/networks/default.xml';

/** Inside the root: an empty directory to pivot_root onto (`pivot_root . oldroot`). */
export const ROOT_PUT_OLD = '/oldroot';

export interface TrixieRootInfo {
  recipe: number;
  suite: string;
  mirror: string;
  builtAt: string;
  buildSeconds: number;
  /** Disk usage of the finished root (du -sxB1). */
  sizeBytes: number;
  packages: string[];
  /** Installed versions of the packages that matter to tests. */
  versions: Record<string, string>;
  /** gid of group kvm inside the root (for a `0660 root:kvm` /dev/kvm in the sandbox). */
  kvmGid: number;
}

export interface EnsureRootOptions {
  /** Progress lines (the build takes a few minutes). Default: silent. */
  log?: (line: string) => void;
  /** Give up waiting for another process's build after this long. Default 30 min. */
  lockTimeoutMs?: number;
}

// ------------------------------------------------------------------ files written into the root

/**
 * /usr/sbin/tc in the root (the real one is diverted to /usr/sbin/tc.real).
 * The argv is what libvirt 11.3 runs (captured from the daemon): prio 2 on the
 * bridge's htb root qdisc 1:, matching UDP to port 68 (DHCP client).
 */
export const TC_WRAPPER = `#!/bin/sh
# virtwire test root only: not part of libvirt or Debian.
#
# The kernel virtwire's tests run on lacks the act_csum tc action. libvirt 11
# (nftables backend) adds, on every network start, a filter that fixes the UDP
# checksum of DHCP replies for old guests:
#   tc filter add dev BRIDGE prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp
# and the network start fails when that command fails. This wrapper (installed
# with dpkg-divert; the real binary is /usr/sbin/tc.real) runs the real tc and,
# for that one filter only, reports success when the kernel lacks the action
# (and when the matching "filter del" then finds no such filter). Every other
# invocation is the real tc, unchanged. Guests still get their DHCP lease.
case "$*" in
  "filter add dev "*" prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp" | \\
  "filter del dev "*" prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp")
    err=$(/usr/sbin/tc.real "$@" 2>&1) && exit 0
    rc=$?
    case "$err" in
      *"Failed to load TC action module"* | *"Cannot find specified filter chain"*) exit 0 ;;
    esac
    printf '%s\\n' "$err" >&2
    exit "$rc"
    ;;
esac
exec /usr/sbin/tc.real "$@"
`;

const NETWORK_CONF_APPEND = `
# virtwire test root: pin the backend (the root has no iptables, so the
# automatic choice would be nftables too; this makes it explicit).
firewall_backend = "nftables"
`;

// Keeps docs, man pages and translations out of the root (~70 MB).
const DPKG_EXCLUDES = `# virtwire test root: no docs or translations
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
`;

// Runs in the chroot (as pid 1's child of a private pid namespace). policy-rc.d
// keeps maintainer scripts from starting daemons.
function aptScript(packages: readonly string[], then = ''): string {
  return `set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get -q -y --no-install-recommends install ${packages.join(' ')}
${then}apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
`;
}

const FIRST_INSTALL_FIXUPS = `dpkg-divert --local --rename --divert /usr/sbin/tc.real --add /usr/sbin/tc
getent group kvm >/dev/null || groupadd --system kvm
`;

// ------------------------------------------------------------------ public API

const inFlight = new Map<string, Promise<string>>();

/**
 * Returns a ready Debian 13 root (building it the first time, ~5 min), e.g.
 * `/var/cache/virtwire/trixie-root`. Needs root, debootstrap, unshare, and a
 * reachable Debian mirror (taken from the host's apt sources).
 */
export async function ensureTrixieRoot(
  cacheDir: string = DEFAULT_TRIXIE_ROOT,
  options: EnsureRootOptions = {},
): Promise<string> {
  const dir = path.resolve(cacheDir);
  const pending = inFlight.get(dir);
  if (pending) return pending;
  const p = ensure(dir, options).finally(() => inFlight.delete(dir));
  inFlight.set(dir, p);
  return p;
}

/** The marker's contents if `root` is a complete root of the current recipe, else undefined. */
export async function readTrixieRootInfo(root: string): Promise<TrixieRootInfo | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(root, TRIXIE_ROOT_MARKER), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const info = JSON.parse(text) as TrixieRootInfo;
    return info.recipe === TRIXIE_ROOT_RECIPE ? info : undefined;
  } catch {
    return undefined;
  }
}

/** Packages of TRIXIE_ROOT_PACKAGES the root described by info does not have. */
export function missingPackages(info: Pick<TrixieRootInfo, 'packages'>): string[] {
  return TRIXIE_ROOT_PACKAGES.filter((p) => !info.packages.includes(p));
}

/** The root's info when it is complete, of the current recipe and holds every package of the list. */
async function readyInfo(dir: string): Promise<TrixieRootInfo | undefined> {
  const info = await readTrixieRootInfo(dir);
  return info && missingPackages(info).length === 0 ? info : undefined;
}

// ------------------------------------------------------------------ build

async function ensure(dir: string, options: EnsureRootOptions): Promise<string> {
  if (await readyInfo(dir)) return dir;
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const release = await acquireLock(`${dir}.lock`, dir, options.lockTimeoutMs ?? 30 * 60_000);
  if (!release) return dir; // another process finished it while we waited
  try {
    const info = await readTrixieRootInfo(dir);
    const log = options.log ?? (() => {});
    if (info && missingPackages(info).length === 0) return dir;
    if (info) await extend(dir, info, log);
    else await build(dir, log);
    return dir;
  } finally {
    await release();
  }
}

async function build(dir: string, log: (line: string) => void): Promise<void> {
  const t0 = Date.now();
  const tmp = `${dir}.tmp-${process.pid}`;
  await removeStaleSiblings(dir);
  const mirror = findDebianMirror();
  log(`trixie root: debootstrap ${TRIXIE_SUITE} from ${mirror} into ${tmp}`);

  await run('setpriv', [
    ...UNSHARE,
    'debootstrap', '--variant=minbase', TRIXIE_SUITE, tmp, mirror,
  ], 20 * 60_000);

  await fs.writeFile(path.join(tmp, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  await fs.writeFile(path.join(tmp, 'etc/dpkg/dpkg.cfg.d/virtwire-excludes'), DPKG_EXCLUDES);
  log(`trixie root: apt-get install ${TRIXIE_ROOT_PACKAGES.join(' ')}`);
  await inChroot(tmp, aptScript(TRIXIE_ROOT_PACKAGES, FIRST_INSTALL_FIXUPS), 30 * 60_000);

  log('trixie root: fixups');
  await fs.rm(path.join(tmp, 'usr/sbin/policy-rc.d'), { force: true });
  await fs.writeFile(path.join(tmp, 'usr/sbin/tc'), TC_WRAPPER, { mode: 0o755 });
  await fs.chmod(path.join(tmp, 'usr/sbin/tc'), 0o755);
  await fs.appendFile(path.join(tmp, 'etc/libvirt/network.conf'), NETWORK_CONF_APPEND);
  // libvirt resolves the host name on every start: answer from /etc/hosts, and
  // make a lookup that misses fail at once instead of waiting ~10 s on a resolver.
  await fs.copyFile('/etc/hosts', path.join(tmp, 'etc/hosts'));
  await fs.rm(path.join(tmp, 'etc/resolv.conf'), { force: true });
  await fs.writeFile(path.join(tmp, 'etc/resolv.conf'), '', { mode: 0o644 });
  // The config-network postinst copies default.xml into /etc and may mark it
  // autostart: a fresh daemon in the root must start with no network defined.
  await fs.rm(path.join(tmp, 'etc/libvirt/qemu/networks/default.xml'), { force: true });
  await fs.rm(path.join(tmp, 'etc/libvirt/qemu/networks/autostart/default.xml'), { force: true });
  await fs.mkdir(path.join(tmp, ROOT_PUT_OLD.slice(1)), { recursive: true, mode: 0o755 });

  await commit(dir, tmp, { suite: TRIXIE_SUITE, mirror, builtAt: new Date().toISOString(), buildSeconds: 0 }, t0, log);
}

/**
 * A copy of the root with the packages it lacks, swapped in for it. The
 * copy gets the host's resolver for apt (the root's own is empty on purpose,
 * see build) and its empty one back afterwards.
 */
async function extend(dir: string, info: TrixieRootInfo, log: (line: string) => void): Promise<void> {
  const t0 = Date.now();
  const tmp = `${dir}.tmp-${process.pid}`;
  await removeStaleSiblings(dir);
  const missing = missingPackages(info);
  log(`trixie root: extending ${dir} with ${missing.join(' ')} (a copy in ${tmp})`);
  await run('cp', ['-a', '--reflink=auto', '--', dir, tmp], 20 * 60_000);
  await fs.rm(path.join(tmp, TRIXIE_ROOT_MARKER), { force: true });
  const resolv = path.join(tmp, 'etc/resolv.conf');
  await fs.copyFile('/etc/resolv.conf', resolv);
  await fs.writeFile(path.join(tmp, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  await inChroot(tmp, aptScript(missing), 30 * 60_000);
  await fs.rm(path.join(tmp, 'usr/sbin/policy-rc.d'), { force: true });
  await fs.writeFile(resolv, '', { mode: 0o644 });
  await commit(dir, tmp, { suite: info.suite, mirror: info.mirror, builtAt: info.builtAt, buildSeconds: info.buildSeconds }, t0, log);
}

/**
 * Checks the finished root in tmp, moves it to dir (the previous root
 * aside), and writes the marker: the root is ready from that moment.
 */
async function commit(dir: string, tmp: string, made: Pick<TrixieRootInfo, 'suite' | 'mirror' | 'builtAt' | 'buildSeconds'>, t0: number, log: (line: string) => void): Promise<void> {
  await checkRoot(tmp);
  const versions = await installedVersions(tmp);
  const kvmGid = groupId(await fs.readFile(path.join(tmp, 'etc/group'), 'utf8'), 'kvm');
  const sizeBytes = await diskUsage(tmp);

  // Commit: move any previous (incomplete or old-recipe) root aside, rename the
  // new one into place, then write the marker atomically.
  const old = `${dir}.old-${process.pid}`;
  try {
    await fs.rename(dir, old);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  await fs.rename(tmp, dir);
  const seconds = Math.round((Date.now() - t0) / 100) / 10;
  const info: TrixieRootInfo = {
    recipe: TRIXIE_ROOT_RECIPE,
    ...made,
    buildSeconds: made.buildSeconds + seconds,
    sizeBytes,
    packages: [...TRIXIE_ROOT_PACKAGES],
    versions,
    kvmGid,
  };
  await writeAtomic(path.join(dir, TRIXIE_ROOT_MARKER), `${JSON.stringify(info, null, 2)}\n`);
  await removeUnused(dir, old);
  log(`trixie root: ready in ${seconds} s, ${(sizeBytes / 1e6).toFixed(0)} MB, ` +
    Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(', '));
}

/**
 * Prefix for every build step that mounts or may start a daemon: a private
 * mount namespace (mounts vanish with it) and pid namespace (--kill-child: all
 * its processes die with unshare), and setpriv's parent-death signal so that
 * unshare itself dies if this Node process is killed mid-build.
 */
const UNSHARE = ['--pdeathsig', 'KILL', 'unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child'];

/** Runs a sh script in the chroot, with /proc of a private pid namespace (no daemon survives). */
async function inChroot(root: string, script: string, timeoutMs: number): Promise<void> {
  await run('setpriv', [
    ...UNSHARE, `--mount-proc=${path.join(root, 'proc')}`,
    'chroot', root, '/usr/bin/env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL=C', 'HOME=/root',
    '/bin/sh', '-c', script,
  ], timeoutMs);
}

async function checkRoot(root: string): Promise<void> {
  const must = ['usr/sbin/libvirtd', 'usr/sbin/virtlogd', 'usr/bin/virsh', 'usr/bin/qemu-system-x86_64', 'usr/sbin/nft',
    'usr/sbin/dnsmasq', 'usr/bin/passt', 'usr/bin/node', 'usr/sbin/tc.real', 'usr/bin/busybox', 'usr/bin/virt-install', 'usr/bin/ovs-vsctl', 'usr/sbin/ovs-vswitchd', 'usr/sbin/ovsdb-server', ROOT_DEFAULT_NETWORK_XML.slice(1)];
  for (const f of must) {
    if (!(await exists(path.join(root, f)))) throw new Error(`trixie root: ${f} is missing after the install`);
  }
  for (const f of ['usr/sbin/iptables', 'usr/sbin/iptables-nft', 'usr/sbin/iptables-legacy']) {
    if (await exists(path.join(root, f))) {
      throw new Error(`trixie root: ${f} got installed; libvirt's backend must come out as nftables. Fix the package list.`);
    }
  }
}

async function installedVersions(root: string): Promise<Record<string, string>> {
  const pkgs = ['libvirt-daemon', 'qemu-system-x86', 'nodejs', 'nftables', 'passt', 'dnsmasq-base', 'virtinst', 'openvswitch-switch'];
  const r = await execa('chroot', [root, 'dpkg-query', '-W', '-f', '${Package} ${Version}\\n', ...pkgs], {
    reject: false, stdin: 'ignore', timeout: 60_000, env: { LC_ALL: 'C' },
  });
  const out: Record<string, string> = {};
  for (const line of String(r.stdout).split('\n')) {
    const [name, version] = line.trim().split(/\s+/);
    if (name && version) out[name] = version;
  }
  return out;
}

function groupId(etcGroup: string, name: string): number {
  for (const line of etcGroup.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined) return Number(f[2]);
  }
  throw new Error(`trixie root: no group ${name} in its /etc/group`);
}

async function diskUsage(root: string): Promise<number> {
  const r = await execa('du', ['-sxB1', root], { stdin: 'ignore', timeout: 120_000 });
  return Number(String(r.stdout).split(/\s/)[0]);
}

async function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  const r = await execa(cmd, args, {
    reject: false,
    stdin: 'ignore',
    all: true,
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env: { LC_ALL: 'C', PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    extendEnv: false,
  });
  if (r.exitCode !== 0 || r.timedOut) {
    const tail = String(r.all ?? '').trim().split('\n').slice(-15).join('\n');
    throw new Error(
      `trixie root: ${cmd} ${args.join(' ')} ${r.timedOut ? `timed out after ${timeoutMs / 1000} s` : `failed (exit ${r.exitCode ?? r.signal})`}` +
        (tail ? `:\n${tail}` : ''),
    );
  }
}

// ------------------------------------------------------------------ cleanup of earlier crashed builds

/**
 * Removes `<dir>.tmp-*` left by builders that died (we hold the lock, so none
 * is live) and previous roots (`<dir>.old-*`) that no sandbox may still use.
 */
async function removeStaleSiblings(dir: string): Promise<void> {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  for (const name of await fs.readdir(parent)) {
    if (name.startsWith(`${base}.tmp-`)) await removeTree(path.join(parent, name));
    if (name.startsWith(`${base}.old-`)) await removeUnused(dir, path.join(parent, name));
  }
  // A root without a (current) marker is not used by anyone: rebuilt from scratch.
}

/**
 * Removes `old`, a previous root of `dir`, unless a running process names
 * `dir` in its argv (a sandbox-init.sh started on it before the swap may
 * have the old root as its overlay's lower layer: deleting it would pull
 * files from under that test run). Then the next build removes it.
 */
async function removeUnused(dir: string, old: string): Promise<void> {
  if (!(await exists(old))) return;
  for (const pid of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes(dir) || argv.includes(old)) return;
  }
  await removeTree(old);
}

/** rm -rf that first detaches anything mounted below `p` and never crosses into another filesystem. */
async function removeTree(p: string): Promise<void> {
  if (!(await exists(p))) return;
  const mounts = mountPointsUnder(p).sort((a, b) => b.length - a.length);
  for (const m of mounts) await execa('umount', ['-l', m], { reject: false, stdin: 'ignore' });
  if (mountPointsUnder(p).length > 0) throw new Error(`trixie root: cannot unmount everything under ${p}; remove it by hand`);
  await run('rm', ['-rf', '--one-file-system', '--', p], 10 * 60_000);
}

function mountPointsUnder(p: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const decoded = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (decoded === p || decoded.startsWith(`${p}/`)) out.push(decoded);
  }
  return out;
}

// ------------------------------------------------------------------ lock

/**
 * O_EXCL lock file holding "pid starttime". Returns a release function, or
 * undefined if the root became ready while waiting for another builder.
 */
async function acquireLock(lockPath: string, dir: string, timeoutMs: number): Promise<(() => Promise<void>) | undefined> {
  const me = `${process.pid} ${procStartTime(process.pid) ?? 0}\n`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await fs.open(lockPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      return async () => {
        // Only remove the lock if it is still ours.
        const now = await fs.readFile(lockPath, 'utf8').catch(() => '');
        if (now === me) await fs.rm(lockPath, { force: true });
      };
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const owner = await fs.readFile(lockPath, 'utf8').catch(() => undefined);
    if (owner === undefined) continue; // released meanwhile
    // An empty lock is one being written right now, or one whose writer died
    // between open and write: stale once it is old.
    const stale = owner === '' ? await olderThan(lockPath, 10_000) : !lockOwnerAlive(owner);
    if (stale) {
      await breakStaleLock(lockPath, owner);
      continue;
    }
    // A live builder (or a lock file being written right now): wait for it.
    if (await readyInfo(dir)) return undefined;
    if (Date.now() > deadline) {
      throw new Error(`trixie root: still locked by "${owner.trim()}" (${lockPath}) after ${timeoutMs / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Moves the stale lock aside atomically and checks that what was moved is the
 * stale lock we looked at; if another process had replaced it with a live
 * lock in between, that lock is put back.
 */
async function breakStaleLock(lockPath: string, staleContent: string): Promise<void> {
  const aside = `${lockPath}.break-${process.pid}`;
  try {
    await fs.rename(lockPath, aside);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  const moved = await fs.readFile(aside, 'utf8').catch(() => staleContent);
  if (moved !== staleContent) await fs.link(aside, lockPath).catch(() => {});
  await fs.rm(aside, { force: true });
}

function lockOwnerAlive(content: string): boolean {
  const [pidText, startText] = content.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const start = procStartTime(pid);
  if (start === undefined) return false;
  return startText === undefined || startText === '0' || String(start) === startText;
}

/** Field 22 of /proc/PID/stat (clock ticks since boot), or undefined if there is no such process. */
function procStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ small helpers

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
}

async function olderThan(p: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await fs.stat(p)).mtimeMs > ms;
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

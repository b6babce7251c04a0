// Builds the tiny test guest the e2e sandbox boots: Debian's cloud kernel plus
// an initramfs holding busybox, virtio-net and a few lines of /init.
//
// Why this shape (LIBVIRT-NOTES.md, "Running a real libvirtd in a test
// sandbox"): the cloud kernel + busybox initramfs boots in ~2.5 s under TCG,
// which is all this machine has (no usable KVM). No disk image, no distro boot.
//
// The result is cached under cacheDir/<key>/ where key hashes the package
// versions and everything this file puts into the image, so a new kernel in
// the archive or an edit here rebuilds it. It is built in a temp dir next to
// the cache and renamed into place, so a crash never leaves a half-built image.
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { findDebianMirror } from './debian-mirror.js';

export interface GuestImage {
  kernel: string;
  initrd: string;
}

/** Bumped whenever the image layout changes in a way the hash would miss. */
const FORMAT = 4;
const KERNEL_META = 'linux-image-cloud-amd64';
const BUSYBOX = 'busybox-static';
/**
 * The IPv6 image also holds Debian 13's busybox-static as /bin/busybox6, for
 * its `udhcpc6`: Debian 12's busybox (static or not, 1.35) is built without
 * udhcpc6 (checked: `busybox --list` of both). It comes from the host's Debian
 * mirror through apt with a private source list and state dir
 * (cacheDir/.apt-trixie), so the host's apt configuration is never touched.
 */
const BUSYBOX6_SUITE = 'trixie';
/** virtio_pci is the transport (not a dependency of virtio_net), virtio_net the NIC. */
const ROOT_MODULES = ['virtio_pci', 'virtio_net'];

/** TCP port of the guest's httpd and UDP port of its responder (fixed in the machine code below). */
export const GUEST_HTTP_PORT = 80;
export const GUEST_UDP_PORT = 5353;
export const GUEST_READY_PREFIX = 'VIRTWIRE-GUEST-READY';
export const GUEST_FETCH_PREFIX = 'VIRTWIRE-GUEST-FETCH';

// /init runs as PID 1 of the guest. vw.name is a sanitized token (domain-xml.ts
// makes it), re-filtered here so nothing from the command line reaches a shell
// word unquoted.
const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
name=guest
debug=
fetch=
ip6=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vw.name=*) name="\${arg#vw.name=}" ;;
    vw.debug=1) debug=1 ;;
    vw.fetch=*) fetch="\${arg#vw.fetch=}" ;;
    vw.ip6=1) ip6=1 ;;
  esac
done
# vw.debug=1 on the kernel command line: uptime stamps of each step on the console.
step() { [ -z "$debug" ] || echo "VIRTWIRE-GUEST-STEP $(cut -d' ' -f1 /proc/uptime) $*"; }
step init
name=$(printf '%s' "$name" | tr -cd 'A-Za-z0-9._-')
[ -n "$name" ] || name=guest
# Modules are numbered in dependency order by the image builder.
for m in /lib/modules/*.ko; do
  insmod "$m" || echo "VIRTWIRE-GUEST-ERROR insmod $m failed"
done
step modules loaded
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
# No duplicate address detection: a DHCPv6 address is usable at once (DAD
# would hold it "tentative" for a second; the network is the test's own).
[ -z "$ip6" ] || echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
ip link set eth0 up || echo "VIRTWIRE-GUEST-ERROR no eth0 (virtio-net did not load)"
step eth0 up
# vw.ip6=1: also take the DHCPv6 lease, alongside the IPv4 one. udhcpc6
# identifies itself by DUID-LL (00:03:00:01 + the NIC's MAC) and always sends
# an empty Client FQDN option, so a libvirt reservation must name the guest by
# that DUID: <host id='00:03:00:01:MAC' name=... ip=.../> (see sandbox.ts).
if [ -n "$ip6" ]; then
  if [ -x /bin/busybox6 ]; then
    # udhcpc6 sends from the link-local address and exits at once without one.
    (i=0
     while ! ip -6 addr show dev eth0 scope link | grep -q inet6 && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
     exec /bin/busybox6 udhcpc6 -i eth0 -s /etc/udhcpc6.script -t 60 -T 1 -A 1 -n -q >/tmp/udhcpc6.log 2>&1) &
    dhcp6=$!
  else
    echo "VIRTWIRE-GUEST-ERROR vw.ip6=1 but this image has no /bin/busybox6 (build it with ensureGuestImage(dir, {ipv6: true}))"
  fi
fi
# -q: exit once leased; the address stays (leases outlive any test).
udhcpc -i eth0 -s /etc/udhcpc.script -t 60 -T 1 -A 1 -n -q >/dev/null 2>&1 ||
  echo "VIRTWIRE-GUEST-ERROR udhcpc got no lease on eth0"
step leased
ip=$(ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
ready6=
if [ -n "$ip6" ]; then
  [ -z "$dhcp6" ] || wait "$dhcp6" || {
    echo "VIRTWIRE-GUEST-ERROR udhcpc6 got no lease on eth0:"
    sed 's/^/VIRTWIRE-GUEST-ERROR   /' /tmp/udhcpc6.log
  }
  # Replies to clients outside the network need the default route the host's
  # router advertisement brings (dnsmasq enable-ra): wait for it, bounded.
  i=0
  while ! ip -6 route | grep -q '^default' && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  ip -6 route | grep -q '^default' || echo "VIRTWIRE-GUEST-ERROR no IPv6 default route (no router advertisement)"
  step leased6
  ready6=" ip6=$(ip -6 -o addr show dev eth0 scope global | awk '{ split($4, a, "/"); print a[1]; exit }')"
fi
mkdir -p /www
echo "virtwire-guest $name" > /www/index.html
httpd -p 80 -h /www
/bin/udp-pong "udp-pong $name" &
echo "${GUEST_READY_PREFIX} name=$name ip=$ip$ready6"
# vw.fetch=IP:PORT makes the guest a client too: every second it GETs / from
# IP:PORT and prints the answer's last line, so tests can prove traffic that
# starts in a guest (hairpin through a host port). Filtered to an address.
fetch=$(printf '%s' "$fetch" | tr -cd '0-9.:')
if [ -n "$fetch" ]; then
  (while :; do
    body=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "\${fetch%:*}" "\${fetch##*:}" 2>/dev/null | tail -n 1)
    echo "${GUEST_FETCH_PREFIX} $fetch \${body:-(no answer)}"
    sleep 1
  done) &
fi
# PID 1 must never exit (kernel panic); sleep in a loop and reap.
while :; do sleep 3600; done
`;

// busybox udhcpc only reports the lease; this script applies it.
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}"
    if [ -n "$router" ]; then
      ip route replace default via "\${router%% *}" dev "$interface"
    fi
    ;;
esac
exit 0
`;

// udhcpc6 reports the lease; this applies it. The /64 (the network's prefix)
// makes the subnet on-link; the default route comes from the router advertisement.
const UDHCPC6_SCRIPT = `#!/bin/sh
case "$1" in
  bound|updated)
    [ -n "$ipv6" ] && ip -6 addr replace "$ipv6/64" dev "$interface"
    ;;
esac
exit 0
`;

// A UDP responder. Debian's busybox (static or not) is built without udpsvd
// and its nc has no -u, so there is no busybox way to answer UDP. This is a
// 201-byte static x86-64 program, assembled with GNU as from the listing below:
// it binds 0.0.0.0:5353 and answers every datagram with argv[1] (no newline).
//
//   mov rsi,[rsp+16]; xor edx,edx            ; rsi = argv[1]
//   1: cmp byte [rsi+rdx],0; je 2f; inc rdx; jmp 1b   ; rdx = strlen
//   2: mov r12,rsi; mov r13,rdx
//   socket(AF_INET, SOCK_DGRAM, 0) (41); js exit1; mov r14,rax
//   sub rsp,2048; sockaddr_in{2, htons(5353)=0x14e9, 0} at [rsp]
//   bind(r14, rsp, 16) (49); jnz exit1
//   3: [rsp+32]=16; recvfrom(r14, rsp+64, 1500, 0, rsp+16, rsp+32) (45); js 3b
//      sendto(r14, r12, r13, 0, rsp+16, [rsp+32]) (44); jmp 3b
//   exit1: exit(1) (60)
const UDP_PONG_CODE_HEX =
  '488b74241031d2803c1600740548ffc2ebf54989f44989d5b829000000bf02000000be02000000' +
  '31d20f0585c00f888a0000004989c64881ec0008000048c704240000000048c744240800000000' +
  '66c70424020066c744240214e9b8310000004c89f74889e6ba100000000f0585c0754cc7442420' +
  '10000000b82d0000004c89f7488d742440badc0500004531d24c8d4424104c8d4c24200f0585c0' +
  '78d3b82c0000004c89f74c89e64c89ea4531d24c8d442410448b4c24200f05ebb4b83c000000bf' +
  '010000000f05';

/** Wraps raw x86-64 code in a minimal static ELF64 executable (one PT_LOAD). */
export function tinyElf(code: Buffer): Buffer {
  const base = 0x400000;
  const hdr = 64;
  const phdr = 56;
  const entry = base + hdr + phdr;
  const b = Buffer.alloc(hdr + phdr);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // 64-bit
  b[5] = 1; // little endian
  b[6] = 1; // version
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(0x3e, 18); // x86-64
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(BigInt(entry), 24);
  b.writeBigUInt64LE(BigInt(hdr), 32); // phoff
  b.writeUInt16LE(hdr, 52); // ehsize
  b.writeUInt16LE(phdr, 54);
  b.writeUInt16LE(1, 56); // phnum
  const p = hdr;
  b.writeUInt32LE(1, p); // PT_LOAD
  b.writeUInt32LE(5, p + 4); // R+X
  b.writeBigUInt64LE(0n, p + 8); // offset: map the whole file
  b.writeBigUInt64LE(BigInt(base), p + 16);
  b.writeBigUInt64LE(BigInt(base), p + 24);
  const size = BigInt(hdr + phdr + code.length);
  b.writeBigUInt64LE(size, p + 32);
  b.writeBigUInt64LE(size, p + 40);
  b.writeBigUInt64LE(0x1000n, p + 48);
  return Buffer.concat([b, code]);
}

export function udpPongElf(): Buffer {
  return tinyElf(Buffer.from(UDP_PONG_CODE_HEX, 'hex'));
}

// ---------------------------------------------------------------- cpio (newc)

export interface CpioEntry {
  name: string; // without leading '/'
  mode: number; // including the S_IF* type bits
  data?: Buffer;
  rdevMajor?: number;
  rdevMinor?: number;
}

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFCHR = 0o020000;

/** Writes an uncompressed cpio "newc" archive, the format the kernel unpacks. */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  let ino = 1;
  const push = (e: CpioEntry) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const isDir = (e.mode & 0o170000) === S_IFDIR;
    const header =
      '070701' +
      hex(ino++) +
      hex(e.mode) +
      hex(0) + // uid
      hex(0) + // gid
      hex(isDir ? 2 : 1) +
      hex(0) + // mtime: fixed for a reproducible image
      hex(data.length) +
      hex(0) +
      hex(0) +
      hex(e.rdevMajor ?? 0) +
      hex(e.rdevMinor ?? 0) +
      hex(name.length) +
      hex(0);
    const h = Buffer.from(header, 'latin1');
    parts.push(h, name, pad4(h.length + name.length), data, pad4(data.length));
  };
  for (const e of entries) push(e);
  push({ name: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- apt / dpkg

async function run(cmd: string, args: string[], timeoutMs: number, cwd?: string): Promise<string> {
  const r = await execa(cmd, args, {
    timeout: timeoutMs,
    reject: false,
    cwd,
    env: { LC_ALL: 'C' },
    stdin: 'ignore',
  });
  if (r.exitCode !== 0 || r.timedOut) {
    const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.exitCode ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')} failed (${why}): ${(r.stderr || r.stdout).trim()}`);
  }
  return r.stdout;
}

interface Versions {
  kernelPkg: string;
  kernel: string;
  busybox: string;
}

/**
 * One apt-cache call (each costs ~0.6 s): the versioned kernel package the
 * meta package depends on, its version, and busybox-static's version.
 */
async function resolveVersions(): Promise<Versions> {
  const out = await run('apt-cache', ['show', '--no-all-versions', KERNEL_META, BUSYBOX], 30_000);
  const stanzas = out.split(/\n\n+/);
  const field = (stanza: string | undefined, f: string) => new RegExp(`^${f}:\\s*(.+)$`, 'm').exec(stanza ?? '')?.[1]?.trim();
  const meta = stanzas.find((st) => field(st, 'Package') === KERNEL_META);
  const bb = stanzas.find((st) => field(st, 'Package') === BUSYBOX);
  const dep = /(linux-image-\S+)\s*\(=\s*([^)\s]+)\)/.exec(field(meta, 'Depends') ?? '');
  const busybox = field(bb, 'Version');
  if (!dep?.[1] || !dep[2] || !busybox) {
    throw new Error(
      `guest image: cannot resolve ${KERNEL_META}'s kernel package or ${BUSYBOX}'s version from apt-cache show. ` +
        'Fix: run apt-get update so the Debian package lists are present.',
    );
  }
  return { kernelPkg: dep[1], kernel: dep[2], busybox };
}

async function aptDownload(dir: string, pkgs: string[]): Promise<void> {
  // apt-get download drops to the _apt user unless told otherwise; the temp
  // dir is root's, so keep it root.
  const r = await execa('apt-get', ['download', '-o', 'APT::Sandbox::User=root', ...pkgs], {
    cwd: dir,
    timeout: 300_000,
    reject: false,
    env: { LC_ALL: 'C' },
    stdin: 'ignore',
  });
  if (r.exitCode !== 0 || r.timedOut) {
    const text = `${r.stderr}\n${r.stdout}`;
    const offline = /Could not resolve|Temporary failure|Failed to fetch|Unable to connect|Network is unreachable|Connection (refused|timed out)/i.test(
      text,
    );
    throw new Error(
      `guest image: apt-get download ${pkgs.join(' ')} failed${r.timedOut ? ' (timed out after 300 s)' : ''}` +
        (offline
          ? ' because the Debian mirror is not reachable (no network?). Fix: build the image once on a machine/run with network access; it is cached in the guest cache dir afterwards.'
          : '. Fix: check apt sources and run apt-get update.') +
        `\n${text.trim()}`,
    );
  }
}

// ---------------------------------------------------------------- Debian 13 busybox (udhcpc6)

/** apt options that use only aptDir: its own source list, lists, cache and an empty dpkg status. */
function privateApt(aptDir: string): string[] {
  const o = (k: string, v: string) => ['-o', `${k}=${v}`];
  return [
    ...o('Dir::Etc::SourceList', path.join(aptDir, 'sources.list')),
    ...o('Dir::Etc::SourceParts', path.join(aptDir, 'sources.list.d')),
    ...o('Dir::Etc::Preferences', path.join(aptDir, 'preferences')),
    ...o('Dir::Etc::PreferencesParts', path.join(aptDir, 'preferences.d')),
    ...o('Dir::State::Lists', path.join(aptDir, 'lists')),
    ...o('Dir::State::status', path.join(aptDir, 'status')),
    ...o('Dir::Cache', path.join(aptDir, 'cache')),
    ...o('Acquire::Languages', 'none'),
    ...o('APT::Sandbox::User', 'root'),
  ];
}

async function aptPrivate(aptDir: string, [cmd, ...args]: ['apt-get' | 'apt-cache', ...string[]], timeoutMs: number, cwd?: string): Promise<string> {
  return run(cmd, [...privateApt(aptDir), ...args], timeoutMs, cwd);
}

/** Creates aptDir for suite trixie of the host's mirror and runs `apt-get update` in it when it has no lists yet (or force). */
async function busybox6Lists(aptDir: string, force: boolean): Promise<void> {
  const lists = path.join(aptDir, 'lists');
  const have = (await fs.readdir(lists).catch(() => [] as string[])).some((f) => f.endsWith('_Packages'));
  if (have && !force) return;
  for (const d of ['sources.list.d', 'preferences.d', 'lists/partial', 'cache/archives/partial']) {
    await fs.mkdir(path.join(aptDir, d), { recursive: true });
  }
  await fs.writeFile(path.join(aptDir, 'sources.list'), `deb ${findDebianMirror()} ${BUSYBOX6_SUITE} main\n`);
  await fs.writeFile(path.join(aptDir, 'status'), '');
  try {
    await aptPrivate(aptDir, ['apt-get', 'update', '-q'], 300_000);
  } catch (err) {
    throw new Error(
      `guest image: cannot read Debian ${BUSYBOX6_SUITE}'s package list (needed for busybox udhcpc6 in the IPv6 guest). ` +
        `Fix: run once with access to the Debian mirror; it is cached in ${aptDir} afterwards.\n${(err as Error).message}`,
    );
  }
}

/**
 * busybox-static's version in Debian 13. Read once from the private lists
 * (fetched on first use) and remembered in aptDir/busybox6.version: apt-cache
 * over Debian 13's 20 MB package list costs ~2 s, and this runs on every boot
 * of an IPv6 sandbox. Refreshed together with the lists.
 */
async function busybox6Version(aptDir: string, refresh = false): Promise<string> {
  const memo = path.join(aptDir, 'busybox6.version');
  if (!refresh) {
    const known = (await fs.readFile(memo, 'utf8').catch(() => '')).trim();
    if (known) return known;
  }
  await busybox6Lists(aptDir, refresh);
  const out = await aptPrivate(aptDir, ['apt-cache', 'show', '--no-all-versions', BUSYBOX], 30_000);
  const v = /^Version:\s*(\S+)/m.exec(out)?.[1];
  if (!v) throw new Error(`guest image: no ${BUSYBOX} in Debian ${BUSYBOX6_SUITE}'s package list (${aptDir})`);
  await fs.writeFile(memo, `${v}\n`);
  return v;
}

/** Downloads busybox-static=version from Debian 13 and returns its /bin/busybox (refreshing stale lists once). */
async function fetchBusybox6(aptDir: string, version: string, tmp: string): Promise<Buffer> {
  const dir = path.join(tmp, 'debs6');
  const x = path.join(tmp, 'x6');
  await fs.mkdir(dir, { recursive: true });
  try {
    await aptPrivate(aptDir, ['apt-get', 'download', `${BUSYBOX}=${version}`], 300_000, dir);
  } catch {
    // The mirror dropped that version since the lists were fetched: refresh
    // them. The image is then built under the old key (the one being looked
    // up); the next call keys on the new version.
    await busybox6Version(aptDir, true);
    await aptPrivate(aptDir, ['apt-get', 'download', BUSYBOX], 300_000, dir);
  }
  const deb = (await fs.readdir(dir)).find((f) => f.endsWith('.deb'));
  if (!deb) throw new Error(`guest image: apt-get download ${BUSYBOX} (${BUSYBOX6_SUITE}) left no .deb in ${dir}`);
  await run('dpkg', ['-x', path.join(dir, deb), x], 120_000);
  for (const p of ['usr/bin/busybox', 'bin/busybox']) if (await exists(path.join(x, p))) return fs.readFile(path.join(x, p));
  throw new Error(`guest image: ${deb} holds no busybox binary`);
}

// ---------------------------------------------------------------- modules

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const modName = (file: string) => path.basename(file).replace(/\.ko(\.xz|\.zst|\.gz)?$/, '').replace(/-/g, '_');

/** Returns an uncompressed .ko path (decompressing .ko.xz/.zst/.gz into work). */
async function plainKo(file: string, work: string): Promise<string> {
  if (file.endsWith('.ko')) return file;
  const out = path.join(work, `${modName(file)}.ko`);
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : 'gzip';
  const r = await execa(tool, ['-dc', file], { timeout: 60_000, reject: false, encoding: 'buffer', stdin: 'ignore' });
  if (r.exitCode !== 0) {
    throw new Error(`guest image: ${tool} -dc ${file} failed (is ${tool} installed?): ${Buffer.from(r.stderr).toString()}`);
  }
  await fs.writeFile(out, r.stdout);
  return out;
}

/** Modules needed for `roots`, dependencies first (from `modinfo -F depends`). */
async function moduleLoadOrder(modDir: string, work: string, roots: string[]): Promise<string[]> {
  const byName = new Map<string, string>();
  for (const f of await walk(modDir)) if (/\.ko(\.xz|\.zst|\.gz)?$/.test(f)) byName.set(modName(f), f);
  const builtin = new Set(
    (await fs.readFile(path.join(modDir, 'modules.builtin'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map(modName),
  );
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = async (name: string): Promise<void> => {
    if (state.get(name) === 'done' || builtin.has(name)) return;
    if (state.get(name) === 'visiting') throw new Error(`guest image: module dependency cycle at ${name}`);
    const src = byName.get(name);
    if (!src) throw new Error(`guest image: module ${name} not found under ${modDir} (not built as a module in this kernel?)`);
    state.set(name, 'visiting');
    const ko = await plainKo(src, work);
    const deps = (await run('modinfo', ['-F', 'depends', ko], 30_000)).trim();
    for (const d of deps.split(',').filter(Boolean)) await visit(d.replace(/-/g, '_'));
    state.set(name, 'done');
    order.push(ko);
  };
  for (const r of roots) await visit(r);
  return order;
}

// ---------------------------------------------------------------- build

async function exists(p: string): Promise<boolean> {
  return fs.access(p, fsc.F_OK).then(
    () => true,
    () => false,
  );
}

async function build(tmp: string, kernelPkg: string, busybox6?: { aptDir: string; version: string }): Promise<void> {
  const debs = path.join(tmp, 'debs');
  const x = path.join(tmp, 'x');
  const work = path.join(tmp, 'ko');
  await Promise.all([debs, x, work].map((d) => fs.mkdir(d, { recursive: true })));
  await aptDownload(debs, [kernelPkg, BUSYBOX]);
  for (const deb of await fs.readdir(debs)) {
    if (deb.endsWith('.deb')) await run('dpkg', ['-x', path.join(debs, deb), x], 120_000);
  }
  // Debian 12 ships /lib/modules, Debian 13 (merged /usr) /usr/lib/modules.
  const modBase = (await exists(path.join(x, 'usr/lib/modules'))) ? path.join(x, 'usr/lib/modules') : path.join(x, 'lib/modules');
  const kvers = await fs.readdir(modBase);
  if (kvers.length !== 1 || !kvers[0]) throw new Error(`guest image: expected one kernel under ${modBase}, found ${kvers.join(', ')}`);
  const kver = kvers[0];
  const vmlinuz = path.join(x, 'boot', `vmlinuz-${kver}`);
  const busybox = (await exists(path.join(x, 'bin/busybox'))) ? path.join(x, 'bin/busybox') : path.join(x, 'usr/bin/busybox');
  const mods = await moduleLoadOrder(path.join(modBase, kver), work, ROOT_MODULES);

  const entries: CpioEntry[] = [];
  const dir = (name: string) => entries.push({ name, mode: S_IFDIR | 0o755 });
  for (const d of ['bin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'tmp', 'www']) dir(d);
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
  entries.push({ name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 });
  entries.push({ name: 'bin/busybox', mode: S_IFREG | 0o755, data: await fs.readFile(busybox) });
  entries.push({ name: 'bin/sh', mode: S_IFREG | 0o755, data: await fs.readFile(busybox) });
  entries.push({ name: 'bin/udp-pong', mode: S_IFREG | 0o755, data: udpPongElf() });
  entries.push({ name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(INIT_SCRIPT) });
  entries.push({ name: 'etc/udhcpc.script', mode: S_IFREG | 0o755, data: Buffer.from(UDHCPC_SCRIPT) });
  if (busybox6) {
    entries.push({ name: 'bin/busybox6', mode: S_IFREG | 0o755, data: await fetchBusybox6(busybox6.aptDir, busybox6.version, tmp) });
    entries.push({ name: 'etc/udhcpc6.script', mode: S_IFREG | 0o755, data: Buffer.from(UDHCPC6_SCRIPT) });
  }
  for (const [i, ko] of mods.entries()) {
    const name = `lib/modules/${String(i).padStart(2, '0')}-${modName(ko)}.ko`;
    entries.push({ name, mode: S_IFREG | 0o644, data: await fs.readFile(ko) });
  }

  const out = path.join(tmp, 'image');
  await fs.mkdir(out);
  await fs.copyFile(vmlinuz, path.join(out, 'vmlinuz'));
  await fs.writeFile(path.join(out, 'initrd.gz'), gzipSync(cpioNewc(entries), { level: 6 }));
  await fs.writeFile(
    path.join(out, 'manifest.json'),
    JSON.stringify({ kernelPkg, kver, modules: mods.map(modName), busybox6: busybox6?.version, builtAt: new Date().toISOString() }, null, 2),
  );
  // QEMU runs as an unprivileged user on real hosts: keep everything world-readable.
  await fs.chmod(out, 0o755);
  for (const f of await fs.readdir(out)) await fs.chmod(path.join(out, f), 0o644);
}

function imageOf(dir: string): GuestImage {
  return { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.gz') };
}

async function newestCached(cacheDir: string, ipv6: boolean): Promise<string | undefined> {
  const names = await fs.readdir(cacheDir).catch(() => [] as string[]);
  let best: { dir: string; t: number } | undefined;
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const d = path.join(cacheDir, n);
    const st = await fs.stat(path.join(d, 'manifest.json')).catch(() => undefined);
    if (ipv6 && st) {
      const m = JSON.parse(await fs.readFile(path.join(d, 'manifest.json'), 'utf8').catch(() => '{}')) as { busybox6?: string };
      if (!m.busybox6) continue;
    }
    if (st && (!best || st.mtimeMs > best.t)) best = { dir: d, t: st.mtimeMs };
  }
  return best?.dir;
}

export interface GuestImageOptions {
  /**
   * Also put Debian 13's busybox (for udhcpc6) into the image, so a guest
   * booted with vw.ip6=1 takes a DHCPv6 lease too. A separate cached image;
   * its first build reads Debian 13's package list from the host's mirror.
   */
  ipv6?: boolean;
}

/**
 * Returns the kernel and initrd of the test guest, building them on first use.
 * The guest prints `VIRTWIRE-GUEST-READY name=<vw.name> ip=<IPv4>` on ttyS0
 * (with ` ip6=<IPv6>` appended when booted with vw.ip6=1 from an ipv6 image),
 * serves `virtwire-guest <vw.name>` on TCP 80 and answers UDP 5353 with
 * `udp-pong <vw.name>`.
 */
export async function ensureGuestImage(cacheDir = '/var/cache/virtwire/guest', opts: GuestImageOptions = {}): Promise<GuestImage> {
  let kernelPkg: string;
  let key: string;
  const aptDir = path.join(cacheDir, '.apt-trixie');
  let busybox6: { aptDir: string; version: string } | undefined;
  try {
    const v = await resolveVersions();
    kernelPkg = v.kernelPkg;
    if (opts.ipv6) busybox6 = { aptDir, version: await busybox6Version(aptDir) };
    const inputs = {
      format: FORMAT,
      ...v,
      init: INIT_SCRIPT,
      udhcpc: UDHCPC_SCRIPT,
      pong: UDP_PONG_CODE_HEX,
      modules: ROOT_MODULES,
      ...(busybox6 ? { busybox6: busybox6.version, udhcpc6: UDHCPC6_SCRIPT } : {}),
    };
    key = createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
  } catch (err) {
    // apt metadata unusable: an image built earlier is still a working guest.
    const old = await newestCached(cacheDir, !!opts.ipv6);
    if (old) return imageOf(old);
    throw err;
  }
  const final = path.join(cacheDir, key);
  if (await exists(path.join(final, 'manifest.json'))) return imageOf(final);

  await fs.mkdir(cacheDir, { recursive: true });
  const tmp = path.join(cacheDir, `.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(tmp);
  try {
    await build(tmp, kernelPkg, busybox6);
    try {
      await fs.rename(path.join(tmp, 'image'), final);
    } catch (err) {
      // Another process finished the same key first: use theirs.
      const code = (err as NodeJS.ErrnoException).code;
      if (!((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(path.join(final, 'manifest.json'))))) throw err;
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return imageOf(final);
}

// Test-only: Open vSwitch inside an e2e Sandbox (src/demo/sandbox.ts), for
// <interface type='bridge'><virtualport type='openvswitch'/> NICs.
//
// This kernel has no openvswitch datapath module (LIBVIRT-NOTES, "This
// machine"), so bridges use the userspace datapath (datapath_type=netdev):
// ovs-vswitchd itself switches the packets, reading and writing every port
// through AF_PACKET sockets (its own bridge port is a tap it creates).
//
//   sandbox host netns (OVS, libvirtd, QEMU)                 peer netns (inside the sandbox)
//   ovsbr0 (netdev) ── vnetN  tag=100  (libvirt's tap)
//                   ── ovsp-p100 tag=100 ── veth ──>  vw-ovs-p100: eth0 10.100.0.1/24 (+ dnsmasq)
//                   ── ovsp-p200 tag=200 ── veth ──>  vw-ovs-p200: eth0 …
//
// Everything runs inside the sandbox (sb.exec): its mount namespace, so the
// ovs-vsctl libvirt runs (no --db, libvirt passes no OVS_* variables) finds
// ovsdb-server at the default /run/openvswitch/db.sock, which is the
// sandbox's private /run tmpfs; its PID namespace, so the daemons die with the
// sandbox even if stop() is never called. The database, pid files and logs go
// to `${sb.dir}/ovs` — never the host's /etc/openvswitch or /run/openvswitch.
// Peer namespaces are `ip netns add`ed inside the sandbox too: their
// /run/netns entries live on the sandbox's /run tmpfs, so they vanish with
// the sandbox's mount namespace and cannot leak onto the host.
//
// Why userspace-tso-enable=true: on this datapath OVS reads a veth port
// through AF_PACKET, and a veth sends TCP and UDP with CHECKSUM_PARTIAL (the
// checksum left for an offload that never happens). Without virtio-net
// headers on its sockets OVS forwards those packets unfinished. Measured here
// with OVS 3.1 (Debian 12) and 3.5 (Debian 13): a TCP connect between two veth
// peers on one tag times out and the receiver's Tcp InCsumErrors counts its
// SYNs (ICMP works; test/e2e/ovs-fixture.test.ts keeps that check); with OVS
// 3.1 the guest did not even get its DHCP lease from a peer's dnsmasq. With
// userspace-tso-enable OVS uses virtio-net headers on its AF_PACKET sockets
// and carries the checksum state along: both work. It is read only when
// ovs-vswitchd starts, hence set before.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { create } from 'xmlbuilder2';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { HTTP_GET_JS, type ExecResult, type Sandbox } from '../../src/demo/sandbox.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where libvirt's ovs-vsctl looks (the compiled-in default; /var/run is a link to /run). */
export const OVS_RUN_DIR = '/run/openvswitch';
const DB_SOCK = `${OVS_RUN_DIR}/db.sock`;
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';

export interface OvsHandle {
  readonly sb: Sandbox;
  /** `${sb.dir}/ovs`: conf.db, pid files, logs (same path inside and outside). */
  readonly dir: string;
  /** ovs-vswitchd --version's first line, e.g. "ovs-vswitchd (Open vSwitch) 3.1.0". */
  readonly version: string;
  /** Time from nothing to both daemons answering (ms). */
  readonly startupMs: number;
  /** ovs-vsctl ARGS inside the sandbox (bounded: --timeout=10); trimmed stdout; throws with stderr. */
  vsctl(...args: string[]): Promise<string>;
  /** Adds a userspace-datapath bridge (datapath_type=netdev). */
  addNetdevBridge(name: string): Promise<void>;
  /** A peer netns on `bridge`, see PeerOptions. */
  addPeer(opts: PeerOptions): Promise<OvsPeer>;
  /** Stops the peers' dnsmasq and netns, then ovs-vswitchd and ovsdb-server, by pid. Idempotent. */
  stop(): Promise<void>;
}

export interface PeerOptions {
  bridge: string;
  /** Short token: netns `vw-ovs-NAME`, OVS port `ovsp-NAME` (≤ 10 characters). */
  name: string;
  /** Access VLAN of the peer's OVS port (tag=N); none: an untagged (trunk) port. */
  tag?: number;
  /** The peer's own address, CIDR, e.g. 10.100.0.1/24. */
  address: string;
  /** Serve DHCP (dnsmasq) on the peer's segment. */
  dhcp?: {
    /** Pool, e.g. ['10.100.0.50', '10.100.0.99'] (netmask taken from address). */
    range: [string, string];
    /** Fixed leases. */
    hosts?: Array<{ mac: string; ip: string }>;
  };
}

export interface OvsPeer {
  readonly name: string;
  readonly netns: string;
  /** Its OVS port (the veth end in the sandbox host netns). */
  readonly port: string;
  /** Its address without prefix. */
  readonly ip: string;
  /** The Node binary to exec in it (the host's in Debian 12 mode, the root's in rootfs mode). */
  readonly node: string;
  /** argv in the peer netns (inside the sandbox). */
  exec(argv: string[], timeoutMs?: number, reject?: boolean): Promise<ExecResult>;
  /** HTTP GET / from the peer; the body, or throws with the reason (timeout, refused, …). */
  httpGet(host: string, port: number, timeoutMs?: number): Promise<string>;
  /** dnsmasq's lease file ('' without dhcp or before any lease). */
  leases(): Promise<string>;
  /** dnsmasq's log (--log-dhcp), for failure messages. */
  dhcpLog(): Promise<string>;
  /** Kills its dnsmasq by pid and deletes its netns (the veth goes with it). Idempotent. */
  stop(): Promise<void>;
}

/** The Node to run inside: Debian 12 mode shares the host's filesystem; the Debian 13 root has its own. */
function nodeInside(sb: Sandbox): string {
  return sb.rootfs ? 'node' : process.execPath;
}

const NAME_RE = /^[a-z0-9]{1,10}$/;
const IP4_CIDR = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/;

function netmask(prefix: number): string {
  const m = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 255).join('.');
}

/** Kills a process of the sandbox's PID namespace (pid as its pid file says) and waits until it is gone. */
async function killInside(sb: Sandbox, pid: string, what: string): Promise<void> {
  if (!/^\d+$/.test(pid)) return;
  // bash's kill builtin: the Debian 13 root has no procps.
  await sb.exec(['bash', '-c', 'kill -TERM "$1" 2>/dev/null || true', 'kill', pid]);
  for (let i = 0; i < 50; i++) {
    const r = await sb.exec(['bash', '-c', 'kill -0 "$1" 2>/dev/null', 'kill', pid], { reject: false });
    if (r.exitCode !== 0) return;
    await sleep(100);
  }
  await sb.exec(['bash', '-c', 'kill -KILL "$1" 2>/dev/null || true', 'kill', pid]);
  throw new Error(`ovs: ${what} (pid ${pid} in the sandbox) ignored SIGTERM for 5 s; sent SIGKILL`);
}

async function readPid(file: string): Promise<string> {
  return (await fs.readFile(file, 'utf8').catch(() => '')).trim();
}

// ovsdb-server and ovs-vswitchd with --detach return once they are ready and
// have closed stdio (their messages go to the log files), so sb.exec returns.
// A fresh database every start (a second startOvs in one sandbox after stop()
// starts from nothing too).
const START_SCRIPT = `set -eu
d=$1 tso=$2
mkdir -p "$d" ${OVS_RUN_DIR}
rm -f "$d/conf.db" "$d/.conf.db.~lock~"
ovsdb-tool create "$d/conf.db" ${SCHEMA}
ovsdb-server "$d/conf.db" --remote=punix:${DB_SOCK} --pidfile="$d/ovsdb-server.pid" \\
  --log-file="$d/ovsdb-server.log" --detach --no-chdir </dev/null >>"$d/start.log" 2>&1
ovs-vsctl --timeout=10 --no-wait init -- set Open_vSwitch . other_config:userspace-tso-enable="$tso"
ovs-vswitchd unix:${DB_SOCK} --pidfile="$d/ovs-vswitchd.pid" \\
  --log-file="$d/ovs-vswitchd.log" --detach --no-chdir </dev/null >>"$d/start.log" 2>&1
ovs-vsctl --timeout=10 show >/dev/null
`;

export interface StartOvsOptions {
  /**
   * other_config:userspace-tso-enable (default true). false only to show why
   * it is on: TCP between veth ports then fails (see the top of this file).
   */
  userspaceTso?: boolean;
}

/**
 * Starts ovsdb-server and ovs-vswitchd inside the sandbox (either mode), with
 * a fresh private database. One at a time per sandbox (they own
 * /run/openvswitch/db.sock): stop() the previous handle first.
 */
export async function startOvs(sb: Sandbox, opts: StartOvsOptions = {}): Promise<OvsHandle> {
  const dir = path.join(sb.dir, 'ovs');
  const t0 = Date.now();
  const tso = String(opts.userspaceTso ?? true);
  const r = await sb.exec(['bash', '-c', START_SCRIPT, 'ovs-start', dir, tso], { reject: false, timeoutMs: 60_000 });
  if (r.exitCode !== 0) {
    const logs = await Promise.all(['start.log', 'ovsdb-server.log', 'ovs-vswitchd.log'].map(async (f) => `--- ${f}\n${await fs.readFile(path.join(dir, f), 'utf8').catch(() => '(none)')}`));
    throw new Error(`ovs: starting ovsdb-server/ovs-vswitchd in the sandbox failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim()}\n${logs.join('\n')}`);
  }
  const startupMs = Date.now() - t0;
  const version = (await sb.exec(['ovs-vswitchd', '--version'])).stdout.split('\n')[0]?.trim() ?? '';
  const peers = new Set<OvsPeer>();
  let stopping: Promise<void> | undefined;

  const vsctl = async (...args: string[]): Promise<string> => {
    const res = await sb.exec(['ovs-vsctl', '--timeout=10', ...args], { reject: false, timeoutMs: 20_000 });
    if (res.exitCode !== 0) throw new Error(`ovs: ovs-vsctl ${args.join(' ')} failed (exit ${res.exitCode}): ${res.stderr.trim()}`);
    return res.stdout.trim();
  };

  const handle: OvsHandle = {
    sb, dir, version, startupMs, vsctl,
    async addNetdevBridge(name) {
      await vsctl('add-br', name, '--', 'set', 'bridge', name, 'datapath_type=netdev');
    },
    async addPeer(opts) {
      const p = await addPeer(sb, dir, opts);
      peers.add(p);
      return p;
    },
    stop() {
      stopping ??= (async () => {
        for (const p of peers) await p.stop();
        // vswitchd first: it removes its own taps (the bridges' ports) on exit.
        await killInside(sb, await readPid(path.join(dir, 'ovs-vswitchd.pid')), 'ovs-vswitchd');
        await killInside(sb, await readPid(path.join(dir, 'ovsdb-server.pid')), 'ovsdb-server');
      })();
      return stopping;
    },
  };
  return handle;
}

async function addPeer(sb: Sandbox, ovsDir: string, o: PeerOptions): Promise<OvsPeer> {
  if (!NAME_RE.test(o.name)) throw new Error(`ovs: peer name ${JSON.stringify(o.name)} must match ${NAME_RE}`);
  const m = IP4_CIDR.exec(o.address);
  if (!m) throw new Error(`ovs: peer address ${JSON.stringify(o.address)} is not IPv4/prefix`);
  const ip = m[1]!;
  const prefix = Number(m[2]);
  const netns = `vw-ovs-${o.name}`;
  const port = `ovsp-${o.name}`;
  const files = {
    leases: path.join(ovsDir, `peer-${o.name}.leases`),
    pid: path.join(ovsDir, `peer-${o.name}.dnsmasq.pid`),
    log: path.join(ovsDir, `peer-${o.name}.dnsmasq.log`),
  };
  const inNs = (argv: string[], timeoutMs = 30_000, reject = true) => sb.exec(['ip', 'netns', 'exec', netns, ...argv], { timeoutMs, reject });

  await sb.exec(['ip', 'netns', 'add', netns]);
  let stopped: Promise<void> | undefined;
  const peer: OvsPeer = {
    name: o.name, netns, port, ip, node: nodeInside(sb),
    exec: inNs,
    async httpGet(host, p, timeoutMs = 5000) {
      const r = await inNs([nodeInside(sb), '-e', HTTP_GET_JS, host, String(p), String(timeoutMs)], timeoutMs + 10_000, false);
      if (r.exitCode !== 0) throw new Error(`ovs: GET http://${host}:${p}/ from peer ${o.name} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim()}`);
      return r.stdout;
    },
    leases: () => fs.readFile(files.leases, 'utf8').catch(() => ''),
    dhcpLog: () => fs.readFile(files.log, 'utf8').catch(() => ''),
    stop() {
      stopped ??= (async () => {
        await killInside(sb, await readPid(files.pid), `dnsmasq of peer ${o.name}`);
        await sb.exec(['ip', 'netns', 'del', netns], { reject: false });
      })();
      return stopped;
    },
  };
  try {
    await inNs(['ip', 'link', 'set', 'lo', 'up']);
    await sb.exec(['ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await inNs(['ip', 'addr', 'add', o.address, 'dev', 'eth0']);
    await inNs(['ip', 'link', 'set', 'eth0', 'up']);
    await sb.exec(['ip', 'link', 'set', port, 'up']);
    const portArgs = o.tag === undefined ? [] : [`tag=${o.tag}`];
    const r = await sb.exec(['ovs-vsctl', '--timeout=10', 'add-port', o.bridge, port, ...portArgs], { reject: false });
    if (r.exitCode !== 0) throw new Error(`ovs: ovs-vsctl add-port ${o.bridge} ${port} ${portArgs.join(' ')} failed: ${r.stderr.trim()}`);
    if (o.dhcp) {
      const hosts = (o.dhcp.hosts ?? []).map((h) => `--dhcp-host=${h.mac.toLowerCase()},${h.ip}`);
      // Daemonizes (the parent returns once it runs, or exits non-zero with the
      // reason on stderr); DHCP only (--port=0: no DNS); as root (the Debian
      // 13 root has no dnsmasq user); everything under ovsDir.
      const d = await inNs([
        'dnsmasq', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--port=0',
        '--interface=eth0', '--bind-interfaces', '--dhcp-authoritative',
        `--dhcp-range=${o.dhcp.range[0]},${o.dhcp.range[1]},${netmask(prefix)},1h`, ...hosts,
        `--dhcp-leasefile=${files.leases}`, `--pid-file=${files.pid}`, `--log-facility=${files.log}`, '--log-dhcp',
        '--user=root', '--group=root',
      ], 30_000, false);
      if (d.exitCode !== 0) throw new Error(`ovs: dnsmasq on peer ${o.name} failed (exit ${d.exitCode}): ${d.stderr.trim()}`);
    }
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return peer;
}

// ------------------------------------------------------------------ guests

export interface OvsGuestSpec {
  name: string;
  mac: string;
  /** The address the guest must report (the peer's dnsmasq reservation). */
  ip: string;
  bridge: string;
  /** <vlan><tag id=…/></vlan>; none: no <vlan>. */
  tag?: number;
  /** <virtualport type='openvswitch'><parameters interfaceid=…/></virtualport>; none: libvirt picks. */
  interfaceid?: string;
}

/** The OVS <interface> for spec (what replaces defineGuest's <interface type='network'>). */
export function ovsInterfaceXml(g: Pick<OvsGuestSpec, 'mac' | 'bridge' | 'tag' | 'interfaceid'>): string {
  const i = create().ele('interface', { type: 'bridge' });
  i.ele('mac', { address: g.mac.toLowerCase() });
  i.ele('source', { bridge: g.bridge });
  const vp = i.ele('virtualport', { type: 'openvswitch' });
  if (g.interfaceid !== undefined) vp.ele('parameters', { interfaceid: g.interfaceid });
  if (g.tag !== undefined) i.ele('vlan').ele('tag', { id: String(g.tag) });
  i.ele('model', { type: 'virtio' });
  return i.end({ headless: true, prettyPrint: true });
}

const NETWORK_IFACE_RE = /<interface type=(['"])network\1>[\s\S]*?<\/interface>/g;

/**
 * Defines the sandbox's test guest (sb.defineGuest, so sb.guestReady and
 * sb.startGuest work for it) with its NIC on an OVS bridge: the definition's
 * one <interface type='network'> is replaced by ovsInterfaceXml(g) and the
 * domain redefined. Returns the inactive XML libvirt kept.
 */
export async function defineOvsGuest(sb: Sandbox, g: OvsGuestSpec): Promise<string> {
  await sb.defineGuest({ name: g.name, mac: g.mac, ip: g.ip, reserve: false });
  const xml = (await sb.virsh('dumpxml', '--inactive', '--domain', g.name)).stdout;
  const found = xml.match(NETWORK_IFACE_RE) ?? [];
  if (found.length !== 1) throw new Error(`ovs: expected one <interface type='network'> in ${g.name}'s XML, found ${found.length}`);
  const file = path.join(sb.dir, `domain-${guestLabel(g.name)}-ovs.xml`);
  await fs.writeFile(file, xml.replace(NETWORK_IFACE_RE, ovsInterfaceXml(g)));
  await sb.virsh('define', '--file', file);
  return (await sb.virsh('dumpxml', '--inactive', '--domain', g.name)).stdout;
}

/** The running guest's tap (its <target dev=…/>), e.g. vnet0. */
export async function guestTap(sb: Sandbox, name: string): Promise<string> {
  const xml = (await sb.virsh('dumpxml', '--domain', name)).stdout;
  const dev = /<target dev=['"]([^'"]+)['"]/.exec(xml)?.[1];
  if (!dev) throw new Error(`ovs: ${name} has no <target dev=…/> (not running?)`);
  return dev;
}

/** The interfaceid in a domain XML's <virtualport type='openvswitch'>, if any. */
export function interfaceIdOf(xml: string): string | undefined {
  return /<virtualport type=['"]openvswitch['"]>\s*<parameters interfaceid=['"]([^'"]+)['"]/.exec(xml)?.[1];
}

// libvirt's own run-time files, read-only: what hooks may consult instead of
// the libvirt API (the daemon is waiting for them).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseDomainStatus, type DomainInfo } from '../xml/domain.js';
import { parseNetwork, type NetworkInfo } from '../xml/network.js';
import { errorMessage } from '../errors.js';
import { deepFrozen } from '../frozen.js';

/** A domain libvirt runs now, from /run/libvirt/qemu/*.xml whose QEMU pid is alive. */
export interface RunningDomain {
  domain: DomainInfo;
}

/** What libvirt's status files say runs now. */
export interface Running {
  /**
   * UUIDs of the running domains, read with two patterns (the UUID and the
   * QEMU pid), so a status file virtwire's parser would choke on still counts
   * as running — liveness decides whether a VM's forwards are dropped, and
   * must not err that way.
   */
  uuids: Set<string>;
  /** Fully parsed, only when asked for (`parse`); files that do not parse are reported through `problem`. */
  domains: RunningDomain[];
}

/**
 * The domains libvirt runs now, from /run/libvirt/qemu/*.xml whose QEMU pid
 * is alive, each file read once. A status file's name is the domain name,
 * which can hold anything, so liveness is decided by the UUID inside, never
 * by building a path from a name.
 */
export function readRunning(libvirtRunDir: string, parse: boolean, problem: (msg: string) => void = () => {}): Running {
  const out: Running = { uuids: new Set(), domains: [] };
  const dir = join(libvirtRunDir, 'qemu');
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.xml'));
  } catch {
    return out;
  }
  const files = names.map((n) => join(dir, n));
  forgetStatusBut(dir, files);
  for (const file of files) {
    const status = readStatus(file);
    if (!status?.uuid || (status.pid !== undefined && !existsSync(`/proc/${status.pid}`))) continue;
    out.uuids.add(status.uuid);
    if (!parse) continue;
    parseStatus(status, file);
    if (status.domain) out.domains.push({ domain: status.domain });
    else if (status.problem) problem(status.problem);
  }
  return out;
}

/** One status file as readRunning uses it: its QEMU pid and UUID, and (once asked for) the parsed domain or why it does not parse. */
interface StatusRead {
  text: string;
  pid?: string;
  uuid?: string;
  domain?: DomainInfo;
  problem?: string;
}

/**
 * Status files read before, by file, with the text each came from: a start
 * checks itself against every running VM, and parsing each one's status
 * file anew (~1–4 ms each here, most of it the QEMU capabilities libvirt
 * keeps there) made every start cost more the more VMs the host runs. The
 * watcher serves every start: it parses a VM's file once per change. Reading
 * the bytes and comparing them is a small part of a parse, and never hands
 * out a domain the file no longer holds. Handed out again and again, the
 * domain is frozen.
 */
const statusRead = new Map<string, StatusRead>();

/** Drops what was read of `dir`'s status files that are gone. */
function forgetStatusBut(dir: string, files: readonly string[]): void {
  const present = new Set(files);
  for (const file of statusRead.keys()) if (file.startsWith(`${dir}/`) && !present.has(file)) statusRead.delete(file);
}

/**
 * A status file's QEMU pid and UUID, read with two patterns, so a file
 * virtwire's parser would choke on still counts as running (see Running);
 * undefined when it is gone (the domain stopped).
 */
function readStatus(file: string): StatusRead | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    statusRead.delete(file);
    return undefined;
  }
  let r = statusRead.get(file);
  if (r?.text !== text) {
    r = {
      text,
      pid: /<domstatus\b[^>]*\bpid=['"](\d+)['"]/.exec(text)?.[1],
      uuid: /<domain\b[\s\S]*?<uuid>\s*([0-9a-fA-F-]{36})\s*<\/uuid>/.exec(text)?.[1]?.toLowerCase(),
    };
    statusRead.set(file, r);
  }
  return r;
}

/** The domain of a status file read by readStatus, parsed once per text (or why it does not parse). */
function parseStatus(r: StatusRead, file: string): void {
  if (r.domain !== undefined || r.problem !== undefined) return;
  try {
    r.domain = deepFrozen(parseDomainStatus(r.text, file).domain);
  } catch (err) {
    r.problem = `cannot read libvirt status file ${file}: ${errorMessage(err)}`;
  }
}

/** The live network from libvirt's status file (/run/libvirt/network/NAME.xml). */
export function readNetworkStatus(libvirtRunDir: string, name: string): NetworkInfo | undefined {
  if (!/^[^/\0]+$/.test(name) || name === '.' || name === '..') return undefined;
  let xml: string;
  try {
    xml = readFileSync(join(libvirtRunDir, 'network', `${name}.xml`), 'utf8');
  } catch {
    return undefined;
  }
  return parseNetwork(xml);
}

/** One DHCP lease dnsmasq handed out on a libvirt network (libvirt's leaseshelper keeps them as JSON). */
export interface Lease {
  ip: string;
  mac?: string;
  hostname?: string;
  /** DHCPv6: the client's DUID (lowercase hex bytes with colons) and IAID, as libvirt's leaseshelper records them. */
  clientId?: string;
  iaid?: string;
  /** Seconds since the epoch; 0 = never expires. */
  expiry: number;
}

/** Leases on a network's bridge, from /var/lib/libvirt/dnsmasq/BRIDGE.status; [] when there is none. */
export function readLeases(libvirtLibDir: string, bridge: string | undefined): Lease[] {
  if (!bridge || !/^[A-Za-z0-9_.:-]{1,15}$/.test(bridge)) return [];
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(join(libvirtLibDir, 'dnsmasq', `${bridge}.status`), 'utf8'));
  } catch {
    return [];
  }
  if (!Array.isArray(doc)) return [];
  const out: Lease[] = [];
  for (const l of doc as Array<Record<string, unknown>>) {
    const ip = l?.['ip-address'];
    if (typeof ip !== 'string') continue;
    const mac = l['mac-address'];
    const hostname = l.hostname;
    const expiry = l['expiry-time'];
    const clientId = l['client-id'];
    const iaid = l.iaid;
    out.push({
      ip,
      mac: typeof mac === 'string' ? mac.toLowerCase() : undefined,
      hostname: typeof hostname === 'string' ? hostname : undefined,
      ...(typeof clientId === 'string' ? { clientId: clientId.toLowerCase() } : {}),
      ...(typeof iaid === 'string' || typeof iaid === 'number' ? { iaid: String(iaid) } : {}),
      expiry: typeof expiry === 'number' ? expiry : 0,
    });
  }
  return out;
}

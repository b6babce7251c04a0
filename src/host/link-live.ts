// Host links virtwire creates for bindings (model/host.ts LinkObject): read
// with `ip -j -d link` / `ip -j addr`, created and removed with `ip link`.
// Every value is checked again here, on its way into a command.
import type { Runner } from './run.js';
import { mustRun } from './run.js';
import type { LinkObject } from '../model/host.js';
import { IFNAME } from '../model/ids.js';
import { parseIp, formatIp } from '../model/addr.js';

/** A link as the kernel has it. */
export interface LiveLink {
  /** linkinfo's kind ("vlan", "macvlan"…); undefined for a plain device. */
  kind?: string;
  /** The link it sits on, when it has one in this namespace. */
  lower?: string;
  vid?: number;
  mode?: string;
  up: boolean;
  /** Its addresses, "ADDRESS/PREFIX". */
  addresses: string[];
}

function checked(l: LinkObject): LinkObject {
  const bad = (what: string): never => { throw new Error(`refusing to pass ${what} of ${JSON.stringify(l.name)} to ip`); };
  if (!IFNAME.test(l.name)) bad('the name');
  if (!IFNAME.test(l.lower)) bad('the lower link');
  if (l.kind === 'vlan' && !(Number.isInteger(l.vid) && l.vid >= 1 && l.vid <= 4094)) bad('the VLAN id');
  if (l.kind === 'shim') {
    const ip = parseIp(l.address);
    if (typeof ip === 'string' || formatIp(ip) !== l.address) bad('the address');
    const max = typeof ip === 'string' ? 0 : ip.family === 4 ? 32 : 128;
    if (!(Number.isInteger(l.prefix) && l.prefix >= 1 && l.prefix <= max)) bad('the prefix');
  }
  return l;
}

/** The link named `name`, or undefined when there is none. */
export async function readLiveLink(run: Runner, name: string): Promise<LiveLink | undefined> {
  if (!IFNAME.test(name)) throw new Error(`not an interface name: ${JSON.stringify(name)}`);
  const r = await run(['ip', '-j', '-d', 'link', 'show', 'dev', name], { timeoutMs: 15_000 });
  if (r.exitCode !== 0) {
    if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined;
    throw new Error(`ip link show ${name} failed: ${r.stderr.trim()}`);
  }
  const [link] = JSON.parse(r.stdout) as Array<{ flags?: string[]; link?: string; linkinfo?: { info_kind?: string; info_data?: { id?: number; mode?: string } } }>;
  if (!link) return undefined;
  const a = await run(['ip', '-j', 'addr', 'show', 'dev', name], { timeoutMs: 15_000 });
  const [addr] = a.exitCode === 0 ? JSON.parse(a.stdout) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number; scope?: string }> }> : [];
  return {
    kind: link.linkinfo?.info_kind,
    lower: link.link,
    vid: link.linkinfo?.info_data?.id,
    mode: link.linkinfo?.info_data?.mode,
    up: link.flags?.includes('UP') ?? false,
    addresses: (addr?.addr_info ?? []).filter((x) => x.scope !== 'link').map((x) => `${x.local}/${x.prefixlen}`),
  };
}

/** Why an existing link is not the one wanted (so virtwire must not use it), or undefined. */
export function linkMismatch(want: LinkObject, live: LiveLink): string | undefined {
  if (want.kind === 'vlan') {
    if (live.kind !== 'vlan' || live.lower !== want.lower || live.vid !== want.vid) {
      return `it is ${live.kind === 'vlan' ? `VLAN ${live.vid} of ${live.lower ?? 'a link elsewhere'}` : `a ${live.kind ?? 'plain'} link`}, not VLAN ${want.vid} of ${want.lower}`;
    }
    return undefined;
  }
  if (live.kind !== 'macvlan' || live.lower !== want.lower || live.mode !== 'bridge') {
    return `it is ${live.kind === 'macvlan' ? `a macvlan in mode ${live.mode} on ${live.lower ?? 'a link elsewhere'}` : `a ${live.kind ?? 'plain'} link`}, not a bridge-mode macvlan on ${want.lower}`;
  }
  return undefined;
}

/** Creates the link (and gives a shim its address), up. Throws with ip's own words and the likely fix. */
export async function createLink(run: Runner, link: LinkObject): Promise<void> {
  const l = checked(link);
  const add = l.kind === 'vlan'
    ? ['ip', 'link', 'add', 'link', l.lower, 'name', l.name, 'type', 'vlan', 'id', String(l.vid)]
    : ['ip', 'link', 'add', 'link', l.lower, 'name', l.name, 'type', 'macvlan', 'mode', 'bridge'];
  const r = await run(add, { timeoutMs: 15_000 });
  if (r.exitCode !== 0) {
    const said = r.stderr.trim().split('\n')[0] ?? `exit ${r.exitCode}`;
    const hint = /Unknown device type|not supported/i.test(said)
      ? (l.kind === 'vlan' ? '; this kernel has no 802.1Q VLAN support (modprobe 8021q, or a kernel built with it)' : '; this kernel has no macvlan support (modprobe macvlan)')
      : /Cannot find device/i.test(said) ? `; the host has no link ${l.lower}` : '';
    throw new Error(`cannot create ${l.kind === 'vlan' ? `the VLAN sub-interface ${l.name}` : `the host shim ${l.name}`} on ${l.lower} (ip: ${said})${hint}`);
  }
  await settleLink(run, l, { up: false, addresses: [] });
}

/** Brings a link up and gives a shim its address, where it lacks them. */
export async function settleLink(run: Runner, link: LinkObject, live: Pick<LiveLink, 'up' | 'addresses'>): Promise<string[]> {
  const l = checked(link);
  const done: string[] = [];
  if (l.kind === 'shim' && !live.addresses.includes(`${l.address}/${l.prefix}`)) {
    await mustRun(run, ['ip', 'addr', 'add', `${l.address}/${l.prefix}`, 'dev', l.name]);
    done.push(`address ${l.address}/${l.prefix} on ${l.name}`);
  }
  if (!live.up) {
    await mustRun(run, ['ip', 'link', 'set', 'dev', l.name, 'up']);
    done.push(`${l.name} up`);
  }
  return done;
}

export async function deleteLink(run: Runner, name: string): Promise<void> {
  if (!IFNAME.test(name)) throw new Error(`not an interface name: ${JSON.stringify(name)}`);
  await mustRun(run, ['ip', 'link', 'delete', 'dev', name]);
}

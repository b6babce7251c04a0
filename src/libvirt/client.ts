// virtwire's libvirt client: a typed API over virsh (virsh.ts). Domains and
// networks are addressed by UUID: virsh resolves an argument as an ID, then a
// UUID, then a name, so a name such as "7" or one spelled like another
// domain's UUID would be ambiguous; a UUID never parses as an ID. Every read
// checks that what came back carries the UUID asked for (a lookup that missed
// the UUID and matched a domain *named* so is "no such domain").
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { child, parseXml, text } from '../xml/parse.js';
import { LibvirtError } from './errors.js';
import { Virsh, type CallOptions, type VirshOptions } from './virsh.js';

export interface LibvirtClientOptions extends VirshOptions {
  /**
   * Where `define` writes the XML it hands to a batch virsh (a 0600 file in
   * a private 0700 directory, removed after use); virsh must see it at the
   * same path (default: os.tmpdir()). false: define runs a one-shot virsh
   * that reads the XML from stdin (`define --file /dev/stdin`, stdin a
   * nameless file: virsh needs no path to it, in any mount namespace).
   */
  tempDir?: string | false;
}

export type DomainState = 'running' | 'paused' | 'shut off' | 'other';

export interface Domain {
  uuid: string;
  /** Byte for byte as libvirt has it. */
  name: string;
  state: DomainState;
  persistent: boolean;
}

export interface Network {
  uuid: string;
  name: string;
  active: boolean;
  persistent: boolean;
}

/** A DHCP reservation: IPv4 by mac; IPv6 by id (DUID) and/or name (libvirt's IPv6 <host> has no mac). */
export interface DhcpHost {
  mac?: string;
  id?: string;
  name?: string;
  ip: string;
}

/** Where a change applies: the running object (live), the persistent definition (config). */
export interface Scope {
  live?: boolean;
  config?: boolean;
}

export interface DefineOptions {
  /** Check the XML against libvirt's schema first (`--validate`). */
  validate?: boolean;
  timeoutMs?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RO: CallOptions = { readOnly: true };

/** A UUID in libvirt's form (lowercase, dashed), or a LibvirtError naming the command. */
function uuidArg(uuid: string, command: string): string {
  const u = uuid.toLowerCase();
  if (!UUID.test(u)) throw new LibvirtError('invalid-argument', `${JSON.stringify(uuid)} is not a UUID`, [command]);
  return u;
}

/** virsh prints one trailing newline after a value (domname, net-name). */
function chomp(out: string): string {
  return out.endsWith('\n') ? out.slice(0, -1) : out;
}

function uuidLines(out: string, command: string[]): string[] {
  const lines = out.split('\n').filter((l) => l !== '');
  for (const l of lines) if (!UUID.test(l)) throw new LibvirtError('other', `unexpected line in virsh's UUID list: ${JSON.stringify(l)}`, command);
  return lines;
}

/** The value of a "Key:   value" line of dominfo / net-info. */
function field(out: string, key: string): string | undefined {
  for (const l of out.split('\n')) if (l.startsWith(`${key}:`)) return l.slice(key.length + 1).trim();
  return undefined;
}

function isKind(err: unknown, ...kinds: string[]): boolean {
  return err instanceof LibvirtError && kinds.includes(err.kind);
}

/** <name> and <uuid> of a domain or network XML (undefined where absent or unparsable). */
function identity(xml: string, root: 'domain' | 'network'): { name?: string; uuid?: string } {
  try {
    const el = child(parseXml(xml), root);
    return { name: text(child(el, 'name')), uuid: text(child(el, 'uuid'))?.trim().toLowerCase() };
  } catch {
    return {};
  }
}

function scopeFlags(scope: Scope): string[] {
  return [...(scope.live ? ['--live'] : []), ...(scope.config ? ['--config'] : [])];
}

/** An XML attribute value in single quotes; control characters as character references. */
function xmlAttr(value: string): string {
  return `'${value.replace(/[&<>"'\x00-\x1f]/g, (c) => `&#${c.charCodeAt(0)};`)}'`;
}

/** <host …/> for net-update ip-dhcp-host, from checked fields. */
export function dhcpHostXml(h: DhcpHost): string {
  const bad = (what: string) => new LibvirtError('invalid-argument', `DHCP host: ${what}`, ['net-update']);
  if (isIP(h.ip) === 0) throw bad(`ip ${JSON.stringify(h.ip)} is not an IP address`);
  if (h.mac !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(h.mac)) throw bad(`mac ${JSON.stringify(h.mac)} is not a MAC address`);
  if (h.id !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2})+$/i.test(h.id)) throw bad(`id ${JSON.stringify(h.id)} is not a DUID (hex bytes separated by colons)`);
  if (h.mac === undefined && h.id === undefined && h.name === undefined) throw bad('needs a mac, an id or a name');
  // libvirt 9 and 11 write a DHCP host's name into the network XML without
  // escaping it (name='…'): with ' < or & the XML it re-reads is broken and
  // the update fails ("attributes construct error"); a tab or newline would
  // come back as a space (XML attribute normalization). Say so up front.
  if (h.name !== undefined && /['<&\x00-\x1f]/.test(h.name)) {
    throw bad(`name ${JSON.stringify(h.name)} holds ' < & or a control character, which libvirt writes unescaped into the network XML`);
  }
  const attrs = (['mac', 'id', 'name', 'ip'] as const).filter((k) => h[k] !== undefined).map((k) => `${k}=${xmlAttr(h[k] as string)}`);
  return `<host ${attrs.join(' ')}/>`;
}

export class LibvirtClient {
  readonly virsh: Virsh;
  private readonly tempDir: string | false;
  private privateDir: Promise<string> | undefined;
  private files = 0;

  constructor(opts: LibvirtClientOptions = {}) {
    this.virsh = new Virsh(opts);
    this.tempDir = opts.tempDir ?? os.tmpdir();
  }

  /** Ends the batch virsh and removes the private temp directory. */
  async close(): Promise<void> {
    await this.virsh.close();
    const dir = await this.privateDir?.catch(() => undefined);
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    this.privateDir = undefined;
  }

  // ------------------------------------------------------------ domains

  /** Every domain (running or not): `list --all --uuid`, state and persistence by list filters, names by `domname`. */
  async listDomains(): Promise<Domain[]> {
    const list = async (...flags: string[]) => uuidLines(await this.virsh.run(['list', '--uuid', ...flags], RO), ['list', ...flags]);
    const all = await list('--all');
    const running = new Set(await list('--state-running'));
    const paused = new Set(await list('--state-paused'));
    const shutoff = new Set(await list('--all', '--state-shutoff'));
    const persistent = new Set(await list('--all', '--persistent'));
    const out: Domain[] = [];
    for (const uuid of all) {
      const name = await this.domainName(uuid);
      if (name === undefined) continue; // undefined meanwhile
      const state: DomainState = running.has(uuid) ? 'running' : paused.has(uuid) ? 'paused' : shutoff.has(uuid) ? 'shut off' : 'other';
      out.push({ uuid, name, state, persistent: persistent.has(uuid) });
    }
    return out;
  }

  /** The UUIDs of every domain (running or not): one `list --all --uuid`, no name per domain. */
  async listDomainUuids(): Promise<string[]> {
    return uuidLines(await this.virsh.run(['list', '--uuid', '--all'], RO), ['list', '--all']);
  }

  /** The domain with this UUID, or undefined. */
  async getDomain(uuid: string): Promise<Domain | undefined> {
    const u = uuidArg(uuid, 'dominfo');
    let info: string;
    try {
      info = await this.virsh.run(['dominfo', '--domain', u], RO);
    } catch (err) {
      if (isKind(err, 'no-domain')) return undefined;
      throw err;
    }
    if (field(info, 'UUID')?.toLowerCase() !== u) return undefined; // matched a domain *named* u
    const name = await this.domainName(u);
    if (name === undefined) return undefined;
    const st = field(info, 'State');
    const state: DomainState = st === 'running' || st === 'paused' || st === 'shut off' ? st : 'other';
    return { uuid: u, name, state, persistent: field(info, 'Persistent') === 'yes' };
  }

  private async domainName(uuid: string): Promise<string | undefined> {
    try {
      return chomp(await this.virsh.run(['domname', '--domain', uuid], RO));
    } catch (err) {
      if (isKind(err, 'no-domain')) return undefined;
      throw err;
    }
  }

  /**
   * The domain's XML: live (default; the inactive one when it is shut off) or
   * the persistent definition (inactive). securityInfo: include secrets such
   * as graphics passwords — needed for XML that will be defined back, or the
   * define drops them.
   */
  async domainXml(uuid: string, opts: { inactive?: boolean; securityInfo?: boolean } = {}): Promise<string> {
    const u = uuidArg(uuid, 'dumpxml');
    const args = ['dumpxml', '--domain', u, ...(opts.inactive ? ['--inactive'] : []), ...(opts.securityInfo ? ['--security-info'] : [])];
    const xml = await this.virsh.run(args, RO);
    if (identity(xml, 'domain').uuid !== u) throw new LibvirtError('no-domain', `no domain with UUID ${u} (virsh found one by another key)`, args);
    return xml;
  }

  /**
   * Defines (creates or replaces) a persistent domain from XML; returns its
   * UUID and name. validate: check against libvirt's schema first.
   */
  async defineDomain(xml: string, opts: DefineOptions = {}): Promise<{ uuid: string; name: string }> {
    await this.define('define', xml, opts);
    return this.definedIdentity(xml, 'domain');
  }

  /** Defines (creates or replaces) a persistent network from XML; returns its UUID and name. */
  async defineNetwork(xml: string, opts: DefineOptions = {}): Promise<{ uuid: string; name: string }> {
    await this.define('net-define', xml, opts);
    return this.definedIdentity(xml, 'network');
  }

  /** `define`/`net-define` from a private temp file (batch) or from stdin (one-shot). */
  private async define(command: 'define' | 'net-define', xml: string, opts: DefineOptions): Promise<void> {
    const flags = opts.validate ? ['--validate'] : [];
    if (this.tempDir !== false && this.virsh.mode === 'batch') {
      const file = await this.writeTempFile(xml);
      try {
        await this.virsh.run([command, '--file', file, ...flags], { timeoutMs: opts.timeoutMs });
      } finally {
        await fs.rm(file, { force: true });
      }
    } else {
      await this.virsh.run([command, '--file', '/dev/stdin', ...flags], { input: xml, timeoutMs: opts.timeoutMs });
    }
  }

  /**
   * UUID and name of what was just defined from xml: the XML's own UUID when
   * it names that object, else the UUID virsh gives for the name — checked
   * by name either way (virsh may take a name for an ID or another UUID) —
   * else a scan of the list.
   */
  private async definedIdentity(xml: string, root: 'domain' | 'network'): Promise<{ uuid: string; name: string }> {
    const command = root === 'domain' ? 'define' : 'net-define';
    const { name, uuid: declared } = identity(xml, root);
    if (name === undefined) throw new LibvirtError('other', 'defined, but the XML has no <name> to find it by', [command]);
    const nameOf = (u: string) => (root === 'domain' ? this.domainName(u) : this.networkName(u));
    const own = declared?.replace(/-/g, '').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
    if (own && UUID.test(own) && (await nameOf(own)) === name) return { uuid: own, name };
    const byName = await this.virsh.run(root === 'domain' ? ['domuuid', '--domain', name] : ['net-uuid', '--network', name], RO).then(chomp, () => undefined);
    if (byName && UUID.test(byName) && (await nameOf(byName)) === name) return { uuid: byName, name };
    const hit = (root === 'domain' ? await this.listDomains() : await this.listNetworks()).find((d) => d.name === name);
    if (!hit) throw new LibvirtError(root === 'domain' ? 'no-domain' : 'no-network', `defined, but no ${root} named ${JSON.stringify(name)} is listed`, [command]);
    return { uuid: hit.uuid, name };
  }

  private async writeTempFile(content: string): Promise<string> {
    this.privateDir ??= fs.mkdtemp(path.join(this.tempDir as string, 'virtwire-virsh-')); // 0700
    const dir = await this.privateDir;
    const file = path.join(dir, `define-${++this.files}.xml`);
    await fs.writeFile(file, content, { mode: 0o600, flag: 'wx' });
    return file;
  }

  /** The domain's <metadata> element in namespace `uri` (as libvirt formats it), or undefined. inactive: from the persistent definition. */
  async domainMetadata(uuid: string, uri: string, opts: { inactive?: boolean } = {}): Promise<string | undefined> {
    const u = uuidArg(uuid, 'metadata');
    try {
      const out = await this.virsh.run(['metadata', '--domain', u, '--uri', uri, ...(opts.inactive ? ['--config'] : [])], RO);
      // virsh 11 prints an empty line where virsh 9 says "metadata not found".
      return out.trim() === '' ? undefined : out;
    } catch (err) {
      if (isKind(err, 'no-metadata')) return undefined;
      throw err;
    }
  }

  /** Sets the metadata element (namespace `uri`, prefix `key`) to `xml`. Scope default: libvirt's "current" (live if running, else config). */
  async setDomainMetadata(uuid: string, uri: string, key: string, xml: string, scope: Scope = {}): Promise<void> {
    const u = uuidArg(uuid, 'metadata');
    await this.virsh.run(['metadata', '--domain', u, '--uri', uri, '--key', key, '--set', xml, ...scopeFlags(scope)]);
  }

  async removeDomainMetadata(uuid: string, uri: string, scope: Scope = {}): Promise<void> {
    const u = uuidArg(uuid, 'metadata');
    await this.virsh.run(['metadata', '--domain', u, '--uri', uri, '--remove', ...scopeFlags(scope)]);
  }

  /**
   * The daemon's libvirt version, encoded as libvirt does (major × 1,000,000
   * + minor × 1,000 + micro): what the domain XML it accepts depends on.
   */
  async daemonVersion(): Promise<number> {
    const out = await this.virsh.run(['version', '--daemon'], RO);
    const m = /^Running against daemon: (\d+)\.(\d+)\.(\d+)/m.exec(out);
    if (!m) throw new LibvirtError('other', `virsh version --daemon printed no daemon version: ${JSON.stringify(out.slice(0, 200))}`, ['version', '--daemon']);
    return Number(m[1]) * 1_000_000 + Number(m[2]) * 1_000 + Number(m[3]);
  }

  /**
   * The interface backends the daemon's domain capabilities offer
   * (<interface supported='yes'><enum name='backendType'>): ['default',
   * 'passt'] on libvirt 11; [] where it lists none (libvirt 9.0).
   */
  async netBackendTypes(): Promise<string[]> {
    const caps = await this.virsh.run(['domcapabilities', '--virttype', 'qemu'], RO);
    const iface = /<interface supported='yes'>([\s\S]*?)<\/interface>/.exec(caps)?.[1] ?? '';
    const backends = /<enum name='backendType'>([\s\S]*?)<\/enum>/.exec(iface)?.[1] ?? '';
    return [...backends.matchAll(/<value>([^<]*)<\/value>/g)].map((m) => m[1] as string);
  }

  // ------------------------------------------------------------ networks

  /** Starts a defined network and marks it to start with the daemon. */
  async startNetwork(uuid: string, opts: { autostart?: boolean } = {}): Promise<void> {
    const u = uuidArg(uuid, 'net-start');
    if (opts.autostart) await this.virsh.run(['net-autostart', '--network', u]);
    await this.virsh.run(['net-start', '--network', u]);
  }

  /** Stops (if active) and undefines a network. */
  async removeNetwork(uuid: string): Promise<void> {
    const u = uuidArg(uuid, 'net-undefine');
    const n = await this.getNetwork(u);
    if (!n) return;
    if (n.active) await this.virsh.run(['net-destroy', '--network', u]);
    if (n.persistent) await this.virsh.run(['net-undefine', '--network', u]);
  }

  async listNetworks(): Promise<Network[]> {
    const list = async (...flags: string[]) => uuidLines(await this.virsh.run(['net-list', '--uuid', ...flags], RO), ['net-list', ...flags]);
    const all = await list('--all');
    const active = new Set(await list());
    const persistent = new Set(await list('--all', '--persistent'));
    const out: Network[] = [];
    for (const uuid of all) {
      const name = await this.networkName(uuid);
      if (name !== undefined) out.push({ uuid, name, active: active.has(uuid), persistent: persistent.has(uuid) });
    }
    return out;
  }

  async getNetwork(uuid: string): Promise<Network | undefined> {
    const u = uuidArg(uuid, 'net-info');
    let info: string;
    try {
      info = await this.virsh.run(['net-info', '--network', u], RO);
    } catch (err) {
      if (isKind(err, 'no-network')) return undefined;
      throw err;
    }
    if (field(info, 'UUID')?.toLowerCase() !== u) return undefined;
    const name = await this.networkName(u);
    if (name === undefined) return undefined;
    return { uuid: u, name, active: field(info, 'Active') === 'yes', persistent: field(info, 'Persistent') === 'yes' };
  }

  private async networkName(uuid: string): Promise<string | undefined> {
    try {
      return chomp(await this.virsh.run(['net-name', '--network', uuid], RO));
    } catch (err) {
      if (isKind(err, 'no-network')) return undefined;
      throw err;
    }
  }

  /** The network's XML: live (default) or the persistent definition (inactive). */
  async networkXml(uuid: string, opts: { inactive?: boolean } = {}): Promise<string> {
    const u = uuidArg(uuid, 'net-dumpxml');
    const args = ['net-dumpxml', '--network', u, ...(opts.inactive ? ['--inactive'] : [])];
    const xml = await this.virsh.run(args, RO);
    if (identity(xml, 'network').uuid !== u) throw new LibvirtError('no-network', `no network with UUID ${u} (virsh found one by another key)`, args);
    return xml;
  }

  /**
   * Adds, modifies (matched by mac, or id/name for IPv6) or deletes a DHCP
   * host reservation: `net-update … ip-dhcp-host`. parentIndex: which <ip>
   * of the network (the IPv6 one is usually 1). Scope default: live and config.
   */
  async updateDhcpHost(
    networkUuid: string,
    command: 'add' | 'modify' | 'delete',
    host: DhcpHost,
    opts: Scope & { parentIndex?: number } = {},
  ): Promise<void> {
    const u = uuidArg(networkUuid, 'net-update');
    const scope = { live: opts.live ?? true, config: opts.config ?? true };
    const parent = opts.parentIndex === undefined ? [] : ['--parent-index', String(opts.parentIndex)];
    if (opts.parentIndex !== undefined && !(Number.isInteger(opts.parentIndex) && opts.parentIndex >= 0)) {
      throw new LibvirtError('invalid-argument', `parentIndex ${opts.parentIndex} is not an index`, ['net-update']);
    }
    await this.virsh.run(['net-update', '--network', u, '--command', command, '--section', 'ip-dhcp-host', '--xml', dhcpHostXml(host), ...parent, ...scopeFlags(scope)]);
  }
}

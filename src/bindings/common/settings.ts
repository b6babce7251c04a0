// Reading a binding's own mapping (`bridge: {name: br0}`) with the same
// messages for every binding: unknown keys with "did you mean", required
// keys, interface names.
import { isMap, isScalar, type Node } from 'yaml';
import { didYouMean, type YamlFile } from '../../policy/yaml-doc.js';
import { quote } from '../../model/show.js';
import { IFNAME, NETWORK_NAME } from '../../model/ids.js';
import { formatIp, parseIp, subnetOf } from '../../model/addr.js';

/**
 * Calls `read` for each known key of the mapping at `node` (`what`: its key,
 * e.g. "bridge"); reports the rest. True when it found nothing to report, so
 * the caller may then say what is missing (and never on top of a problem).
 */
export function readMapping(y: YamlFile, node: Node | null, what: string, keys: readonly string[], read: (key: string, value: Node | null) => void): boolean {
  const before = y.problems.length;
  for (const [key, keyNode, value] of y.entries(node, what)) {
    if (keys.includes(key)) read(key, value);
    else y.report(keyNode, `unknown key ${quote(`${what}.${key}`)}${didYouMean(key, keys)}; allowed: ${keys.join(', ')}`);
  }
  return y.problems.length === before;
}

/** A host interface name (bridge, uplink), or undefined after reporting why not. */
export function readIfName(y: YamlFile, node: Node | null, what: string): string | undefined {
  const v = y.scalar(node);
  if (typeof v !== 'string' || !IFNAME.test(v)) {
    y.report(node, `${what} must be a network interface name (1 to 15 of letters, digits, "_", "." and "-"), found ${y.kindOf(node)}`);
    return undefined;
  }
  return v;
}

/** A libvirt network name virtwire may write or define, or undefined after reporting why not. */
export function readNetworkName(y: YamlFile, node: Node | null, what: string): string | undefined {
  const v = y.scalar(node);
  if (typeof v === 'string' && NETWORK_NAME.test(v)) return v;
  y.report(node, `${what} must be a libvirt network name (letters, digits, ".", "_" and "-", up to 64), found ${y.kindOf(node)}`);
  return undefined;
}

export function readBool(y: YamlFile, node: Node | null, what: string): boolean | undefined {
  const v = y.scalar(node);
  if (typeof v !== 'boolean') {
    y.report(node, `${what} must be true or false, found ${y.kindOf(node)}`);
    return undefined;
  }
  return v;
}

/** Where a template asks for something, for messages: "web.yaml:3:9" (file:line:column). */
export function at(y: YamlFile, node: Node | null): string {
  return y.where(node);
}

/** Whether the template has the top-level key (a missing required key is reported once, not on top of its own problem). */
export function hasKey(y: YamlFile, key: string): boolean {
  const root = y.root;
  return isMap(root) && root.items.some((p) => isScalar(p.key) && p.key.value === key);
}

/** Reports a required top-level key that is missing. */
export function requireKey(y: YamlFile, key: string, message: string): void {
  if (!hasKey(y, key)) y.report(y.root, message);
}

/** An address on a host link with its prefix (198.51.100.5/24): host bits are the point here. */
export interface HostAddress {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/** Reads `ADDRESS/PREFIX` for a host link; `families` limits the families allowed. */
export function readHostAddress(y: YamlFile, node: Node | null, what: string, families: ReadonlyArray<4 | 6> = [4, 6]): HostAddress | undefined {
  const v = y.scalar(node);
  const m = typeof v === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(v) : null;
  const ip = m ? parseIp(m[1] as string) : undefined;
  const prefix = Number(m?.[2]);
  const example = families.includes(4) ? '198.51.100.5/24' : 'fd00:1::5/64';
  if (!m || ip === undefined || typeof ip === 'string') {
    y.report(node, `${what} must be an address with its prefix, like ${example}; found ${y.kindOf(node)}${typeof ip === 'string' ? ` (${ip})` : ''}`);
    return undefined;
  }
  if (!families.includes(ip.family)) { y.report(node, `${what} must be an IPv${families.join(' or IPv')} address, found ${y.kindOf(node)}`); return undefined; }
  const maxPrefix = ip.family === 4 ? 30 : 126;
  if (prefix < 8 || prefix > maxPrefix) { y.report(node, `${what}: the prefix must be from /8 to /${maxPrefix} (room for the host and guests), found /${prefix}`); return undefined; }
  const subnet = subnetOf(formatIp(ip), prefix);
  if (ip.value === subnet.first || (ip.family === 4 && ip.value === subnet.last)) {
    y.report(node, `${what}: ${formatIp(ip)} is the ${ip.value === subnet.first ? 'network' : 'broadcast'} address of ${subnet.text}; give the host an address inside it`);
    return undefined;
  }
  return { address: formatIp(ip), prefix, family: ip.family };
}

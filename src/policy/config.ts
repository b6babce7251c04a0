import { YamlFile, didYouMean, kindOf, formatProblem } from './yaml-doc.js';
import { formatRange, parsePortRange, rangeInside, type PortRange } from '../model/ports.js';
import type { Node } from 'yaml';
import { UserError } from '../errors.js';
import { ParseCache } from './parse-cache.js';
import { readTrustedFile, MAX_POLICY_FILE_BYTES } from './trust.js';
import { quote } from '../model/show.js';

/** /etc/virtwire/virtwire.yaml: host-wide settings. Every key is optional. */
export interface GlobalConfig {
  forwards: {
    /** Host ports a domain's own <metadata> may claim (templates are the admin's and are not limited). */
    allowedHostPorts: PortRange[];
    /**
     * The pool `virtwire apply` allocates host ports from, for template
     * forwards with `host: auto` and port blocks. Inside allowedHostPorts.
     */
    autoPorts: PortRange[];
  };
  firewall: {
    /**
     * Conntrack mark bit virtwire sets on connections it DNATs, so one generic
     * accept in libvirt's FORWARD chain (iptables) or guest_input chain
     * (nftables) lets exactly those through. Change it only if another tool uses it.
     */
    mark: number;
  };
  /**
   * Bounds on the work a VM start can cause while every other hook waits for
   * the lock. An element is one entry of the nft map: a forward of N host
   * ports with S `from` sources is N × S elements per address family.
   */
  limits: Limits;
  sriov: {
    /**
     * PFs whose VFs a template may give `trust: true` (a trusted VF can set
     * its own MAC, promiscuous mode and more multicast): the admin's explicit
     * choice, PF by PF. Empty: none.
     */
    trustPfs: string[];
  };
}

export interface Limits {
  elementsPerForward: number;
  elementsPerVm: number;
  elementsPerHost: number;
  /** <forward> elements a domain's own metadata may ask for. */
  metadataForwardsPerVm: number;
}

export const LIMIT_KEYS = ['elementsPerForward', 'elementsPerVm', 'elementsPerHost', 'metadataForwardsPerVm'] as const;
const LIMIT_MAX = 1_000_000;

/*
 * Defaults: a full 1024-port template range per forward; 8192 elements on
 * the host, which nft loads in under 1 s on a 2-core machine (16384 took
 * 2.7 s, 65536 took 33 s: the whole table is reloaded on every change).
 */
export const DEFAULT_CONFIG: GlobalConfig = {
  forwards: { allowedHostPorts: [{ lo: 1024, hi: 65535 }], autoPorts: [{ lo: 20000, hi: 29999 }] },
  firewall: { mark: 0x10000000 },
  limits: { elementsPerForward: 1024, elementsPerVm: 2048, elementsPerHost: 8192, metadataForwardsPerVm: 16 },
  sriov: { trustPfs: [] },
};

const TOP_KEYS = ['forwards', 'firewall', 'limits', 'sriov'];
const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

export function parseConfig(file: string, text: string): GlobalConfig {
  const y = new YamlFile(file, text);
  const cfg: GlobalConfig = structuredClone(DEFAULT_CONFIG);
  if (y.problems.length === 0 && y.root !== null) {
    for (const [key, keyNode, value] of y.entries(y.root, 'virtwire.yaml')) {
      if (key === 'forwards') readForwards(y, value, cfg);
      else if (key === 'firewall') {
        for (const [k, kn, v] of y.entries(value, 'firewall')) {
          if (k !== 'mark') { y.report(kn, `unknown key ${quote(`firewall.${k}`)}${didYouMean(k, ['mark'])}; allowed: mark`); continue; }
          const m = y.scalar(v);
          const n = typeof m === 'number' ? m : typeof m === 'string' && /^0x[0-9a-f]{1,8}$/i.test(m) ? Number(m) : NaN;
          if (!Number.isInteger(n) || n <= 0 || n > 0xffffffff || (n & (n - 1)) !== 0) {
            y.report(v, `firewall.mark must be a single bit such as 0x10000000, found ${kindOf(v)}`);
          } else cfg.firewall.mark = n;
        }
      } else if (key === 'limits') {
        for (const [k, kn, v] of y.entries(value, 'limits')) {
          if (!(LIMIT_KEYS as readonly string[]).includes(k)) { y.report(kn, `unknown key ${quote(`limits.${k}`)}${didYouMean(k, LIMIT_KEYS)}; allowed: ${LIMIT_KEYS.join(', ')}`); continue; }
          const n = y.scalar(v);
          if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > LIMIT_MAX) {
            y.report(v, `limits.${k} must be a whole number from 1 to ${LIMIT_MAX}, found ${kindOf(v)}`);
          } else cfg.limits[k as keyof Limits] = n;
        }
      } else if (key === 'sriov') {
        for (const [k, kn, v] of y.entries(value, 'sriov')) {
          if (k !== 'trustPfs') { y.report(kn, `unknown key ${quote(`sriov.${k}`)}${didYouMean(k, ['trustPfs'])}; allowed: trustPfs`); continue; }
          for (const item of y.items(v, 'sriov.trustPfs')) {
            const pf = y.scalar(item);
            if (typeof pf === 'string' && IFNAME_RE.test(pf)) cfg.sriov.trustPfs.push(pf);
            else y.report(item, `sriov.trustPfs entries are PF interface names, found ${kindOf(item)}`);
          }
        }
      } else y.report(keyNode, `unknown key ${quote(key)}${didYouMean(key, TOP_KEYS)}; allowed: ${TOP_KEYS.join(', ')}`);
    }
  }
  if (y.problems.length) {
    throw new UserError(`${y.problems.map(formatProblem).join('; ')} (fix ${file}, or remove it to use the defaults)`);
  }
  return cfg;
}

const FORWARDS_KEYS = ['allowedHostPorts', 'autoPorts'] as const;

function readForwards(y: YamlFile, value: Node | null, cfg: GlobalConfig): void {
  let autoNodes: Node[] | undefined;
  for (const [k, kn, v] of y.entries(value, 'forwards')) {
    if (!(FORWARDS_KEYS as readonly string[]).includes(k)) {
      y.report(kn, `unknown key ${quote(`forwards.${k}`)}${didYouMean(k, FORWARDS_KEYS)}; allowed: ${FORWARDS_KEYS.join(', ')}`);
      continue;
    }
    const nodes = y.items(v, `forwards.${k}`);
    const ranges: PortRange[] = [];
    for (const item of nodes) {
      const r = parsePortRange(y.scalar(item));
      if (typeof r === 'string') y.report(item, `forwards.${k}: ${r}`);
      else ranges.push(r);
    }
    cfg.forwards[k as (typeof FORWARDS_KEYS)[number]] = ranges;
    if (k === 'autoPorts') autoNodes = nodes;
  }
  const allowed = cfg.forwards.allowedHostPorts;
  if (!autoNodes) {
    // Not written: the default pool, as far as it lies inside allowedHostPorts.
    cfg.forwards.autoPorts = DEFAULT_CONFIG.forwards.autoPorts.flatMap((p) => clipRange(p, allowed));
    return;
  }
  for (const item of autoNodes) {
    const r = parsePortRange(y.scalar(item));
    if (typeof r !== 'string' && !rangeInside(r, allowed)) {
      y.report(item, `forwards.autoPorts: ${formatRange(r)} is not inside forwards.allowedHostPorts (${allowed.map(formatRange).join(', ')}); the pool must lie inside it: shrink it or widen allowedHostPorts`);
    }
  }
}

/** The parts of `r` inside `within`. */
function clipRange(r: PortRange, within: readonly PortRange[]): PortRange[] {
  return within.map((w) => ({ lo: Math.max(r.lo, w.lo), hi: Math.min(r.hi, w.hi) })).filter((c) => c.lo <= c.hi);
}

/** Loads the global config; an absent file means the defaults. `cacheFile`: keep its parse there between runs (parse-cache.ts). */
export function loadConfig(file: string, cacheFile?: string): GlobalConfig {
  let text: string;
  try {
    text = readTrustedFile(file, MAX_POLICY_FILE_BYTES);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(DEFAULT_CONFIG);
    throw err;
  }
  if (!cacheFile) return parseConfig(file, text);
  // A broken file throws here, and nothing is cached for it.
  const cache = new ParseCache(cacheFile);
  const config = cache.get('config', file, text, () => parseConfig(file, text));
  cache.save();
  return config;
}

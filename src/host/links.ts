// The host's network links as define-time checks see them: sysfs for Linux
// links and bridges, `ovs-vsctl list-br` for Open vSwitch. Read-only.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Runner } from './run.js';
import type { HostFacts, HostLink } from '../model/host.js';
import { IFNAME } from '../model/ids.js';
import { readPf } from './sriov.js';


/** /sys/class/net/NAME, under `sysRoot` (tests point it at a tree in a temp dir). */
export function readLink(sysRoot: string, name: string): HostLink | undefined {
  if (!IFNAME.test(name) || name === '.' || name === '..') return undefined;
  const dir = join(sysRoot, 'class', 'net', name);
  if (!existsSync(dir)) return undefined;
  const bridge = existsSync(join(dir, 'bridge'));
  const bridgePort = existsSync(join(dir, 'brport'));
  if (!bridge) return { bridge, bridgePort };
  let filtering: string | undefined;
  try { filtering = readFileSync(join(dir, 'bridge', 'vlan_filtering'), 'utf8').trim(); } catch { filtering = undefined; }
  // No vlan_filtering file: the kernel has no bridge VLAN filtering at all.
  return { bridge, bridgePort, ...(filtering === undefined ? {} : { vlanFiltering: filtering === '1' }) };
}

/**
 * Open vSwitch's bridges, or why they cannot be listed. ovs-vsctl waits for
 * ovsdb-server; bounded, so a stopped Open vSwitch is an answer, not a hang.
 */
export async function listOvsBridges(run: Runner): Promise<ReadonlySet<string> | string> {
  const r = await run(['ovs-vsctl', '--timeout=5', 'list-br'], { timeoutMs: 10_000 });
  if (r.exitCode !== 0) {
    const why = r.stderr.trim().split('\n')[0] ?? '';
    return r.exitCode === 127 ? 'ovs-vsctl is not installed (Debian package openvswitch-switch)' : `ovs-vsctl list-br failed: ${why || `exit ${r.exitCode}`}`;
  }
  return new Set(r.stdout.split('\n').map((l) => l.trim()).filter(Boolean));
}

/** HostFacts for one define-time run: sysfs read as asked, Open vSwitch asked once, only if a template needs it. */
export async function hostFacts(run: Runner, sysRoot = '/sys', needOvs = false, netBackends?: readonly string[]): Promise<HostFacts> {
  const ovs = needOvs ? await listOvsBridges(run) : 'not asked';
  return { link: (name) => readLink(sysRoot, name), ovsBridges: () => ovs, netBackends: () => netBackends, sriov: (pf) => readPf(sysRoot, pf) };
}

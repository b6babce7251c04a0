// A VLAN on a tap in a Linux bridge, set with `bridge vlan` at qemu start,
// where libvirt does not set it (a plain Linux bridge before libvirt 11.0).
// The tap exists and sits in its bridge then, and QEMU does not run yet: a
// failure aborts the start, so the guest never sees another VLAN's frames.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Runner } from './run.js';
import { mustRun } from './run.js';
import type { TapVlan } from '../model/host.js';
import { vidRuns } from '../model/vlan.js';
import { IFNAME } from '../model/ids.js';

const isVid = (v: number): boolean => Number.isInteger(v) && v >= 1 && v <= 4094;

/**
 * The `bridge vlan` commands, in order: the wanted VLANs added (the native
 * or access one as the port's untagged PVID), then the bridge's default PVID
 * (which every new port gets) removed, unless it is one of them.
 */
export function tapVlanCommands(tap: string, t: TapVlan, defaultPvid: number | undefined): string[][] {
  const ids = 'access' in t.vlan ? [t.vlan.access] : [...t.vlan.tagged, ...(t.vlan.native === undefined ? [] : [t.vlan.native])];
  if (!IFNAME.test(tap) || !IFNAME.test(t.bridge) || !ids.every(isVid)) throw new Error(`refusing to pass tap ${JSON.stringify(tap)} of bridge ${JSON.stringify(t.bridge)} and VLANs ${JSON.stringify(ids)} to bridge vlan`);
  const add = (vid: string, ...flags: string[]): string[] => ['bridge', 'vlan', 'add', 'dev', tap, 'vid', vid, ...flags];
  const cmds = 'access' in t.vlan
    ? [add(String(t.vlan.access), 'pvid', 'untagged')]
    : [...vidRuns(t.vlan.tagged).map((r) => add(r)), ...(t.vlan.native === undefined ? [] : [add(String(t.vlan.native), 'pvid', 'untagged')])];
  if (defaultPvid !== undefined && defaultPvid > 0 && !ids.includes(defaultPvid)) cmds.push(['bridge', 'vlan', 'del', 'dev', tap, 'vid', String(defaultPvid)]);
  return cmds;
}

/** The bridge's default PVID (0: none), from sysfs; undefined when the kernel has no VLAN filtering. */
export function bridgeDefaultPvid(sysRoot: string, bridge: string): number | undefined {
  if (!IFNAME.test(bridge)) return undefined;
  try {
    return Number(readFileSync(join(sysRoot, 'class', 'net', bridge, 'bridge', 'default_pvid'), 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Sets the VLAN(s) on the tap; throws with bridge's own words. */
export async function setTapVlan(run: Runner, sysRoot: string, tap: string, t: TapVlan): Promise<void> {
  for (const argv of tapVlanCommands(tap, t, bridgeDefaultPvid(sysRoot, t.bridge))) await mustRun(run, argv);
}

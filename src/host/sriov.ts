// SR-IOV physical functions as sysfs shows them (/sys/class/net/PF/device:
// sriov_totalvfs, sriov_numvfs, virtfnN → the VF's PCI device), and the VF
// settings no libvirt XML carries — trust, spoof checking, rate — set with
// `ip link set dev PF vf N …` at qemu start and reset at release. The sysfs
// root is a parameter: tests use a tree in a temp dir (no SR-IOV here).
import { readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Runner } from './run.js';
import type { PfInventory, VfSettings } from '../model/host.js';
import { IFNAME } from '../model/ids.js';
import { PCI_ADDRESS } from '../model/host.js';

/** The PF's VFs, or why it has none to give, saying how to fix it. */
export function readPf(sysRoot: string, pf: string): PfInventory | string {
  if (!IFNAME.test(pf)) return `${JSON.stringify(pf)} is not an interface name`;
  const dev = join(sysRoot, 'class', 'net', pf, 'device');
  const read = (f: string): string | undefined => { try { return readFileSync(join(dev, f), 'utf8').trim(); } catch { return undefined; } };
  const total = read('sriov_totalvfs');
  if (total === undefined) {
    try { readlinkSync(join(sysRoot, 'class', 'net', pf)); } catch { return `the host has no link ${pf}`; }
    return `${pf} is not an SR-IOV physical function (its device has no sriov_totalvfs)`;
  }
  const enabled = Number(read('sriov_numvfs') ?? '0');
  if (!Number.isInteger(enabled) || enabled < 1) {
    return `SR-IOV is not enabled on ${pf}: enable its VFs (echo N > /sys/class/net/${pf}/device/sriov_numvfs, up to ${total}) and make that persistent`;
  }
  const vfs = [];
  for (let index = 0; index < enabled; index++) {
    let target: string;
    try { target = readlinkSync(join(dev, `virtfn${index}`)); } catch { continue; }
    const pci = basename(target);
    if (PCI_ADDRESS.test(pci)) vfs.push({ index, pci });
  }
  return { pf, totalVfs: Number(total), vfs };
}

function checked(v: VfSettings): VfSettings {
  const ok = IFNAME.test(v.pf) && Number.isInteger(v.index) && v.index >= 0 && v.index < 4096
    && (v.maxTxRateMbps === undefined || (Number.isInteger(v.maxTxRateMbps) && v.maxTxRateMbps >= 0 && v.maxTxRateMbps <= 400_000));
  if (!ok) throw new Error(`refusing to pass VF ${JSON.stringify(v)} to ip`);
  return v;
}

const onOff = (b: boolean): string => (b ? 'on' : 'off');

/** The one command that gives the VF its template's settings; none when the template sets none. */
export function vfSetCommand(vf: VfSettings): string[] | undefined {
  const v = checked(vf);
  const args = [
    ...(v.trust === undefined ? [] : ['trust', onOff(v.trust)]),
    ...(v.spoofchk === undefined ? [] : ['spoofchk', onOff(v.spoofchk)]),
    ...(v.maxTxRateMbps === undefined ? [] : ['max_tx_rate', String(v.maxTxRateMbps)]),
  ];
  return args.length ? ['ip', 'link', 'set', 'dev', v.pf, 'vf', String(v.index), ...args] : undefined;
}

/**
 * A VF back to a known state, never "as the last guest left it": MAC zero,
 * no VLAN, trust off, spoof checking on, no rate limit. One command per
 * setting, so a driver that refuses one (some do not take a zero MAC) still
 * gets the others.
 */
export function vfResetCommands(vf: VfSettings): string[][] {
  const v = checked(vf);
  const set = (...a: string[]): string[] => ['ip', 'link', 'set', 'dev', v.pf, 'vf', String(v.index), ...a];
  return [set('mac', '00:00:00:00:00:00'), set('vlan', '0'), set('trust', 'off'), set('spoofchk', 'on'), set('max_tx_rate', '0')];
}

/** The PF's line for the VF in `ip link show` (its live MAC, VLAN, spoof checking, trust, rate), or undefined. */
export async function readVfLive(run: Runner, pf: string, index: number): Promise<string | undefined> {
  if (!IFNAME.test(pf)) return undefined;
  const r = await run(['ip', 'link', 'show', 'dev', pf], { timeoutMs: 15_000 });
  if (r.exitCode !== 0) return undefined;
  return r.stdout.split('\n').map((l) => l.trim()).find((l) => new RegExp(`^vf ${index}\\b`).test(l));
}

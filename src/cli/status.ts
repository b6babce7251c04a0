// What `virtwire status` shows per VM: its NICs as the templates wire them
// now and the forwards they give (cli/wire.ts, as plan and apply work them
// out), the record apply left in <metadata> against that (engine/record.ts),
// and the host against the ledger (engine/inspect.ts).
import type { LibvirtClient, Domain } from '../libvirt/client.js';
import type { TemplateSet } from '../policy/load.js';
import type { GlobalConfig } from '../policy/config.js';
import { reservedAddress } from '../xml/network.js';
import { bindingNamed } from '../bindings/registry.js';
import { staleRecord } from '../engine/record.js';
import { vmHostStatus, type HostState, type HostView } from '../engine/inspect.js';
import { describeForward } from '../plan/describe.js';
import { quoted, shellWord } from '../errors.js';
import { forwardRow } from './forwards.js';
import type { NetworkReader } from './reservations.js';
import { interfaceChanges, wireDomain } from './wire.js';
import type { DefineHost } from './define-host.js';

import type { PortRange } from '../model/ports.js';

/** One NIC of the domain's definition. */
export interface NicStatus {
  mac: string;
  /** Its libvirt network; null for another kind of interface (a bridge, …). */
  network: string | null;
  /** The template that wires it now, its binding and the binding's version; null when no template does. */
  template: string | null;
  binding: string | null;
  bindingVersion: number | null;
  /** What its binding attaches it to ("bridge br0, VLAN 100"), for bindings that attach NICs themselves; else null. */
  attached: string | null;
  /** Its definition is not attached that way yet ("virtwire apply" rewrites it). */
  attachPending: boolean;
  /** The SR-IOV VF it holds while it runs (the ledger), with the PF's live line for it (`ip link show PF`); null otherwise. */
  vf: { pf: string; index: number; pci: string; live: string | null } | null;
  /** The guest addresses its forwards go to, and its DHCP reservations. */
  addresses: string[];
  /** reserved: false when there is none yet ("virtwire apply" reserves this address). */
  reservations: Array<{ ip: string; reserved: boolean }>;
}

/** One VM, as `virtwire status --json` prints it (README "virtwire status"). */
export interface VmStatus {
  vm: string;
  uuid: string | null;
  /** libvirt's: running, paused, shut off, other; null when the VM could not be found. */
  state: string | null;
  /** Whether it has a persistent definition (a transient domain has none for apply to record in); null when not found. */
  persistent: boolean | null;
  nics: NicStatus[];
  /** As `virtwire forwards --json` shows them, plus `text`: the line the human output prints. */
  forwards: Array<Record<string, string>>;
  record: { state: 'none' | 'current' | 'stale' | 'unknown'; differences: string[] };
  host: { state: HostState | 'unknown'; problems: string[] };
  /** Why the VM could not be read (then record and host are "unknown"); null otherwise. */
  error: string | null;
}

export function failedStatus(name: string, error: string, d?: Domain): VmStatus {
  return {
    vm: name, uuid: d?.uuid ?? null, state: d?.state ?? null, persistent: d?.persistent ?? null, nics: [], forwards: [],
    record: { state: 'unknown', differences: [] }, host: { state: 'unknown', problems: [] }, error,
  };
}

export interface StatusSources {
  client: LibvirtClient;
  /** The daemon's version and the host's links (the NICs' attachments are checked as apply checks them). */
  host: DefineHost;
  networks: NetworkReader;
  templates: TemplateSet;
  config: GlobalConfig;
  /** The ledger and live host, read once. */
  hostView: () => Promise<HostView>;
  /** Host ports apply allocated (the allocation store). */
  allocated: (uuid: string, mac: string, key: string) => PortRange | undefined;
  /** The PF's `ip link show` line for a VF (its live MAC, VLAN, spoof checking, trust, rate). */
  vfLive: (pf: string, index: number) => Promise<string | undefined>;
}

/** One domain's status. Throws (UserError) when it cannot be worked out. */
export async function vmStatus(src: StatusSources, d: Domain): Promise<VmStatus> {
  const w = await wireDomain(src.client, src.networks, src.templates, src.config, d, { forDefine: false, host: src.host, allocated: src.allocated });
  const running = d.state === 'running' || d.state === 'paused';
  const differences = staleRecord(w.domain, w.plan);
  const entry = running ? (await src.hostView()).entries.find((e) => e.uuid === d.uuid) : undefined;
  const vfs = new Map<string, NicStatus['vf']>();
  for (const n of entry?.nics ?? []) {
    if (n.vf) vfs.set(n.mac, { pf: n.vf.pf, index: n.vf.index, pci: n.vf.pci, live: (await src.vfLive(n.vf.pf, n.vf.index)) ?? null });
  }
  const nics = w.domain.nics.map((n): NicStatus => {
    const wired = w.plan.nics.find((p) => p.mac === n.mac);
    const net = n.network === undefined ? undefined : src.networks.peek(n.network);
    const reservations = !wired || !net ? [] : ([4, 6] as const).flatMap((family) => {
      const r = reservedAddress(net, family, n.mac, w.domain.name);
      return r ? [{ ip: r.ip, reserved: !w.reservations.some((p) => p.mac === n.mac && p.ip === r.ip) }] : [];
    });
    const addresses = [...new Set([...w.plan.forwards.filter((f) => f.nic === n.mac).map((f) => f.guestAddr), ...reservations.map((r) => r.ip)])];
    return {
      mac: n.mac, network: n.network ?? null, template: wired?.template ?? null, binding: wired?.binding ?? null,
      bindingVersion: wired ? bindingNamed(wired.binding).version : null, attached: wired?.attached ?? null,
      attachPending: wired?.attached !== undefined && interfaceChanges(w.xmlBefore, w.xmlAfter, n.index), vf: vfs.get(n.mac) ?? null, addresses, reservations,
    };
  });
  return {
    vm: d.name, uuid: d.uuid, state: d.state, persistent: d.persistent, nics,
    forwards: w.plan.forwards.map((f) => ({ ...forwardRow(f), text: describeForward(f) })),
    record: { state: w.domain.metadata.record === undefined ? 'none' : differences.length ? 'stale' : 'current', differences },
    host: vmHostStatus(await src.hostView(), { uuid: d.uuid, name: d.name, running, wanted: w.plan.forwards.length }),
    error: null,
  };
}

/** Whether `virtwire status` must exit 1 for this VM. */
export function statusFails(s: VmStatus): boolean {
  return s.error !== null || s.host.problems.length > 0;
}

/** The human output: one block per VM, one line per NIC and per forward; problems one line each. */
export function renderStatus(vms: readonly VmStatus[], strays: readonly string[]): string {
  const lines: string[] = [];
  for (const s of vms) {
    const vm = `VM ${quoted(s.vm)}`;
    if (s.error !== null) { lines.push(`${vm}: error: ${s.error}`); continue; }
    const apply = `"virtwire apply ${shellWord(s.vm, 'VM')}"`;
    lines.push(`${vm} (${s.state})`);
    for (const n of s.nics) {
      lines.push(`  ${nicLine(n, apply)}`);
      for (const f of s.forwards.filter((x) => x.nic === n.mac)) lines.push(`    ${forwardLine(f)}`);
    }
    for (const f of s.forwards.filter((x) => !s.nics.some((n) => n.mac === x.nic))) lines.push(`  ${forwardLine(f)}`);
    if (s.record.state === 'stale') {
      lines.push(`  record: stale: the templates now give something else; ${apply} records it`, ...s.record.differences.map((d) => `    ${d}`));
    } else {
      const why = s.persistent === false ? ' (a transient domain: no definition to record in)' : s.nics.some((n) => n.template !== null) ? ` (never applied; ${apply} records its wiring)` : '';
      lines.push(`  record: ${s.record.state}${s.record.state === 'none' ? why : ''}`);
    }
    lines.push(`  host: ${s.host.state}`, ...s.host.problems.map((p) => `    ${p}`));
  }
  lines.push(...strays.map((p) => `host: ${p}`));
  return lines.length ? `${lines.join('\n')}\n` : 'No domains in libvirt.\n';
}

function nicLine(n: NicStatus, apply: string): string {
  const where = `NIC ${n.mac}${n.network === null ? '' : ` on network ${quoted(n.network)}`}`;
  if (n.template === null) return `${where}: not wired by a template`;
  const addr = (ip: string): string => {
    const r = n.reservations.find((x) => x.ip === ip);
    return `${ip}${!r ? '' : r.reserved ? ' (DHCP reservation)' : ` (not reserved yet; ${apply} reserves it)`}`;
  };
  const addresses = n.addresses.length ? `, address ${n.addresses.map(addr).join(', ')}` : '';
  const attached = n.attached === null ? '' : `, ${n.attachPending ? `to be attached to ${n.attached} (${apply} rewrites its definition)` : `attached to ${n.attached}`}`;
  const vf = n.vf === null ? '' : `, VF ${n.vf.index} of ${n.vf.pf} (${n.vf.pci})${n.vf.live === null ? ', not shown by ip link' : `: ${n.vf.live}`}`;
  return `${where}: template ${quoted(n.template)}, binding ${n.binding} v${n.bindingVersion}${attached}${vf}${addresses}`;
}

/**
 * One forward; a tcp one to the guest's ssh port also names the command
 * that reaches it (a port block's usual point: "ssh -p 20001 HOST").
 */
export function forwardLine(f: Record<string, string>): string {
  const toSsh = f.proto === 'tcp' && /:22$/.test(f.guest ?? '') && /^\d+$/.test(f.hostPort ?? '');
  if (!toSsh) return `forward ${f.text}`;
  const everywhere = f.listen === '0.0.0.0' || f.listen === '::';
  const host = everywhere ? 'HOST' : f.listen;
  return `forward ${f.text}, ssh -p ${f.hostPort} ${host}`;
}

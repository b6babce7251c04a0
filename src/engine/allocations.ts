// Define-time wiring, second part: the host ports a VM's NICs get from
// forwards.autoPorts. Pure: domain, templates, the allocation store and
// what others hold in; the VM's allocations after apply out (the CLI writes
// them). Each binding says what its NICs need; the engine knows no binding.
import type { DomainInfo } from '../xml/domain.js';
import type { TemplateSet } from '../policy/load.js';
import type { GlobalConfig } from '../policy/config.js';
import { BINDINGS } from '../bindings/registry.js';
import type { PortRequest } from '../bindings/types.js';
import { allocatePorts, formatPool } from '../plan/port-pool.js';
import { formatRange, type PortRange } from '../model/ports.js';
import { own, type Allocations, type PortAllocation } from '../state/allocations.js';
import { quoted } from '../errors.js';
import { askEachBinding } from './reservations.js';

export interface PortPlanInput {
  domain: DomainInfo;
  templates: TemplateSet;
  /** Read only when some NIC asks for automatic ports. */
  config: () => GlobalConfig;
  configFile: string;
  store: Allocations;
  /** Host ports of forwards applied to other VMs (the ledger): never handed out. */
  applied: readonly PortRange[];
}

export interface PortChange {
  mac: string;
  key: string;
  ports: PortRange;
  protos: readonly string[];
}

export interface PortPlan {
  /** The VM's allocations once applied, by NIC MAC (NICs with none left out). */
  nics: Record<string, PortAllocation[]>;
  /** New or moved allocations. */
  added: PortChange[];
  /** Allocations the VM's templates no longer ask for (or moved away from). */
  dropped: Array<Omit<PortChange, 'protos'>>;
}

/** The NICs' port requests, from every binding that wires one. */
export function portRequests(domain: DomainInfo, templates: TemplateSet): PortRequest[] {
  return askEachBinding(domain, templates, (b, wired) => b.portRequests?.({ domain, wired }) ?? []);
}

/**
 * This VM's allocations: what it holds stays (while it fits), a new request
 * gets the lowest free run of the pool clear of every other VM's allocation
 * and every template's fixed host ports; what is no longer asked for goes.
 * Throws UserError (the pool exhausted, naming it).
 */
export function planPorts(input: PortPlanInput): PortPlan {
  const { domain, store } = input;
  const requests = portRequests(domain, input.templates);
  const id = (mac: string, key: string): string => `${mac} ${key}`;
  const mineNow = own(store.vms, domain.uuid)?.nics ?? {};
  const have = new Map(Object.entries(mineNow).flatMap(([mac, list]) => list.map((a) => [id(mac, a.key), a.ports] as const)));
  let given = new Map<string, PortRange>();
  if (requests.length) {
    const config = input.config();
    const taken = [
      ...Object.entries(store.vms).filter(([uuid]) => uuid !== domain.uuid).flatMap(([, vm]) => Object.values(vm.nics).flat().map((a) => a.ports)),
      ...input.templates.templates.flatMap((t) => BINDINGS.get(t.binding)?.fixedHostPorts?.(t.settings) ?? []),
      ...input.applied,
    ];
    given = allocatePorts({
      pool: config.forwards.autoPorts,
      poolName: `forwards.autoPorts ${formatPool(config.forwards.autoPorts) || '(empty)'} of ${input.configFile}`,
      needs: requests.map((r) => ({ id: id(r.nic.mac, r.key), width: r.width, what: `VM ${quoted(domain.name)} NIC ${r.nic.mac} (${r.origin})` })),
      have,
      taken,
    });
  }
  const nics: Record<string, PortAllocation[]> = {};
  const added: PortChange[] = [];
  for (const r of requests) {
    const ports = given.get(id(r.nic.mac, r.key)) as PortRange;
    (nics[r.nic.mac] ??= []).push({ key: r.key, ports });
    const before = have.get(id(r.nic.mac, r.key));
    if (!before || before.lo !== ports.lo || before.hi !== ports.hi) added.push({ mac: r.nic.mac, key: r.key, ports, protos: r.protos });
  }
  const dropped = [...have].filter(([k, ports]) => {
    const now = given.get(k);
    return !now || now.lo !== ports.lo || now.hi !== ports.hi;
  }).map(([k, ports]) => {
    const [mac, key] = k.split(' ') as [string, string];
    return { mac, key, ports };
  });
  return { nics, added, dropped };
}

/** For apply's line: "allocated host ports 20000-20009 tcp+udp for NIC …", "released …"; plan's: "would allocate …". */
export function portChangeText(p: Pick<PortPlan, 'added' | 'dropped'>, future = false): string[] {
  return [
    ...p.added.map((a) => `${future ? 'would allocate' : 'allocated'} host ports ${formatRange(a.ports)} ${a.protos.join('+')} for NIC ${a.mac}`),
    ...p.dropped.map((d) => `${future ? 'would release' : 'released'} host ports ${formatRange(d.ports)} of NIC ${d.mac}`),
  ];
}

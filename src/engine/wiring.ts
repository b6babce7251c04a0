// Desired state for one VM: which template wins each NIC (policy), then each
// binding's host plan for the NICs it wires. The engine knows no binding.
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { NetworkInfo } from '../xml/network.js';
import type { TemplateSet } from '../policy/load.js';
import type { GlobalConfig } from '../policy/config.js';
import { templatesForNics } from '../policy/match.js';
import { BINDINGS, bindingNamed, bindingTakes } from '../bindings/registry.js';
import type { ResolvedForward } from '../model/forward.js';
import type { PlannedNic, VmPlan } from '../plan/types.js';
import type { Template } from '../policy/template.js';
import type { PfInventory } from '../model/host.js';
import type { PortRange } from '../model/ports.js';

export interface ResolveInput {
  domain: DomainInfo;
  templates: TemplateSet;
  config: GlobalConfig;
  /** Live network by name (status file); undefined if the network is not active. */
  network: (name: string) => NetworkInfo | undefined;
  /** The host's own addresses: a metadata `listen` must be one of them. */
  hostAddresses: () => readonly string[];
  /** See BindingPlanInput.deferMissingAddress; absent: a missing address refuses. */
  deferMissingAddress?: (nic: DomainNic, why: string) => boolean;
  /** Host ports allocated to this domain's NIC under a key (the allocation store); default: none. */
  allocated?: (mac: string, key: string) => PortRange | undefined;
  /** An SR-IOV PF's VFs (sysfs); absent where sysfs is not read (define-time planning has the host facts). */
  pfVfs?: (pf: string) => PfInventory | string;
}

/** Templates + metadata → this VM's plan. Pure; throws UserError with the fix. */
export function resolveForwards(input: ResolveInput): VmPlan {
  const { domain } = input;
  const wired = templatesForNics(domain, input.templates, bindingTakes);
  const forwards: ResolvedForward[] = [];
  const links: VmPlan['links'] = [];
  const tapVlans: VmPlan['tapVlans'] = [];
  const vfs: VmPlan['vfs'] = [];
  for (const binding of BINDINGS.values()) {
    // Every binding is asked, with the NICs it wires (maybe none): a domain's
    // metadata may ask a binding for something even when no NIC is wired.
    const mine = new Map([...wired].filter(([, t]) => t.binding === binding.name));
    const hp = binding.hostPlan({ ...input, allocated: input.allocated ?? (() => undefined), wired: mine });
    forwards.push(...hp.forwards);
    links.push(...(hp.links ?? []));
    tapVlans.push(...(hp.tapVlans ?? []));
    vfs.push(...(hp.vfs ?? []));
  }
  const nics = [...wired].map(([nic, t]) => plannedNic(nic, t));
  return { uuid: domain.uuid, name: domain.name, nics, forwards, links, tapVlans, vfs, dropins: [] };
}

/**
 * A wired NIC as planned. A binding that attaches the NIC itself (rewriteInterface)
 * decides its network (isolated's, or none), and the network it was matched by is
 * kept as `from`, so the templates keep matching it after the move.
 */
function plannedNic(nic: DomainNic, t: Template): PlannedNic {
  const b = bindingNamed(t.binding);
  const base = { mac: nic.mac, template: t.name, binding: t.binding };
  if (!b.rewriteInterface) return { ...base, network: nic.network };
  const network = b.attachedNetwork?.(t.settings);
  // Kept once recorded; else the network it is on, unless that is where the binding puts it anyway.
  const from = nic.from ?? (nic.network !== network ? nic.network : undefined);
  return {
    ...base,
    ...(network === undefined ? {} : { network }),
    ...(from === undefined ? {} : { from }),
    ...(b.attachment ? { attached: b.attachment(t.settings) } : {}),
  };
}

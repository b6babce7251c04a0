// What `virtwire plan` and `virtwire apply` compute per VM: the reservations
// its NICs need, the forwards it gets, and its domain XML with the decisions
// recorded (the pure rewrite, src/rewrite/) — from libvirt's current state.
import type { LibvirtClient, Domain } from '../libvirt/client.js';
import { parseDomain, type DomainInfo } from '../xml/domain.js';
import { parseXmlDocument } from '../xml/document.js';
import { assignMissingMacs, randomQemuMac, writeRecord } from '../rewrite/domain.js';
import { plannedReservations, type NetworkView, type Reservation } from '../engine/reservations.js';
import { resolveForwards } from '../engine/wiring.js';
import { recordOf } from '../engine/record.js';
import { hostInterfaceAddresses } from '../engine/context.js';
import type { TemplateSet } from '../policy/load.js';
import type { GlobalConfig } from '../policy/config.js';
import type { VmPlan } from '../plan/types.js';
import { quoted } from '../errors.js';
import type { NetworkReader } from './reservations.js';
import type { PortStep } from './allocations.js';
import type { PortRange } from '../model/ports.js';
import type { NetworkDefinition } from '../bindings/types.js';
import { templatesForNics } from '../policy/match.js';
import { bindingTakes } from '../bindings/registry.js';
import { checkHost, hostQuestions, neededNetworks, rewriteWiredNics } from '../engine/rewrite-nics.js';
import type { DefineHost } from './define-host.js';
import type { RewriteEnv } from '../bindings/types.js';
import { vfAllocator } from '../engine/vf-allocate.js';



export interface VmWiring {
  /** The persistent definition (with any MAC assigned), as virtwire read it. */
  domain: DomainInfo;
  reservations: Reservation[];
  /** What the VM gets at its next start, given those reservations. */
  plan: VmPlan;
  /** The libvirt networks its NICs go on that virtwire defines when missing (the isolated binding's). */
  networks: NetworkDefinition[];
  /** The domain XML libvirt has, and with its NICs rewritten and virtwire's decisions recorded: equal when nothing changes. */
  xmlBefore: string;
  xmlAfter: string;
}

/**
 * Reads the domain's persistent XML (with security info when it will be
 * defined back: without it a define drops graphics passwords) and works
 * out its wiring. Planned reservations are noted in `networks`, so the next
 * VM of a `--all` run sees them; `ports` decides its automatic host ports
 * (from the allocation store), or `allocated` reads what they are now.
 * Throws UserError.
 */
export async function wireDomain(
  client: LibvirtClient,
  networks: NetworkReader,
  templates: TemplateSet,
  config: GlobalConfig,
  d: Domain,
  opts: { forDefine: boolean; host: DefineHost; ports?: PortStep; allocated?: (uuid: string, mac: string, key: string) => PortRange | undefined },
): Promise<VmWiring> {
  const xmlBefore = await client.domainXml(d.uuid, { inactive: true, securityInfo: opts.forDefine });
  const doc = parseXmlDocument(xmlBefore);
  assignMissingMacs(doc, randomQemuMac);
  const domain = parseDomain(String(doc), `domain ${quoted(d.name)}`);
  const views = new Map<string, NetworkView | undefined>();
  for (const nic of domain.nics) if (nic.network && !views.has(nic.network)) views.set(nic.network, await networks.read(nic.network));
  const reservations = plannedReservations({ domain, templates, network: (n) => views.get(n), now: Math.floor(Date.now() / 1000) });
  for (const r of reservations) networks.note(r);
  opts.ports?.decide({ domain, reservations });
  const plan = resolveForwards({
    domain, templates, config, network: (n) => networks.peek(n), hostAddresses: hostInterfaceAddresses, allocated: opts.ports?.allocated ?? (opts.allocated && ((mac, key) => opts.allocated?.(domain.uuid, mac, key))),
  });
  // The NICs' attachments: checked against the host, then rewritten (the plan was made from the
  // domain as it was: the templates match a NIC by the network it was on).
  const wired = templatesForNics(domain, templates, bindingTakes);
  const networksNeeded = neededNetworks(domain, wired);
  if ([...wired.values()].some((t) => t.binding !== 'nat')) {
    const facts = await opts.host.hostFacts(hostQuestions(wired));
    const usage = [...wired.values()].some((t) => t.binding === 'sriov') ? await opts.host.pciUsage() : undefined;
    const env: RewriteEnv = {
      libvirtVersion: await opts.host.libvirtVersion(), domainUuid: domain.uuid, trustPfs: config.sriov.trustPfs,
      ...(usage ? { allocateVf: vfAllocator(domain, facts, usage) } : {}),
    };
    checkHost(domain, wired, facts, env);
    rewriteWiredNics(doc, domain, wired, env);
  } else rewriteWiredNics(doc, domain, wired, { libvirtVersion: 0, domainUuid: domain.uuid });
  writeRecord(doc, recordOf(plan));
  return { domain, reservations, plan, networks: networksNeeded, xmlBefore, xmlAfter: String(doc) };
}

/** Whether the domain's <interface> #index differs between two versions of its XML. */
export function interfaceChanges(before: string, after: string, index: number): boolean {
  const nth = (xml: string): string => String(parseXmlDocument(xml).findAll('domain/devices/interface')[index] ?? '');
  return nth(before) !== nth(after);
}

/** "NIC 52:54:00:…: attached to bridge br0" for each NIC whose attachment the definition gets anew. */
export function attachmentChanges(w: VmWiring): string[] {
  return w.domain.nics.flatMap((n) => {
    const p = w.plan.nics.find((x) => x.mac === n.mac);
    return p?.attached !== undefined && interfaceChanges(w.xmlBefore, w.xmlAfter, n.index) ? [`NIC ${n.mac} attached to ${p.attached}`] : [];
  });
}

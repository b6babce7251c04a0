import type { DomainInfo, DomainNic } from '../xml/domain.js';
import { reservedAddress, subnetHolding, type NetworkInfo } from '../xml/network.js';
import { validateForward, TEMPLATE_NAME, type ForwardSpec, type Template, FORWARD_KEYS } from '../policy/template.js';
import type { TemplateSet } from '../policy/load.js';
import type { GlobalConfig } from '../policy/config.js';
import { globMatches } from '../model/glob.js';
import { rangeInside, formatRange } from '../model/ports.js';
import { ipFamily } from '../model/addr.js';
import { formatProblem } from '../policy/yaml-doc.js';
import { UserError, quoted, shellWord } from '../errors.js';
import { canonicalIp } from '../model/addr.js';
import type { ResolvedForward } from '../model/forward.js';
import type { VmPlan } from './types.js';

export interface ResolveInput {
  domain: DomainInfo;
  templates: TemplateSet;
  config: GlobalConfig;
  /** Live network by name (status file); undefined if the network is not active. */
  network: (name: string) => NetworkInfo | undefined;
  /** The host's own addresses (canonical): a metadata `listen` must be one of them. */
  hostAddresses: () => readonly string[];
}

/** Which template wires each NIC, or undefined. Throws on a priority tie. */
export function templatesForNics(domain: DomainInfo, set: TemplateSet): Map<DomainNic, Template> {
  const vm = quoted(domain.name);
  for (const wanted of domain.metadata.templates) {
    if (!TEMPLATE_NAME.test(wanted)) throw new UserError(`VM ${vm}: its metadata opts in to template ${quoted(wanted)}, which is not a valid template name; fix the domain's <metadata>`);
    const t = set.templates.find((x) => x.name === wanted);
    if (!t && !set.broken.some((b) => b.name === wanted)) {
      throw new UserError(`VM ${vm}: its metadata opts in to template ${quoted(wanted)}, but there is no such template; add ${wanted}.yaml to the templates directory or fix the domain's <metadata>`);
    }
    if (t && !t.match.optIn) {
      throw new UserError(`VM ${vm}: its metadata opts in to template "${wanted}", which does not allow opt-in; set "match: {optIn: true}" in ${t.file} or remove the opt-in`);
    }
  }
  const applies = (t: { name: string; domains?: string[]; optIn?: boolean }): boolean =>
    (t.domains ?? []).some((g) => globMatches(g, domain.name)) || (t.optIn === true && domain.metadata.templates.includes(t.name));
  const hasNetworkNic = domain.nics.some((n) => n.network);
  // A broken file that might concern this VM must not be silently skipped: the admin meant it to apply.
  for (const b of set.broken) {
    const mayConcern = b.domains === undefined || applies(b) || domain.metadata.templates.includes(b.name);
    if (mayConcern && hasNetworkNic) {
      const first = b.problems[0];
      throw new UserError(`VM ${vm}: template ${b.file} is invalid (${first ? formatProblem(first) : 'unreadable'}); fix it — "virtwire templates check" lists every problem`);
    }
  }
  const out = new Map<DomainNic, Template>();
  for (const nic of domain.nics) {
    if (!nic.network) continue;
    const candidates = set.templates.filter((t) => applies({ name: t.name, domains: t.match.domains, optIn: t.match.optIn })
      && (!t.match.networks || t.match.networks.includes(nic.network as string)));
    if (candidates.length === 0) continue;
    const top = Math.max(...candidates.map((t) => t.priority));
    const best = candidates.filter((t) => t.priority === top);
    if (best.length > 1) {
      throw new UserError(`VM ${vm} NIC ${nic.mac}: templates ${best.map((t) => t.file).join(' and ')} both match with priority ${top}; give one a higher priority`);
    }
    out.set(nic, best[0] as Template);
  }
  return out;
}

/** Turns templates + metadata into this VM's resolved forwards. Pure; throws UserError with the fix. */
export function resolveForwards(input: ResolveInput): VmPlan {
  const { domain } = input;
  const vm = quoted(domain.name);
  const wired = templatesForNics(domain, input.templates);
  const requests: Array<{ nic: DomainNic; spec: ForwardSpec; template?: Template }> = [];
  const usedTemplates = new Set<Template>();
  // A template's forwards go to the first NIC it wins: two NICs cannot both own one host port.
  for (const [nic, t] of wired) {
    if (usedTemplates.has(t)) continue;
    usedTemplates.add(t);
    for (const spec of t.forwards) requests.push({ nic, spec, template: t });
  }
  const metaLimit = input.config.limits.metadataForwardsPerVm;
  if (domain.metadata.forwards.length > metaLimit) {
    throw new UserError(`VM ${vm}: its metadata asks for ${domain.metadata.forwards.length} forwards, over limits.metadataForwardsPerVm = ${metaLimit} of /etc/virtwire/virtwire.yaml; remove some from the domain's <metadata>, or ask the admin for a template`);
  }
  let hostAddresses: ReadonlySet<string> | undefined;
  for (const { attrs, index } of domain.metadata.forwards) {
    const where = `VM ${vm} metadata forward #${index + 1}`;
    const unknown = Object.keys(attrs).filter((k) => k !== 'nic' && (!(FORWARD_KEYS as readonly string[]).includes(k) || k === 'allowHostConflict'));
    if (unknown.length) throw new UserError(`${where}: unknown attribute ${quoted(unknown[0] as string)}; allowed: proto, host, guest, listen, from, description, nic`);
    const raw: Record<string, unknown> = { ...attrs };
    delete raw.nic;
    if (typeof attrs.from === 'string') raw.from = attrs.from.split(/[\s,]+/).filter(Boolean);
    const spec = validateForward(raw, 'domain metadata', (_key, msg) => {
      throw new UserError(`${where}: ${msg}; fix the domain's <metadata>`);
    });
    if (!spec) continue;
    if (spec.listen) {
      hostAddresses ??= new Set(input.hostAddresses().map(canonicalIp));
      if (!hostAddresses.has(spec.listen)) {
        throw new UserError(`${where}: listen ${spec.listen} is not an address of this host; use one of the host's addresses, or remove listen to mean all of them`);
      }
    }
    if (!rangeInside(spec.host, input.config.forwards.allowedHostPorts)) {
      throw new UserError(`${where}: host port ${formatRange(spec.host)} is outside forwards.allowedHostPorts (${input.config.forwards.allowedHostPorts.map(formatRange).join(', ')}) of /etc/virtwire/virtwire.yaml; use a port inside it, or ask the admin to widen it or add a template`);
    }
    const nicMac = attrs.nic?.toLowerCase();
    const nic = nicMac ? [...wired.keys()].find((n) => n.mac === nicMac) : [...wired.keys()][0];
    if (!nic) {
      throw new UserError(nicMac
        ? `${where}: NIC ${nicMac} is not wired by any virtwire template; opt in to a template with <template name=.../> or fix nic=`
        : `${where}: no NIC of this VM is wired by a virtwire template; opt in to one with <template name=.../> in the same metadata element`);
    }
    requests.push({ nic, spec });
  }
  const forwards: ResolvedForward[] = [];
  for (const { nic, spec, template } of requests) forwards.push(...resolveOne(input, nic, spec, template));
  return { uuid: domain.uuid, name: domain.name, forwards };
}

function resolveOne(input: ResolveInput, nic: DomainNic, spec: ForwardSpec, template: Template | undefined): ResolvedForward[] {
  const { domain } = input;
  const netName = nic.network as string;
  const where = `VM ${quoted(domain.name)} NIC ${nic.mac} (network ${quoted(netName)})`;
  const net = input.network(netName);
  const netWord = shellWord(netName, 'NETWORK');
  if (!net) throw new UserError(`${where}: network ${quoted(netName)} is not active, so its address reservations cannot be read; start it (virsh net-start ${netWord})`);
  // binding nat forwards into a NAT network only. An isolated or open network
  // is closed to the outside on purpose, and a routed one's guests are
  // reachable at their own addresses: an accept for a DNAT there would open
  // what the admin chose to keep closed, or duplicate what routing gives.
  if (net.forwardMode !== 'nat') {
    throw new UserError(`${where}: binding nat needs a NAT network (<forward mode='nat'/>), but network ${quoted(netName)} has forward mode ${quoted(net.forwardMode)}; attach the NIC to a NAT network, or limit the template with match.networks`);
  }
  const listenFamily = spec.listen ? ipFamily(spec.listen) : undefined;
  const families: Array<4 | 6> = listenFamily ? [listenFamily] : [4, 6];
  const out: ResolvedForward[] = [];
  for (const family of families) {
    const from = spec.from.filter((c) => c.family === family).map((c) => c.text);
    // An allow-list naming only the other family admits nobody on this one: no forward.
    if (spec.from.length > 0 && from.length === 0) continue;
    const fixed = template?.address[family];
    const reserved = fixed ? undefined : reservedAddress(net, family, nic.mac, domain.name);
    const guestAddr = fixed ?? reserved?.ip;
    if (!guestAddr) {
      if (family === 6 && !listenFamily) continue; // IPv6 follows only where the guest has a reserved IPv6 address
      // A name goes into the suggested command only when it is plain: it sits in XML inside shell quotes.
      const plainName = /^[A-Za-z0-9._+:@-]+$/.test(domain.name) ? domain.name : 'DOMAIN-NAME';
      const hint = family === 4
        ? `virsh net-update ${netWord} add ip-dhcp-host "<host mac='${nic.mac}' ip='ADDRESS'/>" --live --config`
        // dnsmasq gives a reserved IPv6 address to the client with that DUID (id=); name= ties it to this domain for virtwire.
        : `virsh net-update ${netWord} add ip-dhcp-host "<host id='CLIENT-DUID' name='${plainName}' ip='ADDRESS'/>" --live --config --parent-index 1`;
      throw new UserError(`${where}: no IPv${family} address to forward to; reserve one with: ${hint}${template ? `, or set address: in ${template.file}` : ''}`);
    }
    const subnet = reserved?.subnet ?? subnetHolding(net, guestAddr);
    if (!subnet) {
      throw new UserError(`${where}: address ${guestAddr} from ${template?.file ?? 'the reservation'} is not inside any subnet of network ${quoted(netName)}; fix address:`);
    }
    out.push({
      family, proto: spec.proto, listen: spec.listen, host: spec.host, guestAddr, guest: spec.guest, from,
      guestSubnet: subnet.text, nic: nic.mac, network: netName, origin: spec.origin,
      description: spec.description, allowHostConflict: spec.allowHostConflict,
    });
  }
  return out;
}

// binding nat: forwards from host ports to a guest behind libvirt's NAT.
import type { DomainNic } from '../../xml/domain.js';
import { reservedAddress, subnetHolding, type NetworkInfo } from '../../xml/network.js';
import type { Template } from '../../policy/template.js';
import { validateForward, natSettings, type ForwardSpec, FORWARD_KEYS } from './settings.js';
import { rangeInside, formatRange } from '../../model/ports.js';
import { canonicalIp, ipFamily } from '../../model/addr.js';
import type { ResolvedForward } from '../../model/forward.js';
import { UserError, quoted, shellWord } from '../../errors.js';
import { MAC } from '../../model/ids.js';
import type { BindingPlanInput } from '../types.js';
import { autoForwards, firstNicOf } from './auto.js';

/**
 * binding nat forwards into a NAT network only. An isolated or open network
 * is closed to the outside on purpose, and a routed one's guests are
 * reachable at their own addresses: an accept for a DNAT there would open
 * what the admin chose to keep closed, or duplicate what routing gives.
 */
export function natNetworkRefusal(net: NetworkInfo): string | undefined {
  return net.forwardMode === 'nat' ? undefined
    : `binding nat needs a NAT network (<forward mode='nat'/>), but network ${quoted(net.name)} has forward mode ${quoted(net.forwardMode)}`;
}

/**
 * The forwards of the NICs binding nat wires (and those the domain's own
 * metadata asks for on them). Pure; throws UserError with the fix.
 */
export function planNat(input: BindingPlanInput): ResolvedForward[] {
  const { domain, wired } = input;
  const vm = quoted(domain.name);
  const requests: Array<{ nic: DomainNic; spec: ForwardSpec; template?: Template }> = [];
  // A template's forwards go to the first NIC it wins: two NICs cannot both own one host port.
  for (const [t, nic] of firstNicOf(wired)) {
    for (const spec of natSettings(t).forwards) requests.push({ nic, spec, template: t });
    for (const a of natSettings(t).autoPorts) for (const spec of autoForwards(input, nic, a)) requests.push({ nic, spec, template: t });
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
    // nic= is the VM owner's text: a MAC, or refused (it would otherwise reach the message raw).
    if (nicMac !== undefined && !MAC.test(nicMac)) {
      throw new UserError(`${where}: nic must be the MAC address of one of the VM's NICs (like 52:54:00:12:34:56), found ${quoted(attrs.nic as string)}; fix the domain's <metadata>`);
    }
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
  return forwards;
}

function resolveOne(input: BindingPlanInput, nic: DomainNic, spec: ForwardSpec, template: Template | undefined): ResolvedForward[] {
  const { domain } = input;
  const netName = nic.network as string;
  const where = `VM ${quoted(domain.name)} NIC ${nic.mac} (network ${quoted(netName)})`;
  const net = input.network(netName);
  const netWord = shellWord(netName, 'NETWORK');
  if (!net) throw new UserError(`${where}: network ${quoted(netName)} is not active, so its address reservations cannot be read; start it (virsh net-start ${netWord})`);
  const refusal = natNetworkRefusal(net);
  if (refusal) throw new UserError(`${where}: ${refusal}; attach the NIC to a NAT network, or limit the template with match.networks`);
  const listenFamily = spec.listen ? ipFamily(spec.listen) : undefined;
  const families: Array<4 | 6> = listenFamily ? [listenFamily] : [4, 6];
  const out: ResolvedForward[] = [];
  for (const family of families) {
    const from = spec.from.filter((c) => c.family === family).map((c) => c.text);
    // An allow-list naming only the other family admits nobody on this one: no forward.
    if (spec.from.length > 0 && from.length === 0) continue;
    const fixed = template && natSettings(template).address[family];
    const reserved = fixed ? undefined : reservedAddress(net, family, nic.mac, domain.name);
    const guestAddr = fixed ?? reserved?.ip;
    if (!guestAddr) {
      if (family === 6 && !listenFamily) continue; // IPv6 follows only where the guest has a reserved IPv6 address
      // A name goes into the suggested command only when it is plain: it sits in XML inside shell quotes.
      const plainName = /^[A-Za-z0-9._+:@-]+$/.test(domain.name) ? domain.name : 'DOMAIN-NAME';
      const hint = family === 4
        ? `virtwire apply ${shellWord(domain.name, 'VM')} (or: virsh net-update ${netWord} add ip-dhcp-host "<host mac='${nic.mac}' ip='ADDRESS'/>" --live --config)`
        // dnsmasq gives a reserved IPv6 address to the client with that DUID (id=); name= ties it to this domain for virtwire.
        : `virsh net-update ${netWord} add ip-dhcp-host "<host id='CLIENT-DUID' name='${plainName}' ip='ADDRESS'/>" --live --config --parent-index 1`;
      const why = `${where}: no IPv${family} address to forward to; reserve one with: ${hint}${template ? `, or set address: in ${template.file}` : ''}`;
      if (input.deferMissingAddress?.(nic, why)) continue;
      throw new UserError(why);
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

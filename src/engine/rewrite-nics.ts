// Define time: each wired NIC's <interface> rewritten by its binding, after
// the host checks, and the networks those NICs need. Pure over what it is
// given (the document, the host facts); the CLI reads and writes libvirt.
import type { XmlDocument } from '../xml/document.js';
import type { DomainInfo, DomainNic } from '../xml/domain.js';
import type { Template } from '../policy/template.js';
import type { HostFacts, NetworkDefinition, RewriteEnv } from '../bindings/types.js';
import { bindingNamed } from '../bindings/registry.js';
import { setVhost } from '../bindings/common/attach.js';
import { UserError, quoted } from '../errors.js';

function nicLabel(domain: DomainInfo, nic: DomainNic, t: Template): string {
  return `VM ${quoted(domain.name)} NIC ${nic.mac || `#${nic.index + 1}`} (template ${t.file})`;
}

/** What the host must be asked for these templates: Open vSwitch (ovs-vsctl), the daemon's interface backends (passt). */
export function hostQuestions(wired: ReadonlyMap<DomainNic, Template>): { ovs: boolean; backends: boolean } {
  const bindings = new Set([...wired.values()].map((t) => t.binding));
  return { ovs: bindings.has('ovs'), backends: bindings.has('passt') };
}

/** The first reason the host cannot take a wired NIC now, as the one line to show; none: it can. */
export function checkHost(domain: DomainInfo, wired: ReadonlyMap<DomainNic, Template>, host: HostFacts, env: RewriteEnv): void {
  for (const [nic, t] of wired) {
    const why = bindingNamed(t.binding).hostRefusal?.(t.settings, host, env);
    if (why) throw new UserError(`${nicLabel(domain, nic, t)}: ${why}`);
  }
}

/**
 * Rewrites each wired NIC's <interface> in `doc` (the same domain `domain`
 * was parsed from, NICs in the same order): its binding's attachment and the
 * template's vhost choice. Idempotent.
 */
export function rewriteWiredNics(doc: XmlDocument, domain: DomainInfo, wired: ReadonlyMap<DomainNic, Template>, env: RewriteEnv): void {
  const ifaces = doc.findAll('domain/devices/interface');
  for (const [nic, t] of wired) {
    const iface = ifaces[nic.index];
    if (!iface) throw new Error(`rewriteWiredNics: the document has no <interface> #${nic.index + 1} (parsed from another XML?)`);
    bindingNamed(t.binding).rewriteInterface?.(iface, t.settings, env);
    setVhost(iface, t.vhost);
  }
}

/** The networks the wired NICs need, one per name; two templates that define one name differently are refused. */
export function neededNetworks(domain: DomainInfo, wired: ReadonlyMap<DomainNic, Template>): NetworkDefinition[] {
  const byName = new Map<string, NetworkDefinition>();
  for (const [nic, t] of wired) {
    for (const def of bindingNamed(t.binding).networks?.(t.settings, t) ?? []) {
      const seen = byName.get(def.name);
      if (seen && seen.xml !== def.xml) {
        throw new UserError(`${nicLabel(domain, nic, t)}: network ${quoted(def.name)} is also defined, differently, by ${seen.origin}; make the two templates agree on it`);
      }
      byName.set(def.name, def);
    }
  }
  return [...byName.values()];
}

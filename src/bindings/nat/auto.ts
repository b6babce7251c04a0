// binding nat's automatic host ports: forwards with `host: auto` and port
// blocks. At define time each asks for a run of host ports (portRequests);
// at a start the run allocated is read back and the forwards resolved.
import type { DomainNic } from '../../xml/domain.js';
import type { Template } from '../../policy/template.js';
import { formatRange, rangeWidth, type PortRange } from '../../model/ports.js';
import { UserError, quoted, shellWord } from '../../errors.js';
import { natSettings, type AutoPortsSpec, type ForwardSpec, type NatSettings } from './settings.js';
import type { BindingPlanInput, DefineTimeInput, PortRequest } from '../types.js';

/** The NIC each template serves: the first it wins (two NICs cannot own one host port). */
export function firstNicOf(wired: ReadonlyMap<DomainNic, Template>): Map<Template, DomainNic> {
  const out = new Map<Template, DomainNic>();
  for (const [nic, t] of wired) if (!out.has(t)) out.set(t, nic);
  return out;
}

export function natPortRequests(input: Pick<DefineTimeInput, 'domain' | 'wired'>): PortRequest[] {
  return [...firstNicOf(input.wired)].flatMap(([t, nic]) => natSettings(t).autoPorts.map((a) => ({
    nic, key: a.key, width: a.width, origin: a.origin, protos: [...new Set(a.forwards.map((f) => f.spec.proto))],
  })));
}

export function natFixedHostPorts(settings: unknown): PortRange[] {
  return (settings as NatSettings).forwards.map((f) => f.host);
}

/**
 * The forwards of one automatic request, on the host ports allocated to it.
 * Refuses (one line, with the command that fixes it) when apply has not
 * allocated them, or allocated a different number (the template changed since).
 */
export function autoForwards(input: BindingPlanInput, nic: DomainNic, a: AutoPortsSpec): ForwardSpec[] {
  const ports = input.allocated(nic.mac, a.key);
  if (!ports || rangeWidth(ports) !== a.width) {
    const what = ports
      ? `asks for ${a.width} automatic host port(s), but ${formatRange(ports)} (${rangeWidth(ports)}) is allocated`
      : `asks for ${a.width === 1 ? 'an automatic host port' : 'automatic host ports'} that ${a.width === 1 ? 'has' : 'have'} not been allocated`;
    throw new UserError(`VM ${quoted(input.domain.name)} NIC ${nic.mac}: template ${a.origin} ${what}; run: virtwire apply ${shellWord(input.domain.name, 'VM')}`);
  }
  return a.forwards.map(({ offset, spec }) => {
    const lo = ports.lo + offset;
    return { ...spec, host: { lo, hi: lo + rangeWidth(spec.guest) - 1 } };
  });
}

// binding passt: user-mode networking (<interface type='user'> with
// <backend type='passt'/>): no bridge, no NAT network, no firewall rule —
// passt, run by libvirt for the VM, binds the host ports itself and carries
// their connections to the guest. The template's forwards (the same keys as
// nat's) become <portForward> elements. Needs a libvirt that offers the
// passt backend (its domain capabilities say so; Debian 12's 9.0 does not).
import type { Node } from 'yaml';
import { isMap } from 'yaml';
import type { Binding } from '../types.js';
import { equalsSpec, type ElementSpec, type XElement } from '../../xml/document.js';
import { readForward, checkForwardOverlaps, type ForwardSpec } from '../nat/settings.js';
import { takesOrdinaryNic, versionText } from '../common/rewrites.js';
import { formatRange } from '../../model/ports.js';

export interface PasstSettings {
  forwards: ForwardSpec[];
  /** Parse time only (dropped by finishSettings: a parsed template is plain data). */
  nodes?: Node[];
}

/** One <portForward> per protocol and listen address, a <range> per forward. */
export function portForwards(forwards: readonly ForwardSpec[]): ElementSpec[] {
  const groups = new Map<string, { proto: string; listen?: string; ranges: ElementSpec[] }>();
  for (const f of forwards) {
    const key = `${f.proto}\0${f.listen ?? ''}`;
    const g = groups.get(key) ?? { proto: f.proto, listen: f.listen, ranges: [] };
    const attrs: Array<[string, string]> = [['start', String(f.host.lo)]];
    if (f.host.hi !== f.host.lo) attrs.push(['end', String(f.host.hi)]);
    if (f.guest.lo !== f.host.lo) attrs.push(['to', String(f.guest.lo)]);
    g.ranges.push({ name: 'range', attrs });
    groups.set(key, g);
  }
  return [...groups.values()].map((g) => ({
    name: 'portForward',
    attrs: [['proto', g.proto], ...(g.listen ? [['address', g.listen] as [string, string]] : [])],
    children: g.ranges,
  }));
}

/**
 * The NIC as passt's: type user, <backend type='passt'/>, its port forwards;
 * whatever attached it elsewhere (<source>, <vlan>, <virtualport>, <port>)
 * goes, the rest (<mac>, <model>, <address>…) stays.
 */
export function rewritePasst(iface: XElement, s: PasstSettings): void {
  if (iface.getAttribute('type') !== 'user') iface.setAttribute('type', 'user');
  for (const name of ['source', 'vlan', 'virtualport', 'port', 'ip', 'route']) for (const el of iface.elements(name)) el.remove();
  const mac = iface.elements('mac')[0];
  const backend = iface.elements('backend')[0];
  if (!backend) iface.insertElement({ name: 'backend', attrs: { type: 'passt' } }, mac ? { after: mac } : {});
  else if (backend.getAttribute('type') !== 'passt') backend.setAttribute('type', 'passt');
  const want = portForwards(s.forwards);
  const have = iface.elements('portForward');
  // Untouched when they already are these (libvirt keeps their order).
  if (have.length === want.length && have.every((el, i) => equalsSpec(el, want[i] as ElementSpec))) return;
  for (const el of have) el.remove();
  let after: XElement | undefined = iface.elements('backend')[0];
  for (const spec of want) after = iface.insertElement(spec, after ? { after } : {});
}

function describe(s: PasstSettings): string {
  return `passt${s.forwards.length ? `, forwards ${s.forwards.map((f) => `${f.proto} ${f.listen ? `${f.listen}:` : ''}${formatRange(f.host)} to ${formatRange(f.guest)}`).join(', ')}` : ''}`;
}

export const passt: Binding = {
  name: 'passt',
  version: 1,
  vhostRefusal: "a passt NIC's traffic goes through the passt process, not vhost-net",
  settingsKeys: ['forwards'],
  newSettings: (): PasstSettings => ({ forwards: [], nodes: [] }),
  readSettingsKey: (y, _key, value, into) => {
    const s = into as PasstSettings;
    for (const item of y.items(value, 'forwards')) {
      const m = y.deref(item);
      if (isMap(m) && m.items.some((p) => y.scalar(p.key as Node) === 'block')) {
        y.report(item, 'port blocks are binding nat\'s (virtwire apply allocates their host ports); give passt forwards fixed host ports');
        continue;
      }
      const f = readForward(y, item, 'forwards[]');
      if (!f) continue;
      if (f.from.length) { y.report(item, 'from: passt forwards every source (it has no source filter); remove from, or use binding nat'); continue; }
      s.forwards.push(f);
      s.nodes?.push(item);
    }
  },
  finishSettings: (y, settings) => {
    const s = settings as PasstSettings;
    checkForwardOverlaps(y, s.forwards, s.nodes ?? []);
    delete s.nodes;
  },
  takesNic: takesOrdinaryNic,
  rewriteInterface: (iface, settings) => rewritePasst(iface, settings as PasstSettings),
  attachment: (settings) => describe(settings as PasstSettings),
  hostRefusal: (_settings, host, env) => {
    const backends = host.netBackends();
    if (backends === undefined || backends.includes('passt')) return undefined;
    return `this libvirt ${versionText(env.libvirtVersion)} does not offer the passt backend (its domain capabilities list ${backends.length ? backends.join(', ') : 'no interface backends'}); passt needs a libvirt that does — Debian 13's 11.3 does, Debian 12's 9.0 rejects <backend type='passt'/>`;
  },
  summary: (settings) => describe(settings as PasstSettings),
  hostPlan: () => ({ forwards: [] }),
  warnings: () => [],
};

import type { Binding } from './types.js';
import type { DomainNic } from '../xml/domain.js';
import { nat } from './nat/index.js';
import { bridge } from './bridge/index.js';
import { ovs } from './ovs/index.js';
import { isolated } from './isolated/index.js';
import { macvtap } from './macvtap/index.js';
import { passt } from './passt/index.js';
import { sriov } from './sriov/index.js';

/** Every binding this build knows, by its template name; plugins (bindings/plugins.ts) add theirs once loaded. */
export const BINDINGS: ReadonlyMap<string, Binding> = new Map([nat, bridge, ovs, isolated, macvtap, passt, sriov].map((b) => [b.name, b]));
/** The bindings built in, which a plugin may not replace. */
export const BUILT_IN: ReadonlySet<string> = new Set(BINDINGS.keys());

/** Adds a plugin's binding (bindings/plugins.ts only). */
export function registerBinding(b: Binding): void {
  if (BUILT_IN.has(b.name)) throw new Error(`a plugin may not replace the built-in binding ${b.name}`);
  (BINDINGS as Map<string, Binding>).set(b.name, b);
}

export function bindingNamed(name: string): Binding {
  const b = BINDINGS.get(name);
  if (!b) throw new Error(`no binding named ${JSON.stringify(name)} in this build`);
  return b;
}

/** Whether the binding named `binding` can wire `nic` (policy/match.ts NicTaker). */
export function bindingTakes(binding: string, nic: DomainNic): boolean {
  return BINDINGS.get(binding)?.takesNic(nic) ?? false;
}

import type { Binding } from './types.js';
import { nat } from './nat/index.js';

/** Every binding this build knows, by its template name. */
export const BINDINGS: ReadonlyMap<string, Binding> = new Map([nat].map((b) => [b.name, b]));

export function bindingNamed(name: string): Binding {
  const b = BINDINGS.get(name);
  if (!b) throw new Error(`no binding named ${JSON.stringify(name)} in this build`);
  return b;
}

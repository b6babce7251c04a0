// Third-party bindings as plugins: /etc/virtwire/plugins/NAME.cjs, a
// CommonJS module an admin installs, loaded only when it and every
// directory up to / are root's and not group/world-writable — otherwise it
// is never loaded (nothing of it runs) and templates naming its binding are
// refused with that one line. The interface (README "Plugins"):
//
//   module.exports = {
//     apiVersion: 1,
//     name: 'NAME',                       // = the file name; what templates write as binding:
//     keys: ['myKey'],                    // the template keys it owns
//     parse(values, problem) { … },       // values: {myKey: plain YAML value}; problem(key, message); returns its settings (JSON)
//     rewrite(nic, settings) { … },       // define time: nic.type, nic.mac, nic.setType(t), nic.setSource(attrs),
//                                         //   nic.setElement(name, attrs), nic.removeElement(name)
//     summary(settings) { … },            // optional: one line for `templates check` and the record
//   };
//
// Host work at run time is the binding's drop-ins (hooks.d/NAME/{start,release}).
import { createRequire } from 'node:module';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Binding } from './types.js';
import type { XElement } from '../xml/document.js';
import { assertTrustedExecutable } from '../policy/trust.js';
import { errorMessage, quoted } from '../errors.js';
import { BUILT_IN, registerBinding } from './registry.js';
import { takesOrdinaryNic } from './common/rewrites.js';

const PLUGIN_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const KEY = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const XML_NAME = /^[A-Za-z_][A-Za-z0-9._-]{0,63}$/;

interface PluginModule {
  apiVersion: number;
  name: string;
  keys: string[];
  parse(values: Record<string, unknown>, problem: (key: string, message: string) => void): unknown;
  rewrite(nic: PluginNic, settings: unknown): void;
  summary?(settings: unknown): string;
}

/** What a plugin's rewrite sees of a NIC: a few checked edits of its <interface>, nothing else of the domain. */
export interface PluginNic {
  readonly type: string;
  readonly mac: string;
  setType(type: string): void;
  setSource(attrs: Record<string, string>): void;
  setElement(name: string, attrs: Record<string, string>): void;
  removeElement(name: string): void;
}

function checkAttrs(attrs: Record<string, string>): [string, string][] {
  const out = Object.entries(attrs ?? {});
  for (const [k, v] of out) if (!XML_NAME.test(k) || typeof v !== 'string') throw new Error(`bad attribute ${JSON.stringify(k)}`);
  return out;
}

function facade(iface: XElement): PluginNic {
  return {
    get type() { return iface.getAttribute('type') ?? ''; },
    get mac() { return iface.elements('mac')[0]?.getAttribute('address') ?? ''; },
    setType: (type) => { if (!XML_NAME.test(type)) throw new Error(`bad type ${JSON.stringify(type)}`); if (iface.getAttribute('type') !== type) iface.setAttribute('type', type); },
    setSource: (attrs) => {
      const spec = { name: 'source', attrs: checkAttrs(attrs) };
      const cur = iface.elements('source')[0];
      if (cur) cur.replaceWith(spec);
      else { const mac = iface.elements('mac')[0]; iface.insertElement(spec, mac ? { after: mac } : {}); }
    },
    setElement: (name, attrs) => {
      if (!XML_NAME.test(name) || name === 'mac') throw new Error(`bad element ${JSON.stringify(name)}`);
      iface.upsertElement(name, { name, attrs: checkAttrs(attrs) });
    },
    removeElement: (name) => { for (const el of iface.elements(name)) if (name !== 'mac') el.remove(); },
  };
}

/** A binding that refuses every template naming it: its plugin was not loaded (untrusted: none of its code ran) or is unusable. */
function refused(name: string, why: string, loaded: boolean): Binding {
  const what = loaded ? 'its plugin is not usable' : 'its plugin is refused, and nothing of it ran';
  return {
    name, version: 0, settingsKeys: [], newSettings: () => ({}), readSettingsKey: () => undefined,
    finishSettings: (y) => y.report(y.root, `binding ${name}: ${what}: ${why}`),
    takesNic: () => false, hostPlan: () => ({ forwards: [] }), summary: () => 'refused', warnings: () => [],
  };
}

function adapt(file: string, m: PluginModule): Binding {
  const where = (what: string): string => `plugin ${file}: ${what}`;
  return {
    name: m.name,
    version: m.apiVersion,
    settingsKeys: m.keys,
    newSettings: () => ({ values: {} as Record<string, unknown>, nodes: {} as Record<string, unknown> }),
    readSettingsKey: (y, key, value, into) => {
      const s = into as { values: Record<string, unknown>; nodes: Record<string, unknown> };
      // The plain value (a mapping as an object, unlike YamlFile.value, which keeps only scalars' values).
      const node = y.deref(value) as { toJSON?: () => unknown } | null;
      s.values[key] = node && typeof node.toJSON === 'function' ? node.toJSON() : null;
      s.nodes[key] = value;
    },
    finishSettings: (y, into) => {
      const s = into as { values: Record<string, unknown>; nodes: Record<string, unknown>; parsed?: unknown };
      try {
        s.parsed = JSON.parse(JSON.stringify(m.parse(s.values, (key, message) => y.report((s.nodes[key] as never) ?? y.root, `${key}: ${String(message)}`)) ?? {}));
      } catch (err) {
        y.report(y.root, where(`parse failed: ${errorMessage(err)}`));
      }
      delete (s as { nodes?: unknown }).nodes;
      delete (s as { values?: unknown }).values;
    },
    takesNic: takesOrdinaryNic,
    rewriteInterface: (iface, settings) => {
      try {
        m.rewrite(facade(iface), (settings as { parsed: unknown }).parsed);
      } catch (err) {
        throw new Error(where(`rewrite failed: ${errorMessage(err)}`));
      }
    },
    attachment: (settings) => `plugin ${m.name}${m.summary ? `: ${m.summary((settings as { parsed: unknown }).parsed)}` : ''}`,
    hostPlan: () => ({ forwards: [] }),
    summary: (settings) => (m.summary ? m.summary((settings as { parsed: unknown }).parsed) : `plugin ${m.name}`),
    warnings: () => [],
  };
}

let loaded: { dir: string; names: string[] } | undefined;

/** The plugin files in `dir` (a missing dir: none). */
export function pluginFiles(dir: string): string[] {
  try { return readdirSync(dir).filter((n) => n.endsWith('.cjs')).sort(); } catch { return []; }
}

/**
 * Loads every NAME.cjs in `dir` once per process (a missing dir: none).
 * Returns the plugins' names (on every call: callers turn caches off when
 * any is loaded); a refused one is registered as a binding that refuses its
 * templates, saying why.
 */
export function loadPlugins(dir: string): string[] {
  if (loaded?.dir === dir) return loaded.names;
  const names = pluginFiles(dir);
  const req = createRequire('/');
  const out: string[] = [];
  for (const n of names) {
    const name = n.slice(0, -'.cjs'.length);
    const file = join(dir, n);
    if (!PLUGIN_NAME.test(name) || BUILT_IN.has(name)) continue;
    out.push(name);
    try {
      assertTrustedExecutable(file, { executable: false });
    } catch (err) {
      registerBinding(refused(name, errorMessage(err), false));
      continue;
    }
    try {
      const m = req(file) as PluginModule;
      const bad = m?.apiVersion !== 1 ? 'apiVersion is not 1' : m.name !== name ? `name ${quoted(String(m.name))} is not its file name ${quoted(name)}`
        : !Array.isArray(m.keys) || !m.keys.every((k) => typeof k === 'string' && KEY.test(k)) ? 'keys must be template key names'
        : typeof m.parse !== 'function' || typeof m.rewrite !== 'function' ? 'parse and rewrite must be functions' : undefined;
      registerBinding(bad ? refused(name, `${file}: ${bad}`, true) : adapt(file, m));
    } catch (err) {
      registerBinding(refused(name, `${file} does not load: ${errorMessage(err)}`, true));
    }
  }
  loaded = { dir, names: out };
  return out;
}

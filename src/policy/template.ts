import type { Node } from 'yaml';
import { compileGlob } from '../model/glob.js';
import { quote } from '../model/show.js';
import { YamlFile, didYouMean } from './yaml-doc.js';
import { TEMPLATE_NAME } from '../model/ids.js';


/**
 * What a binding tells the template parser: the top-level keys it owns and
 * how to read them. The bindings implement it (src/bindings); the parser
 * is handed them, so policy never imports a binding.
 */
export interface BindingSettingsReader<S = unknown> {
  readonly name: string;
  readonly settingsKeys: readonly string[];
  newSettings(): S;
  /** Reads one of its keys into `into`, reporting problems on `y` at their node. */
  readSettingsKey(y: YamlFile, key: string, value: Node | null, into: S): void;
  /** Checks that need every key read. */
  finishSettings(y: YamlFile, settings: S): void;
  /** Why `vhost:` makes no sense for this binding's NICs (passt's have no virtio-net backend on the host side); undefined: it does. */
  readonly vhostRefusal?: string;
}

export type BindingCatalog = ReadonlyMap<string, BindingSettingsReader>;

export interface Template {
  name: string;
  file: string;
  description?: string;
  match: { domains: string[]; networks?: string[]; optIn: boolean };
  priority: number;
  binding: string;
  /**
   * vhost-net for the NIC's virtio queues: true writes <driver name='vhost'/>,
   * false <driver name='qemu'/>; absent leaves the domain's as it is.
   * Independent of the binding.
   */
  vhost?: boolean;
  /** The binding's own settings, as its BindingSettingsReader read them. */
  settings: unknown;
}

const GENERIC_KEYS = ['description', 'match', 'priority', 'binding', 'vhost'] as const;
const MATCH_KEYS = ['domains', 'networks', 'optIn'] as const;

/** Template name from its file name: `/etc/virtwire/templates/web.yaml` → `web`. */
export function templateNameOf(file: string): string {
  return (file.split('/').pop() ?? file).replace(/\.ya?ml$/, '');
}

/**
 * Validates one template file. Returns the template (undefined if any problem)
 * and, when `match.domains` itself was valid, the globs — so a broken file can
 * still be ruled out for VMs it clearly does not concern.
 */
export function parseTemplate(file: string, text: string, bindings: BindingCatalog): { template?: Template; domains?: string[]; optIn?: boolean; problems: YamlFile['problems'] } {
  const y = new YamlFile(file, text);
  const name = templateNameOf(file);
  if (!TEMPLATE_NAME.test(name)) {
    y.report(null, `file name ${quote(name)} is not a valid template name: use letters, digits, ".", "_" and "-" (it is how domains opt in)`);
  }
  if (y.problems.length) return { problems: y.problems };
  const t: Partial<Template> = { name, file, priority: 0 };
  const entries = y.entries(y.root, 'a template');
  // The binding decides which other keys are allowed: look it up first. With
  // no valid binding, a key only one binding owns is still read by it, so its
  // problems are reported too.
  const declared = y.scalar(entries.find(([k]) => k === 'binding')?.[2] ?? null);
  const chosen = typeof declared === 'string' ? bindings.get(declared) : undefined;
  const readerFor = (key: string): BindingSettingsReader | undefined => {
    if (chosen) return chosen.settingsKeys.includes(key) ? chosen : undefined;
    const owners = [...bindings.values()].filter((b) => b.settingsKeys.includes(key));
    return owners.length === 1 ? owners[0] : undefined;
  };
  const settings = new Map<BindingSettingsReader, unknown>();
  const allKeys = [...GENERIC_KEYS, ...new Set([...bindings.values()].flatMap((b) => b.settingsKeys))];
  let domainsOk = true;
  let sawBinding = false;
  for (const [key, keyNode, value] of entries) {
    switch (key) {
      case 'description': t.description = readString(y, value, 'description'); break;
      case 'priority': {
        const v = y.scalar(value);
        if (typeof v !== 'number' || !Number.isInteger(v) || v < -1000 || v > 1000) {
          y.report(value, `priority must be a whole number from -1000 to 1000, found ${y.kindOf(value)}`);
        } else t.priority = v;
        break;
      }
      case 'vhost': {
        const v = y.scalar(value);
        if (typeof v !== 'boolean') y.report(value, `vhost must be true (vhost-net: <driver name='vhost'/>) or false (QEMU's own: <driver name='qemu'/>), found ${y.kindOf(value)}`);
        else t.vhost = v;
        break;
      }
      case 'binding': {
        sawBinding = true;
        const v = y.scalar(value);
        const supported = [...bindings.keys()].join(', ');
        if (typeof v === 'string' && bindings.has(v)) t.binding = v;
        else y.report(value, `binding must be one of: ${supported}; found ${y.kindOf(value)}`);
        break;
      }
      case 'match': {
        const before = y.problems.length;
        t.match = readMatch(y, value);
        domainsOk = !y.problems.slice(before).some((p) => p.message.startsWith('match.domains'));
        break;
      }
      default: {
        const reader = readerFor(key);
        if (reader) {
          if (!settings.has(reader)) settings.set(reader, reader.newSettings());
          reader.readSettingsKey(y, key, value, settings.get(reader));
        } else if (chosen && allKeys.includes(key)) {
          y.report(keyNode, `key ${quote(key)} is not a setting of binding ${chosen.name}; its settings: ${chosen.settingsKeys.join(', ') || 'none'}`);
        } else {
          const allowed = chosen ? [...GENERIC_KEYS, ...chosen.settingsKeys] : allKeys;
          y.report(keyNode, `unknown key ${quote(key)}${didYouMean(key, allKeys)}; allowed: ${allowed.join(', ')}`);
        }
      }
    }
  }
  // The chosen binding checks its settings even when the template gives none (a required key is missing).
  if (chosen && !settings.has(chosen)) settings.set(chosen, chosen.newSettings());
  for (const [reader, s] of settings) reader.finishSettings(y, s);
  if (chosen) t.settings = settings.get(chosen);
  if (!sawBinding) y.report(y.root, 'binding is required (binding: nat)');
  if (chosen?.vhostRefusal && t.vhost !== undefined) y.report(entries.find(([k]) => k === 'vhost')?.[2] ?? y.root, `vhost: ${chosen.vhostRefusal}; remove it`);
  if (!t.match) y.report(y.root, 'match is required: say which domains this template applies to (match: {domains: ["web-*"]})');
  else if (domainsOk && t.match.domains.length === 0 && !t.match.optIn) {
    y.report(y.root, 'match.domains is empty and match.optIn is not true: this template can never apply; add a glob or set optIn: true');
  }
  const domains = domainsOk ? t.match?.domains : undefined;
  const optIn = t.match?.optIn;
  if (y.problems.length) return { domains, optIn, problems: y.problems };
  return { template: t as Template, domains, optIn, problems: [] };
}

function readString(y: YamlFile, node: Node | null, what: string): string | undefined {
  const v = y.scalar(node);
  if (typeof v !== 'string') {
    y.report(node, `${what} must be text, found ${y.kindOf(node)}`);
    return undefined;
  }
  return v;
}

function readStringList(y: YamlFile, node: Node | null, what: string, check?: (s: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const item of y.items(node, what)) {
    const v = y.scalar(item);
    if (typeof v !== 'string' || v === '') { y.report(item, `${what} entries must be non-empty text, found ${y.kindOf(item)}`); continue; }
    const err = check?.(v);
    if (err) { y.report(item, `${what}: ${err}`); continue; }
    out.push(v);
  }
  return out;
}

function readMatch(y: YamlFile, node: Node | null): Template['match'] {
  const m: Template['match'] = { domains: [], optIn: false };
  for (const [key, keyNode, value] of y.entries(node, 'match')) {
    if (key === 'domains') m.domains = readStringList(y, value, 'match.domains', globProblem);
    else if (key === 'networks') {
      m.networks = readStringList(y, value, 'match.networks', (s) => (/[/\s]/.test(s) ? `${quote(s)} is not a libvirt network name` : undefined));
    } else if (key === 'optIn') {
      const v = y.scalar(value);
      if (typeof v !== 'boolean') y.report(value, `match.optIn must be true or false, found ${y.kindOf(value)}`);
      else m.optIn = v;
    } else y.report(keyNode, `unknown key ${quote(`match.${key}`)}${didYouMean(key, MATCH_KEYS)}; allowed: ${MATCH_KEYS.join(', ')}`);
  }
  return m;
}

function globProblem(glob: string): string | undefined {
  const g = compileGlob(glob);
  return typeof g === 'string' ? g : undefined;
}

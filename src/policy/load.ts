import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseTemplate, type Template, type BindingCatalog } from './template.js';
import { readTrustedFile, MAX_POLICY_FILE_BYTES } from './trust.js';
import { errorMessage } from '../errors.js';
import { ParseCache } from './parse-cache.js';
import type { Problem } from './yaml-doc.js';

/** A template file that failed validation; `domains`/`optIn` are set when that part was still readable. */
export interface BrokenTemplate {
  name: string;
  file: string;
  problems: Problem[];
  domains?: string[];
  optIn?: boolean;
}

export interface TemplateSet {
  templates: Template[];
  broken: BrokenTemplate[];
}

/**
 * Loads every *.yaml / *.yml in `dir` (sorted by name). A missing directory
 * is an empty set. `cacheFile`: keep the parses there between runs (the
 * hooks; see parse-cache.ts).
 */
export function loadTemplates(dir: string, bindings: BindingCatalog, cacheFile?: string): TemplateSet {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { templates: [], broken: [] };
    throw err;
  }
  const set: TemplateSet = { templates: [], broken: [] };
  const cache = new ParseCache(cacheFile);
  for (const n of names) {
    const file = join(dir, n);
    const name = n.replace(/\.ya?ml$/, '');
    let text: string;
    try {
      text = readTrustedFile(file, MAX_POLICY_FILE_BYTES);
    } catch (err) {
      // Removed between readdir and open: no longer a template.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      set.broken.push({ name, file, problems: [{ file, line: 1, column: 1, message: errorMessage(err) }] });
      continue;
    }
    const r = cache.get('template', file, text, () => parseTemplate(file, text, bindings));
    if (r.template) set.templates.push(r.template);
    else set.broken.push({ name, file, problems: r.problems, domains: r.domains, optIn: r.optIn });
  }
  // Two files that give the same template name (web.yaml and web.yml) make opt-in ambiguous.
  const seen = new Map<string, string>();
  for (const t of set.templates) {
    const other = seen.get(t.name);
    if (other) {
      set.broken.push({ name: t.name, file: t.file, problems: [{ file: t.file, line: 1, column: 1, message: `template name "${t.name}" is also defined by ${other}; rename one of the files` }] });
    }
    seen.set(t.name, t.file);
  }
  set.templates = set.templates.filter((t) => !set.broken.some((b) => b.file === t.file));
  cache.save();
  return set;
}

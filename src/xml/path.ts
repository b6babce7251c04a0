// The small path language of XmlDocument.find / XElement.find:
//
//   domain/devices/interface                      child steps by name as written (prefix included)
//   domain/devices/interface[@type='network']     an attribute's (decoded) value; [@type] = present
//   domain/metadata/{https://virtwire.dev/xmlns/domain/1}*
//                                                 by namespace URI, whatever the prefix; * = any name
//   {}name                                        no namespace
//
// No escapes: a predicate value cannot hold its own quote character.

export interface PathPredicate {
  attr: string;
  value?: string;
}

export interface PathStep {
  /** undefined: match the name as written; null: no namespace; else the namespace URI. */
  ns: string | null | undefined;
  /** The qualified name (ns undefined) or the local name; '*' for any. */
  name: string;
  predicates: PathPredicate[];
}

const NAME_OR_STAR = /^(?:\*|[^\s/[\]{}'"=@]+)$/u;
const cache = new Map<string, PathStep[]>();

function bad(path: string, why: string): Error {
  return new Error(`invalid XML path ${JSON.stringify(path)}: ${why}`);
}

/** Parses a path (cached: paths are constants in the code that uses them). */
export function parsePath(path: string): PathStep[] {
  const hit = cache.get(path);
  if (hit) return hit;
  const steps: PathStep[] = [];
  let i = 0;
  while (i <= path.length) {
    let ns: string | null | undefined;
    if (path[i] === '{') {
      const close = path.indexOf('}', i);
      if (close === -1) throw bad(path, "'{' without '}'");
      const uri = path.slice(i + 1, close);
      ns = uri === '' ? null : uri;
      i = close + 1;
    }
    let j = i;
    while (j < path.length && path[j] !== '/' && path[j] !== '[') j++;
    const name = path.slice(i, j);
    if (!NAME_OR_STAR.test(name)) throw bad(path, `step ${JSON.stringify(name)} is not a name or *`);
    i = j;
    const predicates: PathPredicate[] = [];
    while (path[i] === '[') {
      const m = /^\[@([^\s/[\]{}'"=@]+)(?:=(?:'([^']*)'|"([^"]*)"))?\]/u.exec(path.slice(i));
      if (!m) throw bad(path, `predicate at offset ${i} is not [@name] or [@name='value']`);
      const value = m[2] ?? m[3];
      predicates.push(value === undefined ? { attr: m[1] as string } : { attr: m[1] as string, value });
      i += m[0].length;
    }
    steps.push({ ns, name, predicates });
    if (i === path.length) break;
    if (path[i] !== '/') throw bad(path, `unexpected ${JSON.stringify(path[i])} at offset ${i}`);
    i++;
  }
  if (cache.size > 500) cache.clear();
  cache.set(path, steps);
  return steps;
}

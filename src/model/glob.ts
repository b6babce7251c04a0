import { quote } from './show.js';

/**
 * Shell-style globs on domain names: `*` (any text), `?` (one character),
 * `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]` (one character in / not in the set;
 * a `]` right after `[` or `[!` is a member). Everything else is literal,
 * backslash included: names may hold any character. A `[` with no closing
 * `]` is literal too. Characters are Unicode code points.
 *
 * Globs are compiled once, when a template is validated, so a broken one is
 * reported there; matching is linear-time backtracking over the compiled
 * parts (no RegExp: a name chosen by a VM owner cannot make it slow).
 */
export type GlobPart =
  | { kind: 'star' }
  | { kind: 'one' }
  | { kind: 'char'; char: string }
  | { kind: 'set'; negate: boolean; ranges: Array<[number, number]> };

export interface Glob {
  text: string;
  parts: GlobPart[];
}

/** Compiles a glob, or returns what is wrong with it and how to fix it. */
export function compileGlob(text: string): Glob | string {
  const cps = Array.from(text);
  const parts: GlobPart[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i] as string;
    if (c === '*') parts.push({ kind: 'star' });
    else if (c === '?') parts.push({ kind: 'one' });
    else if (c === '[') {
      const set = readSet(text, cps, i);
      if (typeof set === 'string') return set;
      if (set) { parts.push(set.part); i = set.end; } else parts.push({ kind: 'char', char: c });
    } else parts.push({ kind: 'char', char: c });
  }
  return { text, parts };
}

/**
 * Reads the set that opens at `cps[start]` (a `[`): the part and the index
 * of its closing `]`; undefined when there is no closing `]` (the `[` is
 * then literal); an error text for a set that cannot mean what was written.
 */
function readSet(glob: string, cps: string[], start: number): { part: GlobPart; end: number } | string | undefined {
  let j = start + 1;
  const negate = cps[j] === '!' || cps[j] === '^';
  if (negate) j++;
  const bodyStart = j;
  if (cps[j] === ']') j++;
  const end = cps.indexOf(']', j);
  if (end < 0) return undefined;
  const body = cps.slice(bodyStart, end);
  const posix = /\[([:=.])[\s\S]*\1$/.exec(body.join(''));
  if (posix) return `${quote(glob)}: POSIX classes like ${quote(`${posix[0]}]`)} are not supported; list the characters instead, e.g. [a-zA-Z0-9]`;
  const ranges = setRanges(body);
  const reversed = ranges.find(([lo, hi]) => lo > hi);
  if (reversed) {
    const [hi, lo] = reversed.map((n) => String.fromCodePoint(n));
    return `${quote(glob)}: the range ${quote(`${hi}-${lo}`)} goes from high to low and would match nothing; write ${quote(`${lo}-${hi}`)}`;
  }
  return { part: { kind: 'set', negate, ranges }, end };
}

/** Members of a set body as code-point ranges; a `-` first or last is literal. */
function setRanges(body: string[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let m = 0; m < body.length; m++) {
    const lo = (body[m] as string).codePointAt(0) as number;
    if (body[m + 1] === '-' && m + 2 < body.length) {
      out.push([lo, (body[m + 2] as string).codePointAt(0) as number]);
      m += 2;
    } else out.push([lo, lo]);
  }
  return out;
}

function partMatches(part: GlobPart, c: string): boolean {
  if (part.kind === 'one') return true;
  if (part.kind === 'char') return part.char === c;
  if (part.kind === 'star') return false;
  const cp = c.codePointAt(0) as number;
  return part.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== part.negate;
}

/** Whether the whole name matches: O(name × glob), whatever both hold. */
function matchParts(parts: readonly GlobPart[], name: readonly string[]): boolean {
  let p = 0;
  let i = 0;
  let starP = -1;
  let starI = 0;
  while (i < name.length) {
    const part = parts[p];
    if (part?.kind === 'star') { starP = p++; starI = i; continue; }
    if (part && partMatches(part, name[i] as string)) { p++; i++; continue; }
    if (starP < 0) return false;
    p = starP + 1;
    i = ++starI;
  }
  while (parts[p]?.kind === 'star') p++;
  return p === parts.length;
}

/** Matches a glob (text or compiled) against a whole name. Throws only for text that does not compile (validation refuses it). */
export function globMatches(glob: string | Glob, name: string): boolean {
  const g = typeof glob === 'string' ? compileGlob(glob) : glob;
  if (typeof g === 'string') throw new Error(`invalid glob: ${g}`);
  return matchParts(g.parts, Array.from(name));
}

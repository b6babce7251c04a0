import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileGlob, globMatches, type Glob, type GlobPart } from '../../src/model/glob.js';
import { quote } from '../../src/model/show.js';
import { globText, hostileText, holds, isOneLine } from './fuzz.js';

describe('globs', () => {
  it.each([
    ['web-*', 'web-1', true],
    ['web-*', 'db-1', false],
    ['web-?', 'web-😀', true],
    ['[a-c]x', 'bx', true],
    ['[!a-c]x', 'bx', false],
    ['[^a-c]x', 'dx', true],
    ['[]]', ']', true],
    ['[!]]', 'a', true],
    ['[!]]', ']', false],
    ['[!]', '[!]', true], // no closing bracket: literal
    ['[a-]', '-', true],
    ['a\\*', 'a\\xyz', true], // backslash is literal; * still a wildcard
    ['*', 'any\nname', true],
  ])('%j matches %j: %s', (glob, name, expected) => {
    expect(globMatches(glob, name)).toBe(expected);
  });

  it.each([
    ['[z-a]*', '"[z-a]*": the range "z-a" goes from high to low and would match nothing; write "a-z"'],
    ['[a-\\]', '"[a-\\\\]": the range "a-\\\\" goes from high to low and would match nothing; write "\\\\-a"'],
    ['[[:alpha:]]*', '"[[:alpha:]]*": POSIX classes like "[:alpha:]" are not supported; list the characters instead, e.g. [a-zA-Z0-9]'],
  ])('refuses %j: %s', (glob, message) => {
    expect(compileGlob(glob)).toBe(message);
  });

  it('takes time linear in the name, whatever the glob (a VM owner picks the name)', () => {
    const started = Date.now();
    expect(globMatches('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(20000))).toBe(false);
    expect(Date.now() - started).toBeLessThan(2000); // the old RegExp took seconds for 40 characters
  });
});

/** The same parts as a RegExp: a second, independent matching engine. */
function referenceRegExp(g: Glob): RegExp {
  const hex = (n: number): string => `\\u{${n.toString(16)}}`;
  const part = (p: GlobPart): string => {
    if (p.kind === 'star') return '[^]*';
    if (p.kind === 'one') return '[^]';
    if (p.kind === 'char') return hex(p.char.codePointAt(0) as number);
    const body = p.ranges.map(([lo, hi]) => `${hex(lo)}-${hex(hi)}`).join('');
    return p.negate ? `[^${body}]` : body ? `[${body}]` : '[]';
  };
  return new RegExp(`^${g.parts.map(part).join('')}$`, 'u');
}

describe('glob properties', () => {
  it('compiling never throws; a refusal is one line naming the glob', async () => {
    await holds(fc.property(globText, (text) => {
      const g = compileGlob(text);
      if (typeof g === 'string') {
        expect(isOneLine(g), g).toBe(true);
        expect(g.startsWith(`${quote(text)}: `), g).toBe(true);
      }
    }), 500);
  });

  it('a compiled glob never throws on any name, and agrees with a RegExp of the same parts', async () => {
    const names = fc.oneof(hostileText, globText, fc.string({ unit: fc.constantFrom('a', 'b', 'z', '-', ']', '[', '😀', 'é'), maxLength: 8 }));
    await holds(fc.property(globText, names, (text, name) => {
      const g = compileGlob(text);
      if (typeof g === 'string') return;
      expect(globMatches(g, name), `${text} ~ ${name}`).toBe(referenceRegExp(g).test(name));
      expect(globMatches(text, name)).toBe(globMatches(g, name));
    }), 1000);
  });
});

// Shared pieces of the property-based tests (fast-check): the seed, hostile
// values, and an nft syntax check of generated scripts in a throwaway netns.
import fc from 'fast-check';
import { forwardsCollide } from '../../src/plan/conflicts.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { renderTable } from '../../src/host/nft-script.js';
import { UserError } from '../../src/errors.js';
import type { ScratchNetns } from './netns.js';
import { recordFigure } from '../support/figures.js';

/**
 * One seed for every property of a run. Fixed by default, so the suite (and
 * CI) is repeatable; FC_SEED=N replays a failure, FC_SEED=random explores
 * (with FC_RUNS_FACTOR=10 for more cases per property).
 */
const FIXED_SEED = 20261130;
export const SEED = process.env.FC_SEED === 'random' ? Math.floor(Math.random() * 0x7fffffff)
  : process.env.FC_SEED ? Number(process.env.FC_SEED) : FIXED_SEED;
const RUNS_FACTOR = process.env.FC_RUNS_FACTOR ? Number(process.env.FC_RUNS_FACTOR) : 1;

/**
 * Runs a property; a failure names the seed to replay it with (fast-check
 * adds the counterexample and its path). With `figure`, a pass is recorded
 * for README's table of what the tests try (test/support/figures.ts).
 */
export async function holds<T>(property: fc.IRawProperty<T>, numRuns: number, figure?: string): Promise<void> {
  const runs = Math.max(1, Math.round(numRuns * RUNS_FACTOR));
  try {
    await fc.assert(property, { seed: SEED, numRuns: runs, includeErrorInReport: true });
  } catch (err) {
    throw new Error(`${(err as Error).message}\nReplay with FC_SEED=${SEED}`);
  }
  if (figure) recordFigure('property', figure, 'unit', runs);
}

/** `{ weight, arbitrary }` for fc.oneof. */
export const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ weight, arbitrary });

/** Characters that have broken parsers, messages and scripts before. */
const NASTY = [
  '\n', '\r', '\t', '\u0000', '\u0007', '\u001b', '\u007f', '\u0085', '\u009b', '\u2028', '\u2029', '\ufeff', '\u00a0', ' ',
  '"', "'", '`', '\\', '%', ':', '.', '/', ',', ';', '#', '&', '<', '>', '{', '}', '[', ']', '!', '^', '-', '*', '?', '|', '$',
  'é', 'ß', 'İ', '٣', '😀', '\u0301', 'a', 'Z', '0', '9',
];

/** Any short text, tilted towards characters that break things. */
export const hostileText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: fc.constantFrom(...NASTY), maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constantFrom('', ' ', 'null', '~', 'true', 'no', '0x50', '1e400', '-0', 'NaN', '.inf', '99999999999999999999', '__proto__', 'constructor'),
);

/** Numbers a YAML or XML value could turn into, huge and odd ones included. */
export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -70000, max: 70000 }),
  fc.constantFrom(0, -0, 1, 65535, 65536, 1e400, -1e400, Number.NaN, 2 ** 53 + 1, 1e21, 0.5, 8080.0, 1.0000001),
  fc.double(),
);

const hex4 = fc.integer({ min: 0, max: 0xffff });

/** Address-ish text: valid spellings of every kind, and near misses (zone IDs, leading zeros, stray colons). */
export const addressText: fc.Arbitrary<string> = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom(
    '127.0.0.1', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.1', '0.0.0.0', '::', '224.0.0.1',
    'ff02::1', '255.255.255.255', 'fe80::1%eth0', '::%x', 'fe80::1%1.2.3.4', '::ffff:1.2.3.4%x', '01.2.3.4', '1.2.3.04',
    '1.2.3.4::', '1::2::3', ':1::', '1:2:3:4:5:6:7:8:9', '203.0.113.1', '2001:db8::1', '192.168.122.10', 'fd00:77::10',
    '::ffff:203.0.113.1', '::ffff:192.168.122.10', '192.168.122.300', ' 203.0.113.1', '203.0.113.1\n',
  ),
  fc.tuple(fc.ipV6(), hostileText).map(([a, z]) => `${a}%${z}`),
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 3 })).map(([a, i]) => a.split('.').map((p, j) => (j === i ? `0${p}` : p)).join('.')),
  fc.array(fc.oneof(hex4.map((n) => n.toString(16)), fc.constantFrom('', ':', '::', '.', '%', 'g', '1.2.3.4')), { maxLength: 10 }).map((g) => g.join(':')),
);

/** A CIDR-ish text: an address-ish text with an optional prefix, odd prefixes included. */
export const cidrText: fc.Arbitrary<string> = fc.tuple(addressText, fc.oneof(fc.constant(''), fc.integer({ min: 0, max: 140 }).map((n) => `/${n}`), fc.constantFrom('/08', '/', '//8', '/-1', '/ 8'))).map(([a, p]) => a + p);

/** Glob-ish text: the characters globs treat specially, and others. */
export const globText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'b', 'z', 'A', '0', '-', '[', ']', '!', '^', '*', '?', '\\', ':', '.', '=', 'é', '😀', '\u0000'), maxLength: 12 }),
  fc.constantFrom('[z-a]*', '[a-\\]', '[!]', '[]]', '[[:alpha:]]', '[!]a]', 'web-*', '*', '?', '[^-]', '[a-]', '[-a]', '[😀-😂]'),
  hostileText,
);

/** One line: no line breaks or other control characters, nothing JSON leaves raw that a terminal may act on. */
export function isOneLine(text: string): boolean {
  return text.length > 0 && !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(text);
}

/** Runs `fn`; a UserError is returned as its message, any other exception escapes. */
export function userErrorOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof UserError) return err.message;
    throw err;
  }
}

/** The forwards a host would hold at once: each one that collides with an earlier one is dropped (conflicts.ts refuses those). */
export function withoutCollisions(forwards: readonly ResolvedForward[]): ResolvedForward[] {
  const kept: ResolvedForward[] = [];
  for (const f of forwards) if (!kept.some((k) => forwardsCollide(k, f))) kept.push(f);
  return kept;
}

export const MARK = 0x10000000;

/** `nft -c` (check only) of the table for these forwards, in the netns; throws with nft's complaint. */
export async function nftAccepts(ns: ScratchNetns, forwards: readonly ResolvedForward[]): Promise<void> {
  const script = renderTable(withoutCollisions(forwards), MARK);
  const r = await ns.run(['nft', '-c', '-f', '-'], { input: script });
  if (r.exitCode !== 0) throw new Error(`nft -c refused the script: ${r.stderr.trim().split('\n').slice(0, 6).join(' | ')}`);
}

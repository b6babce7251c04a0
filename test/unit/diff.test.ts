// `virtwire plan`'s diff must be a real unified diff: GNU patch applies it
// to the old text and gets the new one, for arbitrary line edits.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { unifiedDiff } from '../../src/cli/diff.js';
import { holds } from './fuzz.js';

const dir = mkdtempSync(join(tmpdir(), 'virtwire-diff-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function patched(before: string, diff: string): string {
  writeFileSync(join(dir, 'a'), before);
  writeFileSync(join(dir, 'p'), diff);
  execFileSync('patch', ['-s', '-o', join(dir, 'c'), join(dir, 'a'), join(dir, 'p')]);
  return readFileSync(join(dir, 'c'), 'utf8');
}

const text = fc.array(fc.constantFrom('<a/>', '<b/>', '  <c x="1"/>', '', '</d>'), { maxLength: 30 }).map((ls) => ls.map((l) => `${l}\n`).join(''));

describe('unifiedDiff', () => {
  it('is empty for equal texts', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n', 'x', 'y')).toBe('');
  });

  it('shows an inserted element as diff -u does, with 3 lines of context', () => {
    const before = ['<domain>', '  <name>a</name>', '  <uuid>u</uuid>', '  <memory>1</memory>', '  <vcpu>1</vcpu>', '  <os/>', '</domain>', ''].join('\n');
    const after = before.replace('  <uuid>u</uuid>\n', '  <uuid>u</uuid>\n  <metadata/>\n');
    expect(unifiedDiff(before, after, 'old', 'new')).toBe([
      '--- old', '+++ new', '@@ -1,6 +1,7 @@', ' <domain>', '   <name>a</name>', '   <uuid>u</uuid>', '+  <metadata/>', '   <memory>1</memory>', '   <vcpu>1</vcpu>', '   <os/>', '',
    ].join('\n'));
  });

  it('GNU patch turns the old text into the new one with it', async () => {
    await holds(fc.property(text, text, (a, b) => {
      const d = unifiedDiff(a, b, 'a', 'b');
      if (a === b) return d === '';
      return patched(a, d) === b;
    }), 200);
  });
});

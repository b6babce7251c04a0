import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { renderTable, renderTeardown, renderAdditions, countElements, forwardElements, hairpinElements, portElements, tableLayout } from '../../src/host/nft-script.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { ROOT } from './helpers.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { mustRun } from '../../src/host/run.js';

const base = { guestSubnet: '192.168.122.0/24', nic: '52:54:00:77:00:10', network: 'default', origin: 't', allowHostConflict: false } as const;
export const SAMPLE: ResolvedForward[] = [
  { ...base, family: 4, proto: 'tcp', host: { lo: 8080, hi: 8080 }, guestAddr: '192.168.122.10', guest: { lo: 80, hi: 80 }, from: [] },
  { ...base, family: 4, proto: 'udp', host: { lo: 5353, hi: 5353 }, guestAddr: '192.168.122.10', guest: { lo: 5353, hi: 5353 }, from: ['198.51.100.0/24', '203.0.113.0/25'] },
  { ...base, family: 4, proto: 'tcp', listen: '192.0.2.1', host: { lo: 9000, hi: 9002 }, guestAddr: '192.168.122.11', guest: { lo: 3000, hi: 3002 }, from: [] },
  { ...base, family: 6, proto: 'tcp', host: { lo: 8080, hi: 8080 }, guestAddr: 'fd00:77::10', guest: { lo: 80, hi: 80 }, from: [], guestSubnet: 'fd00:77::/64' },
];

const EXPECTED = join(ROOT, 'test', 'expected', 'table-sample.nft');

describe('nft table rendering', () => {
  it('matches the checked-in expected script (review the diff of test/expected, not code)', () => {
    const script = renderTable(SAMPLE, 0x10000000);
    // Only an explicit UPDATE_EXPECTED=1 writes it: a missing expected file is a failure, never a fresh copy of the output.
    if (process.env.UPDATE_EXPECTED === '1') writeFileSync(EXPECTED, script);
    expect(existsSync(EXPECTED), `${EXPECTED} is missing; review the script and create it with UPDATE_EXPECTED=1`).toBe(true);
    expect(script).toBe(readFileSync(EXPECTED, 'utf8'));
  });

  it('puts a forward on every address from every source in the port map, keyed by port and proto alone', () => {
    expect(portElements(SAMPLE, 4)).toEqual(['8080 . tcp : 192.168.122.10 . 80']);
    expect(portElements(SAMPLE, 6)).toEqual(['8080 . tcp : fd00:77::10 . 80']);
    expect(forwardElements(SAMPLE, 6)).toEqual([]);
    expect(portElements([{ ...SAMPLE[2]!, listen: undefined }], 4)).toEqual(['9000 . tcp : 192.168.122.11 . 3000', '9001 . tcp : 192.168.122.11 . 3001', '9002 . tcp : 192.168.122.11 . 3002']);
  });

  it('expands a remapped range port by port and one element per source in the forward map', () => {
    expect(forwardElements(SAMPLE, 4)).toEqual([
      '5353 . udp . 0.0.0.0/0 . 198.51.100.0/24 : 192.168.122.10 . 5353',
      '5353 . udp . 0.0.0.0/0 . 203.0.113.0/25 : 192.168.122.10 . 5353',
      '9000 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3000',
      '9001 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3001',
      '9002 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3002',
    ]);
  });

  it('keeps one hairpin element per guest address when its subnets nest (nft refuses overlapping elements)', () => {
    const onWide = { ...SAMPLE[0]!, guestSubnet: '192.168.0.0/16' };
    expect(hairpinElements([SAMPLE[0]!, onWide, SAMPLE[2]!], 4)).toEqual(['192.168.0.0/16 . 192.168.122.10', '192.168.122.0/24 . 192.168.122.11']);
  });

  it('refuses values that could change the script\'s meaning, whatever the ledger holds', () => {
    const evil = { ...SAMPLE[0]!, guestAddr: '192.168.122.10 } ; flush ruleset ; {' };
    expect(() => renderTable([evil], 0x10000000)).toThrow();
    expect(() => renderTable([{ ...SAMPLE[0]!, proto: 'icmp' as 'tcp' }], 0x10000000)).toThrow();
    expect(() => renderTable([{ ...SAMPLE[0]!, host: { lo: 0, hi: 0 } }], 0x10000000)).toThrow();
  });
});

const UUID = '6f1f6a0e-0000-4000-8000-00000000000a';
/** SAMPLE as two VMs: the first two forwards (guest .10) and the rest (guests .11 and fd00:77::10). */
const VM1 = SAMPLE.slice(0, 2);
const VM2 = SAMPLE.slice(2);

describe('one VM\'s elements added to the table as it is (qemu prepare)', () => {
  it('adds exactly its map keys and hairpin pairs, per family, in one script', () => {
    expect(renderAdditions(VM2, countElements([VM1, VM2]))).toBe([
      'add element inet virtwire fwd4 { 9000 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3000, 9001 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3001, 9002 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3002 }',
      'add element inet virtwire hairpin4 { 192.168.122.0/24 . 192.168.122.11 }',
      'add element inet virtwire port6 { 8080 . tcp : fd00:77::10 . 80 }',
      'add element inet virtwire hairpin6 { fd00:77::/64 . fd00:77::10 }',
      '',
    ].join('\n'));
    expect(renderAdditions([], countElements([VM1]))).toBe('');
  });
  it('gives up (the table is written whole) when an element is another VM\'s too', () => {
    const sameGuest = [{ ...SAMPLE[0]!, host: { lo: 8081, hi: 8081 } }];
    expect(renderAdditions(sameGuest, countElements([VM1, sameGuest]))).toBeUndefined();
  });
  it('the layout digest follows the table\'s rules and mark, not its elements', () => {
    expect(tableLayout(0x10000000)).toMatch(/^[0-9a-f]{16}$/);
    expect(tableLayout(0x10000000)).not.toBe(tableLayout(0x20000000));
  });
});

describe('a VM\'s teardown script (run by the qemu shim at stopped/release)', () => {
  it('deletes exactly its map keys and hairpin pairs, per family', () => {
    expect(renderTeardown(UUID, VM2, countElements([VM1, VM2]))).toBe([
      `# virtwire teardown of VM ${UUID}`,
      'delete element inet virtwire fwd4 { 9000 . tcp . 192.0.2.1 . 0.0.0.0/0, 9001 . tcp . 192.0.2.1 . 0.0.0.0/0, 9002 . tcp . 192.0.2.1 . 0.0.0.0/0 }',
      'delete element inet virtwire hairpin4 { 192.168.122.0/24 . 192.168.122.11 }',
      'delete element inet virtwire port6 { 8080 . tcp }',
      'delete element inet virtwire hairpin6 { fd00:77::/64 . fd00:77::10 }',
      '',
    ].join('\n'));
  });

  it('a VM with nothing in the table (a reserved entry) gets the header alone', () => {
    expect(renderTeardown(UUID, [], countElements([VM1, VM2]))).toBe(`# virtwire teardown of VM ${UUID}\n`);
  });

  it('none when another VM puts one of its elements there too: deleting it would take the other\'s', () => {
    const twin = [{ ...VM1[0]!, host: { lo: 8090, hi: 8090 } }]; // another entry naming guest .10: the same hairpin pair
    expect(renderTeardown(UUID, VM1, countElements([VM1, twin]))).toBeUndefined();
  });
});

describe.skipIf(!canNetns && !mustRunEverything)('nft accepts the script (real nft, throwaway netns)', () => {
  let ns: ScratchNetns;
  beforeAll(() => { ns = new ScratchNetns(); });
  afterAll(() => ns?.delete());

  it('loads, and replaces itself atomically when applied twice', async () => {
    await mustRun(ns.run, ['nft', '-f', '-'], renderTable(SAMPLE, 0x10000000));
    await mustRun(ns.run, ['nft', '-f', '-'], renderTable(SAMPLE.slice(0, 1), 0x10000000));
    const listing = await mustRun(ns.run, ['nft', 'list', 'table', 'inet', 'virtwire']);
    expect(listing).toContain('8080 . tcp : 192.168.122.10 . 80');
    expect(listing).not.toContain('5353');
  });

  it('a teardown removes exactly its VM\'s elements from the table, and fails whole once they are gone', async () => {
    await mustRun(ns.run, ['nft', '-f', '-'], renderTable(SAMPLE, 0x10000000));
    const script = renderTeardown(UUID, VM1, countElements([VM1, VM2])) as string;
    await mustRun(ns.run, ['nft', '-f', '-'], script);
    const left = await mustRun(ns.run, ['nft', 'list', 'table', 'inet', 'virtwire']);
    expect(left).not.toContain('192.168.122.10');
    expect(left).toContain('9002 . tcp . 192.0.2.1 . 0.0.0.0/0 : 192.168.122.11 . 3002');
    expect(left).toContain('8080 . tcp : fd00:77::10 . 80');
    // What the shim relies on to hand a changed table to Node: nothing is half-deleted.
    expect((await ns.run(['nft', '-f', '-'], { input: script })).exitCode).not.toBe(0);
    expect(await mustRun(ns.run, ['nft', 'list', 'table', 'inet', 'virtwire'])).toBe(left);
  });

  it('an empty table is valid too', async () => {
    await mustRun(ns.run, ['nft', '-f', '-'], renderTable([], 0x10000000));
  });
});

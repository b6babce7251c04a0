// The forward-path bench's own logic (bench/forward-path.ts): what it installs
// and how it reduces rounds to figures. No timing is tested here.
import { describe, expect, it } from 'vitest';
import { forwardElements, portElements } from '../../src/host/nft-script.js';
import {
  MEASURED_PORT, benchForwards, forwardPorts, iptablesRules, pairedRatios, parseArgs, roundOrder,
} from '../../bench/forward-path.js';
import { goalVerdict, median, medianInterval } from '../../bench/lib.js';

const path = { routerAddr: '198.51.100.65', serverAddr: '203.0.113.66', serverSubnet: '203.0.113.64/26' };

describe('forward-path bench', () => {
  it('lays out n distinct forwards with the measured one last and highest, so a linear scan meets it last', () => {
    const ports = forwardPorts(1000);
    expect(ports).toHaveLength(1000);
    expect(new Set(ports).size).toBe(1000);
    expect(ports.at(-1)).toBe(MEASURED_PORT);
    expect(Math.max(...ports)).toBe(MEASURED_PORT);
    expect(forwardPorts(1)).toEqual([MEASURED_PORT]);
  });

  it('gives virtwire valid forwards (one map element each) and iptables one DNAT rule each, in the same order', () => {
    const elements = forwardElements(benchForwards(1000, path, true), 4);
    expect(elements).toHaveLength(1000);
    expect(elements.at(-1)).toBe(`${MEASURED_PORT} . tcp . 198.51.100.65 . 0.0.0.0/0 : 203.0.113.66 . 8080`);
    // On every address: the port map's, the same forwards.
    const anyAddress = benchForwards(1000, path, false);
    expect(forwardElements(anyAddress, 4)).toEqual([]);
    expect(portElements(anyAddress, 4)).toHaveLength(1000);
    expect(portElements(anyAddress, 4).at(-1)).toBe(`${MEASURED_PORT} . tcp : 203.0.113.66 . 8080`);
    const rules = iptablesRules(1000, path).split('\n').filter((l) => l.startsWith('-A PREROUTING'));
    expect(rules).toHaveLength(1000);
    expect(rules.at(-1)).toBe(`-A PREROUTING -d 198.51.100.65/32 -p tcp -m tcp --dport ${MEASURED_PORT} -j DNAT --to-destination 203.0.113.66:8080`);
  });

  it('interleaves the cases forwards then backwards', () => {
    expect([0, 1, 2].map((r) => roundOrder(4, r))).toEqual([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]);
  });

  it('reduces rounds by median, and the 1000/1 ratio round by round', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    // A busy second round halves both cases: each paired ratio stays 0.9.
    expect(pairedRatios([100, 50, 100], [90, 45, 90]).map((r) => r.toFixed(2))).toEqual(['0.90', '0.90', '0.90']);
    expect(() => pairedRatios([1], [1, 2])).toThrow();
    // 100 values 1..100: the median's interval is the ranks 50 ∓ 9.8, i.e. 41 and 60.
    expect(medianInterval(Array.from({ length: 100 }, (_, i) => 100 - i))).toEqual([41, 60]);
    expect(medianInterval([5])).toEqual([5, 5]);
  });

  it('says a goal is met, not met, or within noise from an interval (bench:hooks, lower is better)', () => {
    expect(goalVerdict([1.02, 1.10], 1.1)).toBe('met');
    expect(goalVerdict([1.11, 1.2], 1.1)).toBe('not met');
    expect(goalVerdict([1.05, 1.15], 1.1)).toBe('within noise');
    expect(goalVerdict([1.1, 1.1], 1.1)).toBe('met');
  });

  it('parses its options and refuses nonsense', () => {
    expect(parseArgs(['--rounds', '3', '--seconds', '1.5'])).toMatchObject({ rounds: 3, seconds: 1.5, forwards: 1000 });
    expect(() => parseArgs(['--rounds', '0'])).toThrow(/positive/);
    expect(() => parseArgs(['--rounds', '2.5'])).toThrow(/positive/);
    expect(() => parseArgs(['--fast'])).toThrow(/unknown option/);
    expect(() => parseArgs(['--forwards', '20000'])).toThrow(/--forwards/);
  });
});

import { describe, expect, it } from 'vitest';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import {
  parseIp, canonicalIp, formatIp, parseCidr, cidrIpv4Mapped, isLoopback, isUnspecified, isMulticast, isBroadcast, ipv4Mapped, bigIntToIp,
  type Cidr,
} from '../../src/model/addr.js';
import { addressText, cidrText, hostileText, holds, isOneLine } from './fuzz.js';

describe('strict address parser', () => {
  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::', '::'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::1:2:3:4:5:6:7', '0:1:2:3:4:5:6:7'],
    ['::ffff:1.2.3.4', '::ffff:102:304'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ['0000:0000::0001', '::1'],
  ])('reads %s as %s', (text, canonical) => {
    expect(canonicalIp(text)).toBe(canonical);
  });

  it.each([
    ['fe80::1%eth0', '"fe80::1%eth0" has an IPv6 zone ID ("%eth0"), which names a local link and cannot be used here; write the address without it'],
    ['::%x', '"::%x" has an IPv6 zone ID ("%x"), which names a local link and cannot be used here; write the address without it'],
    ['01.2.3.4', '"01.2.3.4" has a number with a leading zero, which some tools read as octal; write it without leading zeros'],
    ['1.2.3.256', '"1.2.3.256" is not an IPv4 address: each of its numbers is 0-255'],
    ['1.2.3', '"1.2.3" is not an IPv4 address, which is four numbers 0-255 like 192.0.2.1'],
    ['1::2::3', '"1::2::3" is not an IPv6 address: "::" may appear only once'],
    ['1:2:3:4:5:6:7', '"1:2:3:4:5:6:7" is not an IPv6 address: it has 7 groups; an address has 8, or fewer with one "::"'],
    ['1:2:3:4:5:6:7:8::', '"1:2:3:4:5:6:7:8::" is not an IPv6 address: it has 8 groups besides "::", which stands for at least one; at most 7'],
    ['1:2:3:4:5:6:7:1.2.3.4', '"1:2:3:4:5:6:7:1.2.3.4" is not an IPv6 address: it has 9 groups; an address has 8, or fewer with one "::"'],
    ['1.2.3.4::', '"1.2.3.4::" is not an IPv6 address: an embedded IPv4 address may only end it'],
    ['12345::', '"12345::" is not an IPv6 address: "12345" is not 1-4 hex digits'],
    [':1::', '":1::" is not an IPv6 address: it has a stray ":"'],
    ['::ffff:01.2.3.4', '"::ffff:01.2.3.4" is not an IPv6 address: its IPv4 part is wrong: "01.2.3.4" has a number with a leading zero, which some tools read as octal; write it without leading zeros'],
    ['web', '"web" is not an IPv4 or IPv6 address'],
    [' 192.0.2.1', '" 192.0.2.1" is not an IPv4 or IPv6 address'],
  ])('refuses %j: %s', (text, message) => {
    expect(parseIp(text)).toBe(message);
  });

  it('refuses what Node refuses on leading zeros, and what Node accepts on zone IDs', () => {
    expect(isIPv4('01.2.3.4')).toBe(false); // Node already refuses leading zeros…
    expect(isIPv6('fe80::1%eth0')).toBe(true); // …but takes zone IDs, which the old parser read as part of the last group
    expect(typeof parseIp('fe80::1%eth0')).toBe('string');
  });

  it('refuses IPv4-mapped CIDRs by naming the IPv4 CIDR they stand for', () => {
    const c = parseCidr('::ffff:198.51.100.0/120') as Cidr;
    expect(cidrIpv4Mapped(c)).toBe('198.51.100.0/24');
    expect(cidrIpv4Mapped(parseCidr('::ffff:0:0/96') as Cidr)).toBe('0.0.0.0/0');
    expect(cidrIpv4Mapped(parseCidr('::/0') as Cidr)).toBeUndefined();
    expect(cidrIpv4Mapped(parseCidr('198.51.100.0/24') as Cidr)).toBeUndefined();
  });

  it('CIDR prefixes are plain decimal', () => {
    expect(parseCidr('198.51.100.0/08')).toBe('expected an address or CIDR like 198.51.100.0/24, found "198.51.100.0/08"');
    expect(parseCidr('fe80::%eth0/64')).toBe('"fe80::%eth0" has an IPv6 zone ID ("%eth0"), which names a local link and cannot be used here; write the address without it');
  });
});

describe('special addresses (exported for the host-socket conflict check)', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', '::0:1', '0000::0001', '::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:7F00:1', '::127.0.0.1', '0:0:0:0:0:ffff:127.1.2.3',
  ])('%s is loopback', (a) => { expect(isLoopback(a)).toBe(true); });

  it.each(['128.0.0.1', '::2', '::ffff:128.0.0.1', '1::1', 'fe80::1', '0.0.0.0', '::', 'not an address', 'fe80::1%lo'])('%s is not loopback', (a) => {
    expect(isLoopback(a)).toBe(false);
  });

  it('unspecified, multicast, broadcast, IPv4-mapped', () => {
    expect(['0.0.0.0', '::', '0:0:0:0:0:0:0:0', '::0'].every(isUnspecified)).toBe(true);
    expect(['0.0.0.1', '::1', '::ffff:0.0.0.0', 'x'].some(isUnspecified)).toBe(false);
    expect(['224.0.0.1', '239.255.255.255', 'ff02::1', 'FF05::2'].every(isMulticast)).toBe(true);
    expect(['223.255.255.255', '240.0.0.1', 'fe80::1'].some(isMulticast)).toBe(false);
    expect(isBroadcast('255.255.255.255')).toBe(true);
    expect(isBroadcast('255.255.255.254')).toBe(false);
    expect(ipv4Mapped('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(ipv4Mapped('::ffff:7f00:1')).toBe('127.0.0.1');
    expect(ipv4Mapped('0:0:0:0:0:FFFF:CB00:7101')).toBe('203.0.113.1');
    expect(ipv4Mapped('::127.0.0.1')).toBeUndefined();
    expect(ipv4Mapped('203.0.113.1')).toBeUndefined();
    expect(ipv4Mapped('::ffff:1.2.3.4%eth0')).toBeUndefined();
  });
});

/** A random spelling of an IPv6 address: any case, padded groups, "::" over any run of zero groups, maybe an IPv4 tail. */
const ipv6Spelling = (value: bigint): fc.Arbitrary<string> =>
  fc.record({
    upper: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
    pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
    v4Tail: fc.boolean(),
    cut: fc.nat(),
  }).map(({ upper, pad, v4Tail, cut }) => {
    const words = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt((7 - i) * 16)) & 0xffffn));
    const head = v4Tail ? words.slice(0, 6) : words;
    let groups = head.map((w, i) => {
      const h = w.toString(16).padStart(Math.min(4, w.toString(16).length + (pad[i] ?? 0)), '0');
      return upper[i] ? h.toUpperCase() : h;
    });
    const tail = v4Tail ? bigIntToIp(value & 0xffffffffn, 4) : undefined;
    // Choose one run of zero groups (if any) to write as "::".
    const runs: Array<[number, number]> = [];
    for (let i = 0; i < groups.length; i++) {
      if (head[i] !== 0) continue;
      let j = i;
      while (j < groups.length && head[j] === 0) j++;
      for (let a = i; a < j; a++) for (let b = a + 1; b <= j; b++) runs.push([a, b]);
      i = j;
    }
    const run = runs.length && cut % (runs.length + 1) < runs.length ? runs[cut % (runs.length + 1)] : undefined;
    if (!run) return [...groups, ...(tail ? [tail] : [])].join(':');
    const before = groups.slice(0, run[0]).join(':');
    groups = groups.slice(run[1]);
    const after = [...groups, ...(tail ? [tail] : [])].join(':');
    return `${before}::${after}`;
  });

/** Interesting 128-bit values: loopback and its mapped / compatible forms, zero, mapped and random addresses. */
const ipv6Value: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 0xffff7f000001n, 0x7f000001n, 0xffff00000000n, 0xff020000000000000000000000000001n),
  fc.bigInt(0n, 0xffffffffn).map((v4) => 0xffff00000000n | v4),
  fc.bigInt(0n, 0xffffffn).map((low) => 0x7f000000n | low),
  fc.bigInt(0n, 0xffffffn).map((low) => 0xffff7f000000n | low),
  fc.bigInt(0n, (1n << 128n) - 1n),
);

describe('address properties', () => {
  it('parseIp never throws, and refusals are one line', async () => {
    await holds(fc.property(fc.oneof(addressText, cidrText, hostileText), (text) => {
      const r = parseIp(text);
      if (typeof r === 'string') expect(isOneLine(r), r).toBe(true);
      const c = parseCidr(text);
      if (typeof c === 'string') expect(isOneLine(c), c).toBe(true);
    }), 400);
  });

  it('accepts exactly what Node accepts, less zone IDs', async () => {
    await holds(fc.property(fc.oneof(addressText, hostileText), (text) => {
      expect(typeof parseIp(text) !== 'string', text).toBe((isIPv4(text) || isIPv6(text)) && !text.includes('%'));
    }), 600);
  });

  it('canonicalIp round-trips every spelling', async () => {
    await holds(fc.property(ipv6Value.chain((v) => fc.tuple(fc.constant(v), ipv6Spelling(v))), ([value, text]) => {
      const ip = parseIp(text);
      expect(ip, text).toEqual({ family: 6, value });
      const canonical = canonicalIp(text);
      expect(canonicalIp(canonical)).toBe(canonical);
      expect(parseIp(canonical)).toEqual(ip);
      expect(formatIp({ family: 6, value })).toBe(canonical);
    }), 400);
    await holds(fc.property(fc.ipV4(), (text) => { expect(canonicalIp(text)).toBe(text); }), 100);
  });

  it('isLoopback, ipv4Mapped and isUnspecified agree with Node\'s BlockList over every spelling', async () => {
    const loopback = new BlockList();
    loopback.addSubnet('127.0.0.0', 8, 'ipv4'); // BlockList applies IPv4 rules to IPv4-mapped IPv6 too
    loopback.addAddress('::1', 'ipv6');
    loopback.addSubnet('::127.0.0.0', 104, 'ipv6');
    const mapped = new BlockList();
    mapped.addSubnet('::ffff:0:0', 96, 'ipv6');
    await holds(fc.property(ipv6Value.chain((v) => fc.tuple(fc.constant(v), ipv6Spelling(v))), ([value, text]) => {
      expect(isLoopback(text), text).toBe(loopback.check(text, 'ipv6'));
      expect(ipv4Mapped(text), text).toBe(mapped.check(text, 'ipv6') ? bigIntToIp(value & 0xffffffffn, 4) : undefined);
      expect(isUnspecified(text), text).toBe(value === 0n);
    }), 600);
    await holds(fc.property(fc.ipV4(), (text) => { expect(isLoopback(text), text).toBe(loopback.check(text, 'ipv4')); }), 200);
  });
});

// Property: renderTable turns any set of valid forwards (what resolve.ts and
// the conflict check let through) into a script the real nft accepts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { forwardElements, portElements, renderTable } from '../../src/host/nft-script.js';
import { bigIntToIp, minimalCidrs, parseCidr, type Cidr, type Family } from '../../src/model/addr.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { MARK, holds, hostileText, nftAccepts, w, withoutCollisions } from './fuzz.js';

const BITS = { 4: 32, 6: 128 } as const;

const address = (family: Family): fc.Arbitrary<string> =>
  fc.bigInt(1n, (1n << BigInt(BITS[family])) - 1n).map((n) => bigIntToIp(n, family));

const cidr = (family: Family): fc.Arbitrary<Cidr> =>
  fc.tuple(fc.bigInt(0n, (1n << BigInt(BITS[family])) - 1n), fc.integer({ min: 0, max: BITS[family] })).map(([n, prefix]) => {
    const host = BigInt(BITS[family] - prefix);
    return parseCidr(`${bigIntToIp((n >> host) << host, family)}/${prefix}`) as Cidr;
  });

/** Small pools too, so forwards share guests, nested subnets and listen addresses (where nft refuses overlapping elements). */
const POOL = {
  4: { addrs: ['192.168.122.10', '10.1.2.3'], subnets: ['192.168.122.0/24', '192.168.0.0/16', '10.0.0.0/8', '10.1.0.0/16'] },
  6: { addrs: ['fd00:77::10', 'fd00::1'], subnets: ['fd00:77::/64', 'fd00::/8', 'fd00::/16'] },
} as const;
const pooled = (family: Family, kind: 'addrs' | 'subnets', random: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof(fc.constantFrom(...POOL[family][kind]), random);

const forward = (family: Family): fc.Arbitrary<ResolvedForward> =>
  fc.record({
    proto: fc.constantFrom('tcp' as const, 'udp' as const),
    lo: fc.integer({ min: 1, max: 65535 }),
    width: fc.oneof(w(5, fc.integer({ min: 1, max: 4 })), w(1, fc.integer({ min: 1, max: 64 }))),
    guestLo: fc.integer({ min: 1, max: 65535 }),
    listen: fc.option(pooled(family, 'addrs', address(family)), { freq: 2 }),
    from: fc.array(cidr(family), { maxLength: 3 }),
    guestAddr: pooled(family, 'addrs', address(family)),
    guestSubnet: pooled(family, 'subnets', cidr(family).map((c) => c.text)),
    description: fc.option(hostileText),
    origin: hostileText,
  }).map(({ proto, lo, width, guestLo, listen, from, guestAddr, guestSubnet, description, origin }): ResolvedForward => {
    const w = Math.min(width, 65536 - lo, 65536 - guestLo);
    return {
      family, proto, listen: listen ?? undefined, host: { lo, hi: lo + w - 1 }, guest: { lo: guestLo, hi: guestLo + w - 1 },
      from: minimalCidrs(from).map((c) => c.text), guestAddr, guestSubnet,
      nic: '52:54:00:77:00:10', network: 'default', origin, description: description ?? undefined, allowHostConflict: false,
    };
  });

const forwards = fc.array(fc.oneof(forward(4), forward(6)), { maxLength: 40 });

describe('nft rendering properties', () => {
  let ns: ScratchNetns | undefined;
  beforeAll(() => { if (canNetns || mustRunEverything) ns = new ScratchNetns(); });
  afterAll(() => ns?.delete());

  it('one map element per host port and source, whatever the values', async () => {
    await holds(fc.property(forwards, (fs) => {
      for (const family of [4, 6] as const) {
        const expected = fs.filter((f) => f.family === family).reduce((n, f) => n + (f.host.hi - f.host.lo + 1) * Math.max(1, f.from.length), 0);
        expect(forwardElements(fs, family).length + portElements(fs, family).length).toBe(expected);
        // Every element of the port map is a forward on every address from every source.
        expect(portElements(fs, family)).toHaveLength(fs.filter((f) => f.family === family && f.listen === undefined && f.from.length === 0).reduce((n, f) => n + f.host.hi - f.host.lo + 1, 0));
      }
      expect(renderTable(fs, MARK)).toContain('table inet virtwire {');
    }), 200);
  });

  it.skipIf(!canNetns && !mustRunEverything)('nft accepts the table for any valid, non-colliding forwards', async () => {
    await holds(fc.asyncProperty(forwards, async (fs) => {
      expect(withoutCollisions(fs).length).toBeGreaterThanOrEqual(Math.min(1, fs.length));
      await nftAccepts(ns as ScratchNetns, fs);
    }), 60, 'arbitrary valid forwards rendered and loaded by `nft -c`');
  });

  it('refuses an address of the other family where the ledger is corrupt', () => {
    const v4 = fc.sample(forward(4), { seed: 1, numRuns: 1 })[0] as ResolvedForward;
    expect(() => renderTable([{ ...v4, guestAddr: 'fd00::1' }], MARK)).toThrow('invalid IPv4 address in ledger: "fd00::1"');
    expect(() => renderTable([{ ...v4, from: ['2001:db8::/32'] }], MARK)).toThrow('invalid IPv4 CIDR in ledger: "2001:db8::/32"');
    expect(() => renderTable([{ ...v4, listen: 'fe80::1%eth0' }], MARK)).toThrow('invalid IPv4 address in ledger');
  });
});

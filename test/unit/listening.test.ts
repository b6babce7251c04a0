import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { hostSockets, parseProcNet } from '../../src/host/listening.js';
import { tempDir } from './helpers.js';
import { checkConflicts, checkHostSockets, forwardsCollide } from '../../src/plan/conflicts.js';
import type { ResolvedForward } from '../../src/model/forward.js';
import { formatRange } from '../../src/model/ports.js';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 010200C0:0016 020200C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
`;

describe('host listening sockets', () => {
  it('parses LISTEN sockets with their addresses, skipping connections', () => {
    expect(parseProcNet(TCP, 'tcp', 4)).toEqual([
      { proto: 'tcp', family: 4, address: '0.0.0.0', port: 8080 },
      { proto: 'tcp', family: 4, address: '127.0.0.1', port: 3000 },
    ]);
    expect(parseProcNet(TCP6, 'tcp', 6)).toEqual([{ proto: 'tcp', family: 6, address: '::1', port: 8081 }]);
  });

  it('reads tcp, tcp6, udp and udp6 of a /proc/net, leaving out a file that is not there (IPv6 disabled)', async () => {
    const dir = join(tempDir(), 'net');
    mkdirSync(dir);
    writeFileSync(join(dir, 'tcp'), TCP);
    writeFileSync(join(dir, 'tcp6'), TCP6);
    writeFileSync(join(dir, 'udp'), '  sl  local_address rem_address   st\n   0: 00000000:0035 00000000:0000 07 00000000:00000000\n');
    expect(await hostSockets(dir)).toEqual([
      { proto: 'tcp', family: 4, address: '0.0.0.0', port: 8080 },
      { proto: 'tcp', family: 4, address: '127.0.0.1', port: 3000 },
      { proto: 'tcp', family: 6, address: '::1', port: 8081 },
      { proto: 'udp', family: 4, address: '0.0.0.0', port: 53 },
    ]);
    expect(await hostSockets(join(dir, 'missing'))).toEqual([]);
  });

  it('finds a socket this process listens on in the real /proc/net', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    try {
      const { port } = server.address() as { port: number };
      expect(await hostSockets()).toContainEqual({ proto: 'tcp', family: 4, address: '0.0.0.0', port });
    } finally {
      server.close();
    }
  });

  const f = (over: Partial<ResolvedForward> = {}): ResolvedForward => ({
    family: 4, proto: 'tcp', host: { lo: 8080, hi: 8080 }, guestAddr: '192.168.122.10', guest: { lo: 80, hi: 80 }, from: [],
    guestSubnet: '192.168.122.0/24', nic: '52:54:00:77:00:10', network: 'default', origin: '/t/web.yaml:5:5', allowHostConflict: false, ...over,
  });
  const sockets = parseProcNet(TCP, 'tcp', 4);

  it('refuses a port the host listens on, unless allowHostConflict; loopback-only services do not count', () => {
    expect(() => checkConflicts('web-1', [f()], [], sockets)).toThrow('VM "web-1": tcp port 8080 on every host IPv4 address is in use by the host itself (0.0.0.0:8080); stop that service, use another host port, or set allowHostConflict: true on the forward (/t/web.yaml:5:5)');
    expect(() => checkConflicts('web-1', [f({ allowHostConflict: true })], [], sockets)).not.toThrow();
    expect(() => checkConflicts('web-1', [f({ host: { lo: 3000, hi: 3000 } })], [], sockets)).not.toThrow();
    // The host's sockets alone (a served start checks them after its answer): the same refusal, no other check.
    expect(() => checkHostSockets('web-1', [f()], sockets)).toThrow('VM "web-1": tcp port 8080 on every host IPv4 address is in use by the host itself (0.0.0.0:8080)');
    expect(() => checkHostSockets('web-1', [f(), f()], [])).not.toThrow();
  });

  it('refuses a port another running VM holds; a different listen address or proto is fine', () => {
    const other = { uuid: 'u', name: 'web "a"', forwards: [f({ host: { lo: 9000, hi: 9010 } })] };
    expect(() => checkConflicts('web-b', [f({ host: { lo: 9005, hi: 9005 } })], [other], [])).toThrow(
      'VM "web-b": tcp port 9005 on every host IPv4 address is already forwarded to running VM "web \\"a\\"" (/t/web.yaml:5:5); use another host port or stop "web \\"a\\""');
    const specific = { ...other, forwards: [f({ host: { lo: 9000, hi: 9000 }, listen: '192.0.2.1' })] };
    expect(() => checkConflicts('web-b', [f({ host: { lo: 9000, hi: 9000 }, listen: '192.0.2.2' })], [specific], [])).not.toThrow();
    expect(() => checkConflicts('web-b', [f({ host: { lo: 9000, hi: 9000 } })], [specific], [])).toThrow('already forwarded');
    expect(() => checkConflicts('web-b', [f({ host: { lo: 9000, hi: 9000 }, proto: 'udp' })], [specific], [])).not.toThrow();
  });

  it('refuses exactly what checking every pair refuses, with the same first collision named (random sets of ranges, listens, families)', () => {
    // The pairwise check, as it was written before the sort and sweep that skips it when nothing collides.
    const naive = (vm: string, fs: ResolvedForward[], others: { uuid: string; name: string; forwards: ResolvedForward[] }[]): string | undefined => {
      for (let i = 0; i < fs.length; i++) {
        const a = fs[i] as ResolvedForward;
        for (let j = 0; j < i; j++) if (forwardsCollide(a, fs[j] as ResolvedForward)) return `self ${i} ${j}`;
        for (const o of others) if (o.forwards.some((x) => forwardsCollide(a, x))) return `other ${i} ${o.uuid}`;
      }
      return undefined;
    };
    let seed = 12345;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const randomForward = (): ResolvedForward => {
      const lo = 1000 + rnd(60);
      return f({ family: rnd(2) === 0 ? 4 : 6, proto: rnd(3) === 0 ? 'udp' : 'tcp', host: { lo, hi: lo + (rnd(4) === 0 ? rnd(8) : 0) }, ...(rnd(3) === 0 ? { listen: `192.0.2.${rnd(3)}` } : {}), origin: `o${rnd(1000)}` });
    };
    let refused = 0;
    for (let round = 0; round < 400; round++) {
      const mine = Array.from({ length: 1 + rnd(12) }, randomForward);
      const others = Array.from({ length: rnd(3) }, (_, k) => ({ uuid: `u${k}`, name: `vm-${k}`, forwards: Array.from({ length: rnd(6) }, randomForward) }));
      const expected = naive('web-r', mine, others);
      let got: string | undefined;
      try { checkConflicts('web-r', mine, others, []); } catch (err) { got = (err as Error).message; }
      if (expected === undefined) { expect(got, JSON.stringify(mine)).toBeUndefined(); continue; }
      refused++;
      const [kind, i, j] = expected.split(' ');
      const a = mine[Number(i)] as ResolvedForward;
      if (kind === 'self') {
        const b = mine[Number(j)] as ResolvedForward;
        expect(got).toBe(`VM "web-r": forward ${a.proto} ${formatRange(a.host)} (${a.origin}) collides with forward ${b.proto} ${formatRange(b.host)} (${b.origin}) of the same VM; remove one`);
      } else {
        expect(got).toContain(`VM "web-r": ${a.proto} port ${formatRange(a.host)} on `);
        expect(got).toContain(`already forwarded to running VM "${others.find((o) => o.uuid === j)?.name}"`);
      }
    }
    expect(refused, 'the random sets collide often enough to test both ways').toBeGreaterThan(100);
    expect(refused).toBeLessThan(380);
  });
});

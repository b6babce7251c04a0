import { readFile } from 'node:fs/promises';
import { bigIntToIp } from '../model/addr.js';

import type { HostSocket } from '../model/host.js';

export type { HostSocket };

/**
 * Parses /proc/net/{tcp,tcp6,udp,udp6}. Addresses there are hex in host
 * byte order per 32-bit word (little-endian on x86).
 */
export function parseProcNet(text: string, proto: 'tcp' | 'udp', family: 4 | 6): HostSocket[] {
  const out: HostSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    const state = cols[3];
    if (!local || !state) continue;
    // TCP: only LISTEN (0A). UDP: 07 (unconnected) is a bound server socket.
    if ((proto === 'tcp' && state !== '0A') || (proto === 'udp' && state !== '07')) continue;
    const [hexAddr = '', hexPort = ''] = local.split(':');
    out.push({ proto, family, address: decodeAddress(hexAddr, family), port: parseInt(hexPort, 16) });
  }
  return out;
}

function decodeAddress(hex: string, family: 4 | 6): string {
  let n = 0n;
  for (let w = 0; w < hex.length / 8; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    const bytes = word.match(/../g) ?? [];
    n = (n << 32n) | BigInt(`0x${bytes.reverse().join('') || '0'}`);
  }
  return bigIntToIp(n, family);
}

/**
 * Sockets of the host's network namespace (that of the calling process).
 * The four files are read at once, on libuv's threads: reading tcp or tcp6
 * makes the kernel walk its whole connection hash, however few sockets there
 * are (~1.5 ms each here), and a VM start waits for them. Never rejects.
 */
export async function hostSockets(procNet = '/proc/net'): Promise<HostSocket[]> {
  const files = [['tcp', 'tcp', 4], ['tcp6', 'tcp', 6], ['udp', 'udp', 4], ['udp6', 'udp', 6]] as const;
  const parsed = await Promise.all(files.map(([file, proto, family]) => readFile(`${procNet}/${file}`, 'utf8').then(
    (text) => parseProcNet(text, proto, family),
    () => [], // IPv6 disabled: no tcp6/udp6.
  )));
  return parsed.flat();
}

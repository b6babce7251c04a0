import { readFileSync } from 'node:fs';
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

/** Sockets of the host's network namespace (that of the calling process). */
export function hostSockets(procNet = '/proc/net'): HostSocket[] {
  const out: HostSocket[] = [];
  for (const [file, proto, family] of [['tcp', 'tcp', 4], ['tcp6', 'tcp', 6], ['udp', 'udp', 4], ['udp6', 'udp', 6]] as const) {
    try {
      out.push(...parseProcNet(readFileSync(`${procNet}/${file}`, 'utf8'), proto, family));
    } catch {
      // IPv6 disabled: no tcp6/udp6.
    }
  }
  return out;
}

import type { ResolvedForward } from '../model/forward.js';
import { formatRange } from '../model/ports.js';

function hostPort(addr: string, port: string): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** "tcp *:8080 -> 192.168.122.10:80" — for logs and CLI output. */
export function describeForward(f: ResolvedForward): string {
  const listen = f.listen ?? (f.family === 4 ? '*' : '[*]');
  const src = f.from.length ? ` from ${f.from.join(',')}` : '';
  return `${f.proto} ${f.listen ? hostPort(listen, formatRange(f.host)) : `${listen}:${formatRange(f.host)}`} -> ${hostPort(f.guestAddr, formatRange(f.guest))}${src}`;
}

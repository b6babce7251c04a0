// Test-only traffic helpers on a Sandbox (src/demo/sandbox.ts): requests made
// from the sandbox host itself, and the answers a guest booted with `fetch`
// prints on its console. The demo needs only the client side
// (Sandbox.clientHttpGet / clientUdp), which stays in src/demo.
import { promises as fs } from 'node:fs';
import { GUEST_FETCH_PREFIX } from '../../src/demo/guest-image.js';
import { HTTP_GET_JS, UDP_JS, type Sandbox } from '../../src/demo/sandbox.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The Node to run inside: Debian 12 mode shares the host's filesystem; the Debian 13 root has its own Node. */
function nodeInside(sb: Sandbox): string {
  return sb.rootfs ? 'node' : process.execPath;
}

/** HTTP GET / from the sandbox host netns; returns the body, throws with the reason. */
export async function hostHttpGet(sb: Sandbox, host: string, port: number, timeoutMs = 5000): Promise<string> {
  const r = await sb.exec([nodeInside(sb), '-e', HTTP_GET_JS, host, String(port), String(timeoutMs)], {
    timeoutMs: timeoutMs + 10_000,
  });
  return r.stdout;
}

/** Sends payload to host:port/udp from the sandbox host netns (resending every 0.5 s); returns the first answer. */
export async function hostUdp(sb: Sandbox, host: string, port: number, payload: string, timeoutMs = 5000): Promise<string> {
  const r = await sb.exec([nodeInside(sb), '-e', UDP_JS, host, String(port), payload, String(timeoutMs)], {
    timeoutMs: timeoutMs + 10_000,
  });
  return r.stdout;
}

/**
 * Waits until a guest booted with `fetch` reports an answer containing
 * `want` on its console; returns that line. Throws with the last lines seen.
 */
export async function waitForGuestFetch(sb: Sandbox, name: string, want: string, timeoutMs = 30_000): Promise<string> {
  const log = sb.consoleLog(name);
  const deadline = Date.now() + timeoutMs;
  let lines: string[] = [];
  while (Date.now() < deadline) {
    const text = await fs.readFile(log, 'utf8').catch(() => '');
    lines = text.split('\n').filter((l) => l.startsWith(GUEST_FETCH_PREFIX));
    const hit = lines.find((l) => l.includes(want));
    if (hit) return hit.trim();
    await sleep(200);
  }
  throw new Error(`sandbox: guest ${name} fetched no answer containing ${JSON.stringify(want)} within ${timeoutMs / 1000} s; last: ${lines.slice(-3).join(' | ') || '(no fetch lines)'}`);
}

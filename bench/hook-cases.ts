// What the benches that time `virsh start` in the e2e sandbox share: the
// guest, the hooks each case installs, virtwire's watcher and template.
import type { Sandbox, GuestSpec } from '../src/demo/sandbox.js';

export const VM: GuestSpec = { name: 'bench-1', mac: '52:54:00:be:00:10', ip: '192.168.122.10' };
export const FIRST_PORT = 20000;
export const QEMU_D = '/etc/libvirt/hooks/qemu.d';
const WATCH_PID = '/run/vw-bench-watch.pid';

export const sh = (sb: Sandbox, script: string, ...a: string[]) => sb.exec(['bash', '-c', script, 'bench', ...a]);

/** N forwards host FIRST_PORT+i → guest 80 (the guest's web server answers on every one). */
export const ports = (n: number): number[] => Array.from({ length: n }, (_, i) => FIRST_PORT + i);

export function virtwireTemplate(n: number): string {
  return `match: {domains: [${JSON.stringify(VM.name)}], networks: [default]}\nbinding: nat\nforwards:\n${ports(n).map((p) => `  - {proto: tcp, host: ${p}, guest: 80}\n`).join('')}`;
}

/** Keeps the virtwire shims install.sh put in place (at /root/vw-shims) before the cases move hooks around. */
export async function keepVirtwireShims(sb: Sandbox): Promise<void> {
  await sh(sb, `mkdir -p /root/vw-shims && cp -a ${QEMU_D}/virtwire /root/vw-shims/qemu && cp -a /etc/libvirt/hooks/network.d/virtwire /root/vw-shims/network`);
}

/**
 * Exactly these hook scripts and templates (path → text), every other hook
 * and template gone; `virtwire`: virtwire's shims put back too. libvirt
 * learns of added or removed hook scripts on SIGHUP (LIBVIRT-NOTES.md).
 */
export async function useHooks(sb: Sandbox, files: Record<string, string>, virtwire = false): Promise<void> {
  await sh(sb, `rm -f ${QEMU_D}/* /etc/libvirt/hooks/network.d/* /etc/virtwire/templates/*.yaml`);
  for (const [path, text] of Object.entries(files)) {
    await sb.exec(['tee', path], { input: text });
    if (!path.endsWith('.yaml') && !path.endsWith('.json')) await sb.exec(['chmod', '755', path]);
  }
  if (virtwire) await sh(sb, `cp -a /root/vw-shims/qemu ${QEMU_D}/virtwire && cp -a /root/vw-shims/network /etc/libvirt/hooks/network.d/virtwire`);
  await sh(sb, 'kill -HUP "$(cat /run/libvirtd.pid)"; sleep 0.5');
}

/**
 * Starts or stops `virtwire watch` in the sandbox; started, it is serving
 * prepare and done with its start-up sync. True: it was started now.
 */
export async function useWatcher(sb: Sandbox, on: boolean): Promise<boolean> {
  const running = (await sh(sb, `[ -f ${WATCH_PID} ] && kill -0 "$(cat ${WATCH_PID})" 2>/dev/null && echo yes || echo no`)).stdout.trim() === 'yes';
  if (on === running) return false;
  if (!on) {
    await sb.exec(['start-stop-daemon', '--stop', '--retry', '15', '--oknodo', '--remove-pidfile', '--pidfile', WATCH_PID]);
    return false;
  }
  await sb.exec(['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', WATCH_PID, '--exec', '/usr/local/bin/virtwire', '--', 'watch']);
  const pid = (await sb.exec(['cat', WATCH_PID])).stdout.trim();
  for (let i = 0; i < 300; i++) {
    const ready = (await sh(sb, `grep -q "watch\\[${pid}\\] info: serving the qemu hook's prepare" /var/log/virtwire.log && grep -q lastReconcile /run/virtwire/watch.json && echo yes || echo no`)).stdout.trim() === 'yes';
    if (ready) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the watcher did not come up serving prepare within 30 s');
}

/**
 * Waits until the running watcher has stood virtwire's network hook down
 * (src/host/network-hook-switch.ts): a case with the watcher is timed as a
 * host where it has run for a while, where libvirt forks no network hook
 * per VM start and destroy. Throws if it does not within 10 s.
 */
export async function awaitNetworkHookStoodDown(sb: Sandbox): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await sh(sb, 'stat -c %a /etc/libvirt/hooks/network.d/virtwire')).stdout.trim() === '644') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the watcher did not stand the network hook down within 10 s (see /var/log/virtwire.log)');
}

/** The watcher's resident memory now (KiB). */
export async function watcherRss(sb: Sandbox): Promise<number> {
  return Number((await sh(sb, `ps -o rss= -p "$(cat ${WATCH_PID})"`)).stdout.trim());
}

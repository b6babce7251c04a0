// Shared by the e2e files (not a test file itself).
import { join } from 'node:path';
import { Sandbox } from '../../src/demo/sandbox.js';
import { ensureTrixieRoot } from '../support/rootfs.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function libvirtdPid(sb: Sandbox): Promise<string> {
  return (await sb.exec(['pidof', 'libvirtd'], { reject: false })).stdout.trim();
}

/**
 * Stops libvirtd (SIGTERM: guests keep running) and starts a new one, which
 * runs the qemu `reconnect` hook for every running guest. Returns once the
 * new daemon answers; callers wait for what they expect of the reconnect.
 */
export async function restartLibvirtd(sb: Sandbox): Promise<void> {
  const pid = await libvirtdPid(sb);
  if (!/^\d+$/.test(pid)) throw new Error(`libvirtd is not running in the sandbox (pidof: ${JSON.stringify(pid)})`);
  // bash's kill builtin: the Debian 13 root has no procps.
  await sb.exec(['bash', '-c', 'kill -TERM "$1"', 'kill', pid]);
  for (let i = 0; i < 100 && (await libvirtdPid(sb)) === pid; i++) await sleep(100);
  await sb.exec(['libvirtd', '-d'], { env: { LIBVIRT_LOG_OUTPUTS: `3:file:${join(sb.dir, 'logs', 'libvirtd-restarted.log')}` } });
  for (let i = 0; i < 100; i++) {
    if ((await sb.exec(['virsh', '-c', 'qemu:///system', 'uri'], { reject: false, timeoutMs: 10_000 })).exitCode === 0) return;
    await sleep(100);
  }
  throw new Error('libvirtd did not answer within 10 s of its restart');
}

/**
 * Every line of the sandbox's firewall that mentions virtwire. `nft list
 * ruleset` shows iptables-nft's rules but not their comments, so iptables'
 * own listing is asked too where iptables is installed.
 */
export async function virtwireLeftovers(sb: Sandbox): Promise<string[]> {
  const nft = (await sb.exec(['nft', 'list', 'ruleset'])).stdout;
  const ipt = (await sb.exec(['bash', '-c', 'for t in iptables-save ip6tables-save; do ! command -v $t >/dev/null || $t; done'])).stdout;
  return `${nft}\n${ipt}`.split('\n').filter((l) => l.includes('virtwire')).map((l) => l.trim());
}

/**
 * The two libvirt versions every e2e file runs against: Debian 12's own
 * (iptables backend) and Debian 13's in a debootstrap root (nftables backend).
 */
export const MODES = [
  { mode: 'Debian 12: libvirt 9, iptables backend', trixie: false },
  { mode: 'Debian 13 root: libvirt 11, nftables backend', trixie: true },
] as const;

/** e2e files skip only when not root and not in CI: under CI=true a test that cannot run fails. */
export const skipE2e = process.getuid?.() !== 0 && process.env.CI !== 'true';

/**
 * A sandbox for one mode with virtwire installed by its own install.sh (the
 * way an admin installs it) and these templates in /etc/virtwire/templates
 * (name → YAML). Returns the sandbox and install.sh's output.
 */
export async function sandboxWithVirtwire(trixie: boolean, templates: Record<string, string> = {}, opts: { ipv6?: boolean } = {}): Promise<{ sb: Sandbox; installOutput: string }> {
  const sb = await Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined, ipv6: opts.ipv6 });
  const inst = await sb.exec(['bash', join(sb.repoDirInside, 'install.sh')]);
  if (!inst.stdout.includes('installed virtwire')) throw new Error(`install.sh in the sandbox did not say "installed virtwire":\n${inst.stdout}\n${inst.stderr}`);
  for (const [name, yaml] of Object.entries(templates)) await sb.exec(['tee', `/etc/virtwire/templates/${name}.yaml`], { input: yaml });
  return { sb, installOutput: inst.stdout };
}

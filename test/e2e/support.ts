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

/**
 * The virt-install command line that defines and starts the sandbox's test
 * guest in one go, as virt-manager's "Begin Installation" does (issue 11's
 * `--import --boot kernel=…,initrd=… --disk none --network
 * network=default,model=virtio`). Run it with sb.exec and virtInstallEnv(sb).
 * Checked with Debian 12's virt-install 4.1 and Debian 13's 5.0
 * (test/e2e/virt-install.test.ts). Beyond the issue's options:
 * - `--osinfo generic`: without an OS name both versions refuse ("OS name is
 *   required … This is now a fatal error"); `detect=on,require=off` works
 *   too and falls back to generic with one more warning.
 * - `--virt-type qemu`: without it virt-install picks kvm (the sandbox's
 *   /dev/kvm opens), and the guest never boots: this machine's KVM does not
 *   work (TCG only, LIBVIRT-NOTES).
 * - `--serial file,path=serialLog` for the guest's READY line;
 *   `--noautoconsole` so virt-install returns once the domain runs.
 */
export function virtInstallArgv(name: string, image: { kernel: string; initrd: string }, serialLog: string): string[] {
  return [
    'virt-install', '--connect', 'qemu:///system', '--name', name, '--memory', '192', '--vcpus', '1',
    '--virt-type', 'qemu', '--osinfo', 'generic',
    '--import', '--boot', `kernel=${image.kernel},initrd=${image.initrd},kernel_args="console=ttyS0 quiet vw.name=${name}"`,
    '--disk', 'none', '--network', 'network=default,model=virtio',
    '--serial', `file,path=${serialLog}`, '--noautoconsole',
  ];
}

/** virt-install's environment: its log goes under the sandbox's dir, never to the host's /root (Debian 12 mode shares it). */
export function virtInstallEnv(sb: Sandbox): Record<string, string> {
  const home = join(sb.dir, 'home');
  return { LC_ALL: 'C', HOME: home, XDG_CACHE_HOME: join(home, '.cache') };
}

/** The DHCP <host> lines of the sandbox's default network (live; `--inactive`: its definition), trimmed. */
export async function dhcpHostLines(sb: Sandbox, ...flags: string[]): Promise<string[]> {
  return (await sb.virsh('net-dumpxml', '--network', 'default', ...flags)).stdout.split('\n').filter((l) => l.includes('<host ')).map((l) => l.trim());
}

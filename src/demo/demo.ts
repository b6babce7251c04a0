// `virtwire demo`, built as its own bundle (dist/demo.mjs): the sandbox it
// runs (a private libvirtd, the guest image builder, xmlbuilder2 and its DOM)
// stays out of dist/virtwire.mjs. src/cli/commands/demo.ts loads this bundle from
// beside the running virtwire.mjs and calls runDemo.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { Sandbox } from './sandbox.js';
import { UserError } from '../errors.js';

export const DEMO_TEMPLATE = `description: virtwire demo - web VMs reachable on the host's port 8080
match:
  domains: ["web-*"]
  networks: ["default"]
binding: nat
forwards:
  - proto: tcp
    host: 8080
    guest: 80
    description: web
  - proto: udp
    host: 5353
    description: udp echo
`;

/** Where install.sh and dist/ sit: the installed LIBDIR (bundle in LIBDIR/dist) or the repository. */
function installRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [dirname(here), join(here, '..', '..')]) {
    if (existsSync(join(candidate, 'install.sh'))) return candidate;
  }
  throw new UserError('demo: cannot find install.sh next to this virtwire; run it from an installed virtwire (install.sh) or the repository');
}

/**
 * `virtwire demo`: installs virtwire with its own install.sh into a
 * throwaway libvirtd (own network, mount and PID namespaces), boots a tiny
 * guest under a forward template, and shows a client reaching it through
 * the host's port — then removes everything.
 */
export async function runDemo(o: { keep: boolean; out: (s: string) => void }): Promise<number> {
  const say = (s: string): void => o.out(`${s}\n`);
  if (process.getuid?.() !== 0) throw new UserError('demo: run as root (it creates network namespaces and a private libvirtd)');
  const root = installRoot();
  say('virtwire demo: starting a throwaway libvirtd in its own network, mount and PID namespaces...');
  const sb = await Sandbox.start({ repoDir: root, keep: o.keep });
  try {
    say(`  sandbox host ${sb.hostAddress} (uplink) <-> client ${sb.clientAddress}; libvirt network "default" 192.168.122.0/24`);
    say('installing virtwire inside it with its own install.sh...');
    const inst = await sb.exec(['bash', join(sb.repoDirInside, 'install.sh')]);
    for (const l of inst.stdout.trim().split('\n')) say(`  ${l}`);
    say('dropping a template into /etc/virtwire/templates/web.yaml:');
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: DEMO_TEMPLATE });
    for (const l of DEMO_TEMPLATE.trim().split('\n')) say(`  | ${l}`);
    say('booting the tiny guest "web-demo" (DHCP reservation 192.168.122.10, serves HTTP on 80) with plain `virsh start`...');
    const t0 = Date.now();
    await sb.bootGuest({ name: 'web-demo', mac: '52:54:00:d3:00:10', ip: '192.168.122.10' });
    say(`  guest up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    say('$ virtwire forwards');
    for (const l of (await sb.exec(['virtwire', 'forwards'])).stdout.trim().split('\n')) say(`  ${l}`);
    const body = await sb.clientHttpGet(sb.hostAddress, 8080);
    say(`client ${sb.clientAddress} -> http://${sb.hostAddress}:8080/ answered: ${JSON.stringify(body.trim())}`);
    const udp = await sb.clientUdp(sb.hostAddress, 5353, 'ping');
    say(`client ${sb.clientAddress} -> udp ${sb.hostAddress}:5353 answered: ${JSON.stringify(udp.trim())}`);
    say('the nftables state behind it (one table, forwards as map elements):');
    for (const l of (await sb.exec(['nft', 'list', 'map', 'inet', 'virtwire', 'port4'])).stdout.trim().split('\n')) say(`  ${l}`);
    say('$ virsh destroy web-demo');
    await sb.destroyGuest('web-demo');
    // The qemu hook's shell shim deleted exactly the VM's elements (no Node); the emptied table stays until a converge.
    const left = (await sb.exec(['nft', 'list', 'map', 'inet', 'virtwire', 'port4'], { reject: false })).stdout.includes('elements');
    say(`  after stop: ${left ? 'a forward is STILL THERE (unexpected)' : 'no forward left in the table'}; ${(await sb.exec(['virtwire', 'forwards'])).stdout.trim()}`);
    say('$ virtwire reconcile   (drops the emptied table and its accept rule)');
    await sb.exec(['virtwire', 'reconcile']);
    const table = await sb.exec(['nft', 'list', 'table', 'inet', 'virtwire'], { reject: false });
    say(`  ${table.exitCode === 0 ? 'the table is STILL THERE (unexpected)' : 'no virtwire table left'}`);
    say('demo done: cleaning up the sandbox.');
    return left || table.exitCode === 0 ? 1 : 0;
  } finally {
    await sb.stop();
    if (o.keep) say(`kept the sandbox's files in ${sb.dir}`);
  }
}

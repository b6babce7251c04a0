// `virtwire apply --all` on many defined domains (issue 12: 500 domains in
// at most 10 s), in the e2e sandbox with virtwire installed by install.sh,
// beside references measured in the same run on the same libvirtd: the
// defines themselves and one `dumpxml` per domain, each batch in one virsh
// session. Run as root after `npm run build`:
//   npm run bench:apply-all -- [--trixie] [--domains N] [--runs R]
// --trixie: libvirt 11 in the Debian 13 root (built on first use) instead of
// Debian 12's libvirt 9. Each run (default 1) starts with everything to do:
// the domains and the bench network are defined afresh and virtwire's
// allocation store is emptied; then apply --all (everything to do: one live
// DHCP reservation per VM, which libvirt takes one net-update at a time), and
// three times apply --all again (nothing to do). Prints every run, medians,
// libvirt's own cost of those net-updates, and the verdict.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Sandbox } from '../src/demo/sandbox.js';
import { sandboxWithVirtwire } from '../test/e2e/support.js';
import { median } from './lib.js';

const TARGET_S = 10;
const NETWORK = 'bench';
// A NAT network an admin would make for hundreds of VMs: a /22, DHCP hands out
// the upper half, reservations go below it.
const NETWORK_XML = `<network>
  <name>${NETWORK}</name>
  <forward mode='nat'/>
  <bridge name='virbr77' stp='on' delay='0'/>
  <ip address='10.77.0.1' netmask='255.255.252.0'>
    <dhcp>
      <range start='10.77.2.0' end='10.77.3.254'/>
    </dhcp>
  </ip>
</network>
`;
// Each VM: its own two host ports (ssh and web) from forwards.autoPorts, and a
// DHCP reservation apply makes.
const TEMPLATE = `description: bench VMs, a block of host ports each
match: {domains: ["bench-*"], networks: [${NETWORK}]}
binding: nat
forwards:
  - {block: 2, guest: [22, 80], proto: tcp, description: ssh and web}
`;

interface Options { trixie: boolean; domains: number; runs: number }

function options(): Options {
  const { values } = parseArgs({
    options: { trixie: { type: 'boolean' }, domains: { type: 'string' }, runs: { type: 'string' } },
  });
  const domains = Number(values.domains ?? 500);
  const runs = Number(values.runs ?? 1);
  if (!Number.isInteger(domains) || domains < 1 || domains > 1000) throw new Error('--domains: 1 to 1000 (the bench network holds 1021 addresses)');
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: a positive integer');
  return { trixie: values.trixie === true, domains, runs };
}

const name = (i: number): string => `bench-${String(i).padStart(4, '0')}`;

function mac(i: number): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `52:54:00:bb:${hex(i >> 8)}:${hex(i & 0xff)}`;
}

/** A shut-off domain with one NIC on the bench network (it is never started). */
function domainXml(i: number): string {
  return `<domain type='qemu'>
  <name>${name(i)}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <interface type='network'>
      <source network='${NETWORK}'/>
      <mac address='${mac(i)}'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`;
}


/** Seconds `fn` takes. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** One virsh session running `lines` (one command each, read from stdin); throws on any error. */
async function virshBatch(sb: Sandbox, lines: string[]): Promise<string> {
  const r = await sb.exec(['virsh', '-c', 'qemu:///system'], { input: `${lines.join('\n')}\n`, env: { LC_ALL: 'C' }, timeoutMs: 600_000 });
  if (r.stderr.trim() !== '') throw new Error(`virsh batch: ${r.stderr.trim().split('\n').slice(0, 5).join('\n')}`);
  return r.stdout;
}

/** The domain XML files, in the sandbox's dir (the same path inside). */
async function writeDomainFiles(sb: Sandbox, n: number): Promise<string[]> {
  const dir = join(sb.dir, 'bench-domains');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 1; i <= n; i++) {
    const file = join(dir, `${name(i)}.xml`);
    await writeFile(file, domainXml(i));
    files.push(file);
  }
  return files;
}

/** The bench network, defined and started afresh (no reservations). */
async function freshNetwork(sb: Sandbox): Promise<void> {
  const file = join(sb.dir, 'bench-network.xml');
  await writeFile(file, NETWORK_XML);
  const exists = (await sb.virsh('net-list', '--all', '--name')).stdout.split('\n').some((l) => l.trim() === NETWORK);
  if (exists) {
    await sb.exec(['virsh', '-c', 'qemu:///system', 'net-destroy', '--network', NETWORK], { reject: false });
    await sb.virsh('net-undefine', '--network', NETWORK);
  }
  await sb.virsh('net-define', '--file', file);
  await sb.virsh('net-start', '--network', NETWORK);
}

/** Nothing to do again: no domains, a fresh network, an empty allocation store. */
async function reset(sb: Sandbox, n: number): Promise<void> {
  const defined = new Set((await sb.virsh('list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()));
  const names = Array.from({ length: n }, (_, k) => name(k + 1)).filter((d) => defined.has(d));
  if (names.length) await virshBatch(sb, names.map((d) => `undefine --domain ${d}`));
  await sb.exec(['rm', '-f', '/var/lib/virtwire/allocations.json']);
  await freshNetwork(sb);
}

interface Run { define: number; first: number; second: number; dumpxml: number; netUpdate: number }

const SECOND_RUNS = 3;
const NET_UPDATES = 20;

/** The i-th address of the scratch network (10.78.0.2 on). */
function refIp(i: number): string {
  return `10.78.${(i + 2) >> 8}.${(i + 2) & 0xff}`;
}

/**
 * What libvirtd takes for one live DHCP reservation, the step apply cannot
 * batch (libvirt takes one <host> per net-update): NET_UPDATES
 * `net-update … add ip-dhcp-host --live --config` in one virsh session, on a
 * scratch NAT network already holding `hosts` reservations (libvirt rewrites
 * them all on each update), with virtwire's network hook installed as for
 * apply. Returns seconds per update.
 */
async function netUpdateCost(sb: Sandbox, hosts: number): Promise<number> {
  const file = join(sb.dir, 'bench-ref-network.xml');
  const existing = Array.from({ length: hosts }, (_, i) => `      <host mac='${mac(1000 + i)}' ip='${refIp(i)}'/>`).join('\n');
  const xml = NETWORK_XML.replace(`<name>${NETWORK}</name>`, '<name>benchref</name>').replace('virbr77', 'virbr78').replaceAll('10.77.', '10.78.')
    .replace(/(<range [^>]*\/>)/, `$1\n${existing}`);
  await writeFile(file, xml);
  await sb.virsh('net-define', '--file', file);
  await sb.virsh('net-start', '--network', 'benchref');
  const lines = Array.from({ length: NET_UPDATES }, (_, i) => `net-update --network benchref --command add --section ip-dhcp-host --xml "<host mac='${mac(900 + i)}' ip='${refIp(hosts + i)}'/>" --live --config`);
  const s = await timed(() => virshBatch(sb, lines));
  await sb.virsh('net-destroy', '--network', 'benchref');
  await sb.virsh('net-undefine', '--network', 'benchref');
  return s / NET_UPDATES;
}

/** Runs `virtwire apply --all`; checks every bench VM got the expected line. */
async function applyAll(sb: Sandbox, n: number, expect: 'changed' | 'unchanged'): Promise<number> {
  let out = '';
  const s = await timed(async () => {
    const r = await sb.exec(['virtwire', 'apply', '--all'], { reject: false, timeoutMs: 1_800_000 });
    out = r.stdout;
    if (r.exitCode !== 0) throw new Error(`virtwire apply --all exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}`);
  });
  const lines = out.split('\n').filter((l) => l.startsWith('VM "bench-'));
  const ok = lines.filter((l) => (expect === 'changed' ? l.includes(': changed (reserved 10.77.') : l.endsWith(': unchanged')));
  if (lines.length !== n || ok.length !== n) {
    throw new Error(`apply --all: ${ok.length} of ${n} bench VMs ${expect} (${lines.length} lines); first other: ${lines.find((l) => !ok.includes(l)) ?? '(none)'}`);
  }
  return s;
}

/** The reservations apply made: one per VM, live and in the definition. */
async function checkReservations(sb: Sandbox, n: number): Promise<void> {
  for (const flags of [[], ['--inactive']]) {
    const xml = (await sb.virsh('net-dumpxml', '--network', NETWORK, ...flags)).stdout;
    const hosts = xml.split('\n').filter((l) => l.includes('<host ')).length;
    if (hosts !== n) throw new Error(`network ${NETWORK}${flags.length ? ' (config)' : ''} holds ${hosts} DHCP hosts, expected ${n}`);
  }
}

async function oneRun(sb: Sandbox, files: string[], k: number): Promise<Run> {
  await reset(sb, files.length);
  const define = await timed(() => virshBatch(sb, files.map((f) => `define --file ${f}`)));
  const first = await applyAll(sb, files.length, 'changed');
  await checkReservations(sb, files.length);
  const seconds: number[] = [];
  for (let j = 0; j < SECOND_RUNS; j++) seconds.push(await applyAll(sb, files.length, 'unchanged'));
  const second = median(seconds);
  const dumpxml = await timed(() => virshBatch(sb, files.map((_, i) => `dumpxml --domain ${name(i + 1)} --inactive --security-info`)));
  // libvirt's cost grows with the reservations the network holds: apply's run goes from 0 to n.
  const [empty, full] = [await netUpdateCost(sb, 0), await netUpdateCost(sb, files.length)];
  const netUpdate = (empty + full) / 2;
  const run = { define, first, second, dumpxml, netUpdate };
  console.log(`run ${k}: define ${define.toFixed(2)} s, apply --all first ${first.toFixed(2)} s, second ${seconds.map((x) => x.toFixed(2)).join(' / ')} s, `
    + `dumpxml ${dumpxml.toFixed(2)} s, one net-update --live ${(empty * 1000).toFixed(0)} ms (network with 0 reservations) / ${(full * 1000).toFixed(0)} ms (with ${files.length})`);
  return run;
}

function report(o: Options, runs: Run[]): void {
  const m = (key: keyof Run) => median(runs.map((r) => r[key]));
  const rows: Array<[string, number]> = [
    [`reference: ${o.domains} virsh define, one virsh session`, m('define')],
    [`reference: ${o.domains} virsh dumpxml, one virsh session`, m('dumpxml')],
    [`virtwire apply --all, first (${o.domains} VMs to wire)`, m('first')],
    [`virtwire apply --all, second (nothing to do; median of ${SECOND_RUNS} per run)`, m('second')],
    [`reference: libvirt's own part of the first, ${o.domains} net-update --live`, m('netUpdate') * o.domains],
  ];
  for (const [label, s] of rows) {
    console.log(`${label.padEnd(58)} ${s.toFixed(2).padStart(7)} s  ${(s * 1000 / o.domains).toFixed(1).padStart(6)} ms/VM  x${(s / m('dumpxml')).toFixed(1)} of dumpxml  (median of ${runs.length})`);
  }
  const verdict = (s: number) => `${s <= TARGET_S ? 'within' : 'OVER'} ${TARGET_S} s (${s.toFixed(2)} s)`;
  const worst = Math.max(...runs.map((r) => r.first));
  console.log(`verdict: apply --all on ${o.domains} domains, nothing to do: ${verdict(Math.max(...runs.map((r) => r.second)))}; `
    + `everything to do: ${verdict(worst)}, of which libvirt's own net-updates ~${(m('netUpdate') * o.domains).toFixed(1)} s`);
}

async function main(): Promise<void> {
  const o = options();
  const started = Date.now();
  const { sb } = await sandboxWithVirtwire(o.trixie, { bench: TEMPLATE });
  try {
    const version = (await sb.virsh('version')).stdout.split('\n').find((l) => l.includes('running hypervisor') || l.includes('libvirt')) ?? '';
    console.log(`sandbox: ${o.trixie ? 'Debian 13 root' : 'Debian 12'} (${version.trim()}), set up in ${((Date.now() - started) / 1000).toFixed(1)} s; ${o.domains} domains, ${o.runs} run(s)`);
    const files = await writeDomainFiles(sb, o.domains);
    const runs: Run[] = [];
    for (let k = 1; k <= o.runs; k++) runs.push(await oneRun(sb, files, k));
    report(o, runs);
  } finally {
    await sb.stop();
  }
}

await main();

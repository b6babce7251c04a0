import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { reconcile, rewireVm, teardownVm } from '../../src/engine/lifecycle.js';
import { NftSession } from '../../src/host/nft-session.js';
import { acceptComment } from '../../src/host/libvirt-firewall.js';
import { parseDomain } from '../../src/xml/domain.js';
import { quoted } from '../../src/errors.js';
import { recordFigure } from '../support/figures.js';
import { join } from 'node:path';
import { handleQemuHook, refusalLine } from '../../src/hooks/qemu-handler.js';
import { applyingMarker } from '../../src/hooks/prepare-server.js';
import { handleNetworkHook } from '../../src/hooks/network-handler.js';
import { makeContext, type HookContext } from '../../src/engine/context.js';
import type { Paths } from '../../src/paths.js';
import { mustRun } from '../../src/host/run.js';
import { ScratchNetns, canNetns, mustRunEverything } from './netns.js';
import { domainXml, fixture, tempDir, testPaths, writeFiles } from './helpers.js';

const UUID_A = '6f1f6a0e-0000-4000-8000-00000000000a';
const UUID_B = '6f1f6a0e-0000-4000-8000-00000000000b';
const NAME_A = `web-"quoted" it's ünï\ncode`;

/**
 * The qemu hook handler end to end on this host's real nft and iptables, in
 * a throwaway netns with chains shaped like libvirt 9's, with temp dirs for
 * templates, ledger and libvirt's status files.
 */
describe.skipIf(!canNetns && !mustRunEverything)('qemu hook handler', () => {
  let ns: ScratchNetns;
  let ctx: HookContext;
  let paths: Paths;
  const hook = (op: string, xml: string, name = 'vm') => handleQemuHook(ctx, [name, op, op === 'release' ? 'end' : 'begin', '-'], async () => xml);

  beforeEach(async () => {
    ns = new ScratchNetns();
    const root = tempDir();
    paths = testPaths(root);
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n  - {proto: udp, host: 5353}\n' });
    writeFiles(join(paths.libvirtRunDir, 'network'), { 'default.xml': fixture('network-default.xml') });
    ctx = makeContext(paths, ns.run, { hostSockets: async () => [], hostAddresses: () => [] }, 'test');
    await mustRun(ns.run, ['iptables', '-w', '-N', 'LIBVIRT_FWI']);
    await mustRun(ns.run, ['iptables', '-w', '-A', 'LIBVIRT_FWI', '-o', 'virbr0', '-j', 'REJECT']);
    await mustRun(ns.run, ['iptables', '-w', '-A', 'FORWARD', '-j', 'LIBVIRT_FWI']);
  });
  afterEach(() => ns.delete());

  const vmA = () => domainXml(NAME_A, [{ mac: '52:54:00:77:00:10' }], '', UUID_A);
  /** libvirt's status file for a running domain (QEMU's pid: this test process, which is alive). */
  const runs = (fileName: string, xml: string) => writeFiles(join(paths.libvirtRunDir, 'qemu'), { [`${fileName.replace(/\//g, '')}.xml`]: `<domstatus state='running' pid='${process.pid}'>\n${xml}\n</domstatus>` });
  const entryFile = (uuid: string) => join(paths.runDir, 'vms', `${uuid}.json`);
  const teardownFile = (uuid: string) => join(paths.runDir, 'teardown', `${uuid}.nft`);
  const age = (uuid: string) => writeFileSync(entryFile(uuid), JSON.stringify({ ...JSON.parse(readFileSync(entryFile(uuid), 'utf8')), updatedAt: '2000-01-01T00:00:00Z' }));
  const vmB = () => domainXml('web-b', [{ mac: '52:54:00:77:00:11' }], '', UUID_B);
  const table = async () => (await ns.run(['nft', 'list', 'table', 'inet', 'virtwire'])).stdout;
  const forwardRule = async () => (await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n').filter((l) => l.includes('virtwire'));

  it('prepare reserves and applies (start does nothing), stopped removes exactly it, release finds nothing left', async () => {
    expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
    expect(JSON.parse(readFileSync(entryFile(UUID_A), 'utf8'))).toMatchObject({ name: NAME_A, state: 'applied' });
    expect(await table()).toContain('8080 . tcp : 192.168.122.10 . 80');
    expect(await forwardRule()).toHaveLength(1);
    // The teardown the shim runs at stopped/release with no Node: exactly this VM's elements.
    expect(readFileSync(teardownFile(UUID_A), 'utf8')).toBe([
      `# virtwire teardown of VM ${UUID_A}`,
      'delete element inet virtwire port4 { 8080 . tcp, 5353 . udp }',
      'delete element inet virtwire hairpin4 { 192.168.122.0/24 . 192.168.122.10 }',
      '',
    ].join('\n'));
    const before = await table();
    expect(await hook('start', vmA())).toEqual({ exitCode: 0 });
    expect(await hook('started', '')).toEqual({ exitCode: 0 });
    expect(await table(), 'start changes nothing').toBe(before);
    expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
    expect(await table()).toBe('');
    expect(await forwardRule()).toEqual([]);
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(existsSync(teardownFile(UUID_A))).toBe(false);
    expect(await hook('release', vmA())).toEqual({ exitCode: 0 });
    const log = readFileSync(paths.logFile, 'utf8');
    expect(log).toContain('prepare: applied 2 forward(s)');
    expect(log.split('\n').every((l) => l === '' || /^\d{4}-/.test(l)), 'a VM name with a newline must not forge a log line').toBe(true);
  });

  it('restore and migrate filter the incoming XML: this host\'s record written in, every other byte kept; none when it is current', async () => {
    const stale = `<vw:wiring xmlns:vw="https://virtwire.dev/xmlns/domain/1"><!-- owner's note --><vw:template name="x"/><vw:applied>
      <vw:nic mac="52:54:00:77:00:10" template="web" binding="nat" version="1" network="default">
        <vw:forward proto="tcp" host="9999" to="192.168.122.99" guest="80"/>
      </vw:nic></vw:applied></vw:wiring>`;
    writeFiles(paths.templatesDir, { 'x.yaml': 'match: {optIn: true}\npriority: -1\nbinding: nat\nforwards: []\n' });
    const xml = domainXml('web-moved', [{ mac: '52:54:00:77:00:10' }], stale, UUID_A);
    for (const op of ['restore', 'migrate']) {
      const r = await hook(op, xml);
      expect(r.exitCode, r.stderr).toBe(0);
      const out = r.stdout as string;
      expect(out).toContain('<vw:forward proto="tcp" host="8080" to="192.168.122.10" guest="80"/>');
      expect(out).not.toContain('9999');
      // Everything but the record is byte for byte what came in.
      const cut = (x: string) => x.replace(/<vw:applied>[\s\S]*<\/vw:applied>/, '');
      expect(cut(out)).toBe(cut(xml));
      expect(await hook(op, out), 'a current record: no output, the XML stays').toEqual({ exitCode: 0 });
    }
    expect(await table(), 'a filter changes nothing on the host').toBe('');
  });

  it('a restore this host cannot wire is cancelled with one line (its start would be refused anyway)', async () => {
    writeFiles(join(paths.libvirtRunDir, 'network'), { 'default.xml': fixture('network-default.xml').replace("<forward mode='nat'>", "<forward mode='route'>") });
    const r = await hook('restore', vmA());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^virtwire: VM .*binding nat needs a NAT network/);
    expect(r.stdout).toBeUndefined();
  });

  it('define-and-start-at-once: a NIC with no address yet is refused without the watcher; with it, the VM starts with that wiring pending, and the watcher\'s rewire applies it live', async () => {
    const xml = domainXml('web-new', [{ mac: '52:54:00:77:00:99' }], '', UUID_A);
    const refused = await hook('prepare', xml);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/^virtwire: VM "web-new" NIC 52:54:00:77:00:99 \(network "default"\): no IPv4 address to forward to; reserve one with: virtwire apply web-new/);
    // A watcher runs: its state file names a live process whose command line says virtwire.
    const watcher = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'virtwire', 'watch'], { stdio: 'ignore' });
    try {
      writeFiles(paths.runDir, { 'watch.json': JSON.stringify({ pid: watcher.pid, startedAt: 'now', connected: true }) });
      expect(await hook('prepare', xml)).toEqual({ exitCode: 0 });
      expect(await table(), 'nothing applied for it yet').toBe('');
      expect(readFileSync(paths.logFile, 'utf8')).toContain(`VM "web-new" prepare: wiring pending for NIC 52:54:00:77:00:99 (no address reserved yet): it starts without those forwards, and the watcher (pid ${watcher.pid}) reserves the address and applies them live`);
      // The watcher reserved the address (libvirt's live network now has it) and rewires the running VM.
      writeFiles(join(paths.libvirtRunDir, 'network'), { 'default.xml': fixture('network-default.xml').replace("<host mac='52:54:00:77:00:11'", "<host mac='52:54:00:77:00:99' ip='192.168.122.99'/><host mac='52:54:00:77:00:11'") });
      runs('web-new', xml);
      const { moved } = await rewireVm(ctx, parseDomain(xml));
      expect(moved).toContain('+tcp *:8080 -> 192.168.122.99:80');
      expect(await table()).toContain('8080 . tcp : 192.168.122.99 . 80');
    } finally {
      watcher.kill();
    }
  });

  it('a stale record in the domain <metadata> (template edited after apply) is logged, and the templates win', async () => {
    // What apply recorded when web.yaml said 8081; web.yaml now says 8080 (and udp 5353).
    const record = `<vw:wiring xmlns:vw="https://virtwire.dev/xmlns/domain/1"><vw:applied>
      <vw:nic mac="52:54:00:77:00:10" template="web" binding="nat" version="1" network="default">
        <vw:forward proto="tcp" host="8081" to="192.168.122.10" guest="80"/>
      </vw:nic></vw:applied></vw:wiring>`;
    const xml = domainXml('web-stale', [{ mac: '52:54:00:77:00:10' }], record, UUID_A);
    // Served by the watcher: the warning is written after its early "ok", not on the way to it.
    let logAtOk = '';
    const early = { claimed: () => { logAtOk = existsSync(paths.logFile) ? readFileSync(paths.logFile, 'utf8') : ''; }, settled: () => undefined };
    expect(await handleQemuHook(ctx, ['web-stale', 'prepare', 'begin', '-'], async () => xml, early)).toEqual({ exitCode: 0 });
    expect(logAtOk).not.toContain(' warning: ');
    expect(await table()).toContain('8080 . tcp : 192.168.122.10 . 80');
    expect(await table()).not.toContain('8081');
    const warning = readFileSync(paths.logFile, 'utf8').split('\n').find((l) => l.includes(' warning: '));
    expect(warning).toContain('VM "web-stale": the wiring recorded in its <metadata> is stale, the templates now give: NIC 52:54:00:77:00:10: +tcp *:8080 -> 192.168.122.10:80, +udp *:5353 -> 192.168.122.10:5353, -tcp *:8081 -> 192.168.122.10:80; starting with what the templates give — run "virtwire apply web-stale" to record it');
  });

  it('a record that matches what the templates give is not reported', async () => {
    const record = `<vw:wiring xmlns:vw="https://virtwire.dev/xmlns/domain/1"><vw:applied>
      <vw:nic mac="52:54:00:77:00:10" template="web" binding="nat" version="1" network="default">
        <vw:forward proto="udp" host="5353" to="192.168.122.10" guest="5353"/>
        <vw:forward proto="tcp" host="8080" to="192.168.122.10" guest="80"/>
      </vw:nic></vw:applied></vw:wiring>`;
    expect(await hook('prepare', domainXml('web-fresh', [{ mac: '52:54:00:77:00:10' }], record, UUID_A))).toEqual({ exitCode: 0 });
    expect(readFileSync(paths.logFile, 'utf8')).not.toContain(' warning: ');
  });

  it('rewireVm (apply on a running VM) moves its forwards in one step; a conflict changes nothing', async () => {
    await hook('prepare', vmA());
    runs(NAME_A, vmA());
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8090, guest: 80}\n' });
    const moved = await rewireVm(ctx, parseDomain(vmA()));
    expect(moved.moved).toEqual(['+tcp *:8090 -> 192.168.122.10:80', '-tcp *:8080 -> 192.168.122.10:80', '-udp *:5353 -> 192.168.122.10:5353']);
    expect(await table()).toContain('8090 . tcp : 192.168.122.10 . 80');
    expect(await table()).not.toContain('8080');
    // web-b runs with 8090 too (its entry applied); a second rewire of A must be refused and leave A's forward.
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 5\nbinding: nat\naddress: 192.168.122.11\nforwards:\n  - {proto: tcp, host: 9000, guest: 80}\n' });
    runs('web-b', vmB());
    await rewireVm(ctx, parseDomain(vmB()));
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9000, guest: 80}\n' });
    await expect(rewireVm(ctx, parseDomain(vmA()))).rejects.toThrow(/tcp port 9000 .* already forwarded to running VM "web-b"/);
    expect(await table()).toContain('8090 . tcp : 192.168.122.10 . 80');
    expect(await table()).toContain('9000 . tcp : 192.168.122.11 . 80');
  });

  it('a second VM claiming the same host port is refused at prepare; the first keeps its forward', async () => {
    await hook('prepare', vmA());
    runs(NAME_A, vmA());
    const r = await hook('prepare', vmB());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(`virtwire: VM "web-b": tcp port 8080 on every host IPv4 address is already forwarded to running VM ${JSON.stringify(NAME_A)} (${paths.templatesDir}/web.yaml:4:5); use another host port or stop ${JSON.stringify(NAME_A)}`);
    expect(r.stderr).not.toContain('\n');
    expect(await table()).toContain('192.168.122.10 . 80');
    expect(await hook('release', vmB())).toEqual({ exitCode: 0 });
    expect(await table()).toContain('192.168.122.10 . 80');
  });

  it('an entry whose VM died without release does not block the port', async () => {
    await hook('prepare', vmA());
    // No status file for A: libvirt no longer runs it. Age the reservation past its grace period.
    age(UUID_A);
    expect(await hook('prepare', vmB())).toEqual({ exitCode: 0 });
  });

  it('a VM that died without release: the next start drops its entry and its elements with it, even when it shares no key with them', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    await hook('prepare', vmA());
    expect(await table()).toContain('192.168.122.10');
    age(UUID_A); // no status file for A: libvirt no longer runs it
    expect(await hook('prepare', vmB(), 'web-b')).toEqual({ exitCode: 0 });
    expect(await table()).toContain('9090 . tcp : 192.168.122.11 . 80');
    expect(await table(), 'nothing of A is left in the table').not.toContain('192.168.122.10');
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(existsSync(teardownFile(UUID_A))).toBe(false);
  });

  it('liveness is decided by UUID, not by a name: a VM named with a trailing space keeps its forwards through reconcile', async () => {
    const name = 'web-a ';
    const xml = domainXml(name, [{ mac: '52:54:00:77:00:10' }], '', UUID_A);
    await hook('prepare', xml);
    await hook('start', xml);
    runs(name, xml);
    age(UUID_A);
    const r = await reconcile(ctx);
    expect(r.unresolved).toEqual([]);
    expect(JSON.parse(readFileSync(entryFile(UUID_A), 'utf8')).name).toBe(name);
    expect(await table()).toContain('192.168.122.10 . 80');
    // Gone for real: dropped, and its forwards with it.
    rmSync(join(paths.libvirtRunDir, 'qemu'), { recursive: true });
    await reconcile(ctx);
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(await table()).toBe('');
  });

  it("refuses a domain that copies a running VM's MAC, naming both", async () => {
    await hook('prepare', vmA());
    runs(NAME_A, vmA());
    const copycat = domainXml('db-copy', [{ mac: '52:54:00:77:00:10' }], '', UUID_B);
    writeFiles(paths.templatesDir, { 'db.yaml': 'match: {domains: ["db-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 2222, guest: 22}\n' });
    const r = await hook('prepare', copycat);
    expect(r).toEqual({ exitCode: 1, stderr: `virtwire: VM "db-copy" NIC 52:54:00:77:00:10: running VM ${quoted(NAME_A)} has a NIC with the same MAC; a forward may only reach this VM's own NIC — give this NIC its own MAC (virsh edit)` });
    expect(existsSync(entryFile(UUID_B))).toBe(false);
  });

  it("a corrupt ledger entry is never silently dropped: another VM's start rebuilds it from libvirt's status file before checking against it", async () => {
    await hook('prepare', vmA());
    runs(NAME_A, vmA());
    writeFileSync(entryFile(UUID_A), '{"schema": 1, "uuid": "trunc');
    // B wants A's ports: with A's entry unreadable, only the rebuild keeps B out.
    const r = await hook('prepare', vmB());
    expect(r.stderr).toBe(`virtwire: VM "web-b": tcp port 8080 on every host IPv4 address is already forwarded to running VM ${quoted(NAME_A)} (${paths.templatesDir}/web.yaml:4:5); use another host port or stop ${quoted(NAME_A)}`);
    expect(JSON.parse(readFileSync(entryFile(UUID_A), 'utf8'))).toMatchObject({ state: 'applied', name: NAME_A });
    expect(existsSync(`${entryFile(UUID_A)}.corrupt`)).toBe(false);
  });

  it('a corrupt entry of a VM libvirt does not list is kept aside and logged; reconnect rebuilds it from the XML libvirt hands the hook', async () => {
    await hook('prepare', vmA());
    writeFileSync(entryFile(UUID_A), 'not json');
    expect(await handleNetworkHook(ctx, ['default', 'started', 'begin', '-'])).toEqual({ exitCode: 0 });
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(existsSync(`${entryFile(UUID_A)}.corrupt`)).toBe(true);
    expect(readFileSync(paths.logFile, 'utf8')).toContain(`${entryFile(UUID_A)}.corrupt: unreadable (not valid JSON) and no running VM has UUID ${UUID_A}; remove the file once you have looked at it`);
    expect(await hook('reconnect', vmA())).toEqual({ exitCode: 0 });
    expect(JSON.parse(readFileSync(entryFile(UUID_A), 'utf8'))).toMatchObject({ state: 'applied', name: NAME_A });
    expect(existsSync(`${entryFile(UUID_A)}.corrupt`)).toBe(false);
    expect(await table()).toContain('192.168.122.10 . 80');
  });

  it('reconcile rebuilds a corrupt entry of a running VM from its status file, and reports one it cannot', async () => {
    await hook('prepare', vmA());
    runs(NAME_A, vmA());
    writeFileSync(entryFile(UUID_A), '[]');
    writeFiles(join(paths.runDir, 'vms'), { [`${UUID_B}.json`]: 'garbage' });
    const r = await reconcile(ctx);
    expect(r.notes).toContain(`rebuilt the corrupt entry of ${quoted(NAME_A)}: 2 forward(s)`);
    expect(r.unresolved).toEqual([`${entryFile(UUID_B)}.corrupt: unreadable (not valid JSON) and no running VM has UUID ${UUID_B}; remove the file once you have looked at it`]);
    expect(await table()).toContain('192.168.122.10 . 80');
  });

  it('concurrent starts of several VMs serialize: every forward ends up in the table, none lost; of two VMs wanting one port, exactly one wins', async () => {
    const vm = (i: number, port: number) => ({
      name: `many-${i}`, uuid: `6f1f6a0e-0000-4000-8000-0000000001${String(i).padStart(2, '0')}`, port, addr: `192.168.122.${60 + i}`,
      xml: domainXml(`many-${i}`, [{ mac: `52:54:00:77:01:${String(10 + i)}` }], '', `6f1f6a0e-0000-4000-8000-0000000001${String(i).padStart(2, '0')}`),
    });
    // Eight VMs with a port each, and a ninth that wants the port of the fourth.
    const vms = [...Array.from({ length: 8 }, (_, i) => vm(i, 9100 + i)), vm(8, 9103)];
    writeFiles(paths.templatesDir, Object.fromEntries(vms.map((v) => [`${v.name}.yaml`,
      `match: {domains: [${JSON.stringify(v.name)}]}\nbinding: nat\naddress: ${v.addr}\nforwards:\n  - {proto: tcp, host: ${v.port}, guest: 80}\n`])));
    const results = await Promise.all(vms.map(async (v) => {
      return (await hook('prepare', v.xml)).exitCode;
    }));
    const t = await table();
    for (let i = 0; i < 8; i++) if (i !== 3) expect(t).toContain(`${9100 + i} . tcp : 192.168.122.${60 + i} . 80`);
    expect(results.filter((r, i) => i !== 3 && i !== 8)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect([results[3], results[8]].sort()).toEqual([0, 1]);
    const winner = results[3] === 0 ? vms[3]! : vms[8]!;
    expect(t).toContain(`9103 . tcp : ${winner.addr} . 80`);
    expect(t).not.toContain(`9103 . tcp : ${(winner === vms[3] ? vms[8] : vms[3])!.addr} . 80`);
    expect(readdirSync(join(paths.runDir, 'vms')).filter((f) => f.endsWith('.json'))).toHaveLength(8);
    recordFigure('concurrency', '9 VM starts at once through the qemu hook, two of them wanting one port', 'unit', 9);
  });

  it('a full ledger disk refuses the start with one line and leaves no temp file and nothing applied', async () => {
    mkdirSync(paths.runDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'vw-full', paths.runDir]);
    try {
      mkdirSync(join(paths.runDir, 'vms'));
      // Fill it: a write of the entry (~1 KB) cannot fit.
      try { writeFileSync(join(paths.runDir, 'filler'), Buffer.alloc(64 * 1024)); } catch { /* full */ }
      const r = await hook('prepare', vmA());
      expect(r).toEqual({ exitCode: 1, stderr: `virtwire: cannot write virtwire's ledger ${entryFile(UUID_A)}: ENOSPC (no space left on the device holding it; free space there: df -h /run)` });
      expect(readdirSync(join(paths.runDir, 'vms'))).toEqual([]);
      expect(await table()).toBe('');
    } finally {
      execFileSync('umount', [paths.runDir]);
    }
  });

  it('a prepare whose host apply fails refuses the start (fail closed) and takes everything back: no entry, no teardown, the other VM untouched', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    expect(await hook('prepare', vmB())).toEqual({ exitCode: 0 });
    const before = await table();
    let applies = 0;
    // Adding the VM's elements fails, and so does the whole-table write that follows; the one that takes the VM back works.
    const failing: HookContext = { ...ctx, run: async (argv, o) => (argv[0] === 'nft' && argv[1] === '-f' && applies++ < 2 ? { exitCode: 1, stdout: '', stderr: 'Error: simulated' } : ns.run(argv, o)) };
    const r = await handleQemuHook(failing, ['vm', 'prepare', 'begin', '-'], async () => vmA());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^virtwire: internal error: nft -f - failed \(exit 1\): Error: simulated/);
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(existsSync(teardownFile(UUID_A))).toBe(false);
    expect(existsSync(teardownFile(UUID_B))).toBe(true);
    expect(await table()).toBe(before);
    expect(await hook('release', vmA())).toEqual({ exitCode: 0 });
    expect(await table()).toBe(before);
    expect(applies, 'the added elements, the whole table, the take-back').toBe(3);
  });

  it('answered early (the watcher serving prepare): told once the claim is checked, before it is recorded (as reserved, before nft runs), then once applied; a failing apply is settled with the refusal after all is taken back, and the start hook refuses with that line', async () => {
    const events: string[] = [];
    const recorded = (uuid: string): string => (existsSync(entryFile(uuid)) ? JSON.parse(readFileSync(entryFile(uuid), 'utf8')).state : 'not recorded');
    const logged: HookContext = { ...ctx, run: async (argv, o) => { if (argv[0] === 'nft' && argv[1] === '-f') events.push(`nft, entry ${recorded(UUID_A)}`); return ns.run(argv, o); } };
    const early = {
      claimed: (uuid: string) => events.push(`claimed ${uuid}, entry ${recorded(uuid)}`),
      settled: (refusal: unknown) => events.push(`settled ${refusal === undefined ? 'ok' : String(refusal)}`),
    };
    expect(await handleQemuHook(logged, ['vm', 'prepare', 'begin', '-'], async () => vmA(), early)).toEqual({ exitCode: 0 });
    expect(events).toEqual([`claimed ${UUID_A}, entry not recorded`, 'nft, entry reserved', 'settled ok']);
    expect(JSON.parse(readFileSync(entryFile(UUID_A), 'utf8')).state).toBe('applied');

    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    const before = await table();
    events.length = 0;
    let applies = 0;
    const failing: HookContext = { ...ctx, run: async (argv, o) => (argv[0] === 'nft' && argv[1] === '-f' && applies++ < 2 ? { exitCode: 1, stdout: '', stderr: 'Error: simulated' } : ns.run(argv, o)) };
    const r = await handleQemuHook(failing, ['web-b', 'prepare', 'begin', '-'], async () => vmB(), {
      claimed: early.claimed,
      settled: (refusal) => events.push(`settled ${existsSync(entryFile(UUID_B)) ? 'entry still there' : 'taken back'}: ${refusalLine(ctx, refusal)}`),
    });
    expect(r.exitCode).toBe(1);
    expect(events).toEqual([`claimed ${UUID_B}, entry not recorded`, `settled taken back: ${r.stderr}`]);
    expect(await table()).toBe(before);

    // The start hook when the shim could not read the UUID (Node decides): the watcher's line on this VM refuses it, once.
    mkdirSync(join(paths.runDir, 'prepare'), { recursive: true });
    writeFileSync(applyingMarker(paths.runDir, UUID_B), `${r.stderr}\n`);
    expect(await hook('start', vmB(), 'web-b')).toEqual({ exitCode: 1, stderr: r.stderr });
    expect(existsSync(applyingMarker(paths.runDir, UUID_B))).toBe(false);
    // An empty marker with the lock free: the watcher died before it was done.
    writeFileSync(applyingMarker(paths.runDir, UUID_B), '');
    expect(await hook('start', vmB(), 'web-b')).toMatchObject({ exitCode: 1, stderr: `virtwire: VM "web-b" (${UUID_B}): the watcher stopped before its forwards were in place; start the VM again, and see ${paths.logFile} for why the watcher stopped` });
    expect(await hook('start', vmB(), 'web-b')).toEqual({ exitCode: 0 });
  });

  it('answered early: a port a host service holds refuses the start after the "ok", with nothing applied and the claim taken back; the hook\'s own run refuses it at prepare, with the same line', async () => {
    const before = await table();
    const held: HookContext = { ...ctx, hostSockets: async () => [{ proto: 'tcp', family: 4, address: '0.0.0.0', port: 8080 }] };
    const nftRuns: string[] = [];
    const events: string[] = [];
    const r = await handleQemuHook({ ...held, run: async (argv, o) => { if (argv[0] === 'nft') nftRuns.push(argv.join(' ')); return ns.run(argv, o); } }, ['vm', 'prepare', 'begin', '-'], async () => vmA(), {
      claimed: (uuid) => events.push(`claimed ${uuid}, entry ${existsSync(entryFile(uuid)) ? 'recorded' : 'not recorded'}`),
      settled: (refusal) => events.push(`settled ${existsSync(entryFile(UUID_A)) ? 'entry still there' : 'taken back'}: ${refusalLine(ctx, refusal)}`),
    });
    expect(r).toEqual({ exitCode: 1, stderr: `virtwire: VM ${quoted(NAME_A)}: tcp port 8080 on every host IPv4 address is in use by the host itself (0.0.0.0:8080); stop that service, use another host port, or set allowHostConflict: true on the forward (${join(paths.templatesDir, 'web.yaml')}:4:5)` });
    expect(events).toEqual([`claimed ${UUID_A}, entry not recorded`, `settled taken back: ${r.stderr}`]);
    expect(nftRuns, 'nothing applied').toEqual([]);
    expect(await table()).toBe(before);
    expect(existsSync(teardownFile(UUID_A))).toBe(false);
    expect(await handleQemuHook(held, ['vm', 'prepare', 'begin', '-'], async () => vmA())).toEqual(r);
    expect(existsSync(entryFile(UUID_A))).toBe(false);
  });

  it('a teardown served by the watcher (its long-lived nft): the table as if the VM never started, its entry, teardown and start marker gone; nothing left is done; another header or a refused script leaves it to the hook', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    expect(await hook('prepare', vmB(), 'web-b')).toEqual({ exitCode: 0 });
    const onlyB = await table();
    expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
    expect(await table()).not.toBe(onlyB);
    const session = new NftSession(join(paths.runDir, 'nft-session.nft'), ['ip', 'netns', 'exec', ns.name, 'nft']);
    try {
      expect(await teardownVm(ctx, UUID_A, 'stopped'), 'no long-lived nft (not the watcher): the shim does it').toBe(false);
      expect(await table()).not.toBe(onlyB);
      ctx = { ...ctx, nft: session };
      expect(await teardownVm(ctx, UUID_A, 'stopped')).toBe(true);
      expect(await table()).toBe(onlyB);
      expect([existsSync(entryFile(UUID_A)), existsSync(teardownFile(UUID_A)), existsSync(join(paths.runDir, 'start', UUID_A))]).toEqual([false, false, false]);
      expect(readFileSync(paths.logFile, 'utf8')).toContain(`VM ${quoted(NAME_A)} (${UUID_A}) stopped: removed its forwards`);
      expect(await teardownVm(ctx, UUID_A, 'stopped'), 'nothing left: done').toBe(true);

      // B's teardown under A's name: not run.
      const script = readFileSync(teardownFile(UUID_B), 'utf8');
      writeFileSync(teardownFile(UUID_B), script.replace(UUID_B, UUID_A));
      expect(await teardownVm(ctx, UUID_B, 'release')).toBe(false);
      // Its elements deleted under the ledger: nft refuses the script, the entry stays for the hook to converge.
      writeFileSync(teardownFile(UUID_B), script);
      await mustRun(ns.run, ['nft', 'flush', 'map', 'inet', 'virtwire', 'port4']);
      expect(await teardownVm(ctx, UUID_B, 'release')).toBe(false);
      expect([existsSync(entryFile(UUID_B)), existsSync(teardownFile(UUID_B))]).toEqual([true, true]);
      expect(readFileSync(paths.logFile, 'utf8')).toMatch(/VM "web-b" teardown: nft refused it \(.*Error: Could not process rule: No such file or directory.*\); the hook converges instead/);
    } finally {
      session.close();
    }
  });

  it('a VM started while another runs: only its elements are added, in one transaction, giving the table a whole write gives; a table deleted under the ledger, or written by another build, is written whole', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    const scripts: string[] = [];
    ctx = { ...ctx, run: async (argv, o) => { if (argv[0] === 'nft' && argv[1] === '-f') scripts.push(o?.input ?? ''); return ns.run(argv, o); } };
    const startA = async (): Promise<string[]> => {
      scripts.length = 0;
      expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
      return scripts.map((s) => s.split('\n')[0] as string);
    };
    expect(await hook('prepare', vmB())).toEqual({ exitCode: 0 });
    runs('web-b', vmB());
    const whole = 'table inet virtwire {}';
    expect(await startA()).toEqual(['add element inet virtwire port4 { 8080 . tcp : 192.168.122.10 . 80, 5353 . udp : 192.168.122.10 . 5353 }']);
    expect(scripts[0]).toBe('add element inet virtwire port4 { 8080 . tcp : 192.168.122.10 . 80, 5353 . udp : 192.168.122.10 . 5353 }\nadd element inet virtwire hairpin4 { 192.168.122.0/24 . 192.168.122.10 }\n');
    // nft lists elements in the order they came: compare the sets of elements.
    const elementsSorted = (t: string): string => t.replace(/elements = \{([^}]*)\}/g, (_m, body: string) => `elements = { ${body.split(',').map((e) => e.trim()).sort().join(', ')} }`);
    const added = elementsSorted(await table());
    expect(added).toContain('9090 . tcp');
    // Written whole from the same ledger (a network restart re-asserts so): the very same table.
    runs(NAME_A, vmA());
    expect(await hook('stopped', vmB())).toEqual({ exitCode: 0 });
    expect(await hook('prepare', vmB())).toEqual({ exitCode: 0 });
    await reconcile(ctx);
    expect(elementsSorted(await table())).toBe(added);
    expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
    // The table deleted behind the ledger's back: adding fails, the whole table is written.
    await mustRun(ns.run, ['nft', 'delete', 'table', 'inet', 'virtwire']);
    expect(await startA()).toEqual([scripts[0]?.split('\n')[0], whole]);
    expect(scripts[0]).toMatch(/^add element/);
    expect(elementsSorted(await table())).toBe(added);
    expect(readFileSync(paths.logFile, 'utf8')).toContain("(written whole: nft refused adding this VM's alone)");
    expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
    // A table another build wrote (its layout recorded differently): written whole at once.
    const host = join(paths.runDir, 'host.json');
    writeFileSync(host, JSON.stringify({ ...JSON.parse(readFileSync(host, 'utf8')), layout: '0123456789abcdef' }));
    expect(await startA()).toEqual([whole]);
    expect(elementsSorted(await table())).toBe(added);
  });

  it('with the watcher\'s long-lived nft, the table\'s scripts go through it, not through nft processes: the same table, added to or written whole', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    expect(await hook('prepare', vmB(), 'web-b')).toEqual({ exitCode: 0 });
    runs('web-b', vmB());
    expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
    const byProcesses = await table();
    expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
    const session = new NftSession(join(paths.runDir, 'nft-session.nft'), ['ip', 'netns', 'exec', ns.name, 'nft']);
    const nftRuns: string[] = [];
    ctx = { ...ctx, nft: session, run: async (argv, o) => { if (argv[0] === 'nft' && argv[1] === '-f') nftRuns.push(o?.input ?? ''); return ns.run(argv, o); } };
    try {
      // Added to the table as it is.
      expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
      expect(await table()).toBe(byProcesses);
      expect(readFileSync(paths.logFile, 'utf8')).toContain("1 forward(s)");
      expect(readFileSync(join(paths.runDir, 'nft-session.nft'), 'utf8')).toMatch(/^add element inet virtwire port4 \{ 8080 \. tcp : 192\.168\.122\.10 \. 80/);
      expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
      // The table gone behind the ledger's back: written whole, through the session too.
      await mustRun(ns.run, ['nft', 'delete', 'table', 'inet', 'virtwire']);
      expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
      expect(readFileSync(paths.logFile, 'utf8')).toContain("(written whole: nft refused adding this VM's alone)");
      expect(await table()).toContain('9090 . tcp : 192.168.122.11 . 80');
      expect(await table()).toContain('8080 . tcp : 192.168.122.10 . 80');
      expect(nftRuns, 'no nft process ran a table script').toEqual([]);
    } finally {
      session.close();
    }
  });

  it('with the watcher\'s long-lived nft, a start looks at libvirt\'s chains through it: no process while the accept is in place, placed again with processes once libvirt moved it', async () => {
    writeFiles(paths.templatesDir, { 'b.yaml': 'match: {domains: ["web-b"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9090, guest: 80}\n' });
    const session = new NftSession(join(paths.runDir, 'nft-session.nft'), ['ip', 'netns', 'exec', ns.name, 'nft']);
    const commands: string[] = [];
    ctx = { ...ctx, nft: session, run: async (argv, o) => { commands.push(argv[0] === 'sh' ? 'sh (the probe)' : argv[0] as string); return ns.run(argv, o); } };
    try {
      // The first start places the accept: read and placed with processes.
      expect(await hook('prepare', vmB(), 'web-b')).toEqual({ exitCode: 0 });
      expect(commands).toEqual(['sh (the probe)', 'iptables-restore']);
      runs('web-b', vmB());
      // The next finds it in place: no process at all.
      commands.length = 0;
      expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
      expect(commands).toEqual([]);
      expect(await table()).toContain('8080 . tcp : 192.168.122.10 . 80');
      expect(JSON.parse(readFileSync(join(paths.runDir, 'host.json'), 'utf8')).accepts).toEqual([{ backend: 'iptables', family: 4 }]);
      expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
      // libvirt reloads its rules and puts its jump back on top: the look sees it, processes put the accept first again.
      await mustRun(ns.run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
      commands.length = 0;
      expect(await hook('prepare', vmA())).toEqual({ exitCode: 0 });
      expect(commands).toEqual(['sh (the probe)', 'iptables-restore']);
      expect((await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n')[1]).toContain(acceptComment(JSON.parse(readFileSync(join(paths.runDir, 'host.json'), 'utf8')).mark));
    } finally {
      session.close();
    }
  });

  it('reconnect re-asserts after libvirt put its rules back on top, and never fails', async () => {
    await hook('prepare', vmA());
    await mustRun(ns.run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    await mustRun(ns.run, ['nft', 'delete', 'table', 'inet', 'virtwire']);
    expect(await hook('reconnect', vmA())).toEqual({ exitCode: 0 });
    expect((await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n')[1]).toContain('virtwire');
    expect(await table()).toContain('192.168.122.10 . 80');
    // Broken input on reconnect must not kill the VM.
    expect(await hook('reconnect', '<domain')).toEqual({ exitCode: 0 });
  });

  it('the network hook re-asserts on started/updated only', async () => {
    await hook('prepare', vmA());
    await mustRun(ns.run, ['iptables', '-w', '-I', 'FORWARD', '1', '-j', 'LIBVIRT_FWI']);
    expect(await handleNetworkHook(ctx, ['default', 'port-created', 'begin', '-'])).toEqual({ exitCode: 0 });
    expect((await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n')[1]).not.toContain('virtwire');
    expect(await handleNetworkHook(ctx, ['default', 'started', 'begin', '-'])).toEqual({ exitCode: 0 });
    expect((await mustRun(ns.run, ['iptables', '-w', '-S', 'FORWARD'])).split('\n')[1]).toContain('virtwire');
  });

  it('a network that is no longer NAT when it starts again takes its forwards away: withdrawn, never left open', async () => {
    await hook('prepare', vmA());
    const hookData = (net: string) => `<hookData>${net.replace(/^[\s\S]*?(<network>[\s\S]*<\/network>)[\s\S]*$/, '$1')}</hookData>`;
    const nat = fixture('network-default.xml');
    expect(await handleNetworkHook(ctx, ['default', 'started', 'begin', '-'], async () => hookData(nat))).toEqual({ exitCode: 0 });
    expect(await table()).toContain('192.168.122.10 . 80');
    const isolated = nat.replace(/<forward mode='nat'>[\s\S]*?<\/forward>/, '');
    expect(await handleNetworkHook(ctx, ['default', 'started', 'begin', '-'], async () => hookData(isolated))).toEqual({ exitCode: 0 });
    expect(await table()).toBe('');
    expect(await forwardRule()).toEqual([]);
    expect(existsSync(entryFile(UUID_A))).toBe(false);
    expect(readFileSync(paths.logFile, 'utf8')).toContain(`withdrew 2 forward(s) of VM ${quoted(NAME_A)} NIC 52:54:00:77:00:10: binding nat needs a NAT network (<forward mode='nat'/>), but network "default" has forward mode "isolated"`);
  });

  it('reconcile (the watcher\'s, when it stands the network hook down) withdraws the forwards of a NIC whose network now runs as one its binding cannot use', async () => {
    await hook('prepare', vmA());
    await hook('start', vmA());
    runs(NAME_A, vmA());
    expect((await reconcile(ctx)).notes.join('\n')).not.toContain('withdrew');
    expect(await table()).toContain('192.168.122.10 . 80');
    writeFiles(join(paths.libvirtRunDir, 'network'), { 'default.xml': fixture('network-default.xml').replace(/<forward mode='nat'>[\s\S]*?<\/forward>/, '') });
    const r = await reconcile(ctx);
    expect(r.notes).toContainEqual(`withdrew 2 forward(s) of VM ${quoted(NAME_A)} NIC 52:54:00:77:00:10: binding nat needs a NAT network (<forward mode='nat'/>), but network "default" has forward mode "isolated"`);
    expect(await table()).toBe('');
    expect(existsSync(entryFile(UUID_A))).toBe(false);
  });

  it('a template error refuses the start with one line naming file:line:column and the fix; nothing is reserved', async () => {
    writeFiles(paths.templatesDir, { 'web.yaml': 'match: {domains: ["web-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 80800}\n' });
    const r = await hook('prepare', vmA());
    expect(r).toEqual({ exitCode: 1, stderr: `virtwire: VM ${JSON.stringify(NAME_A)}: template ${paths.templatesDir}/web.yaml is invalid (${paths.templatesDir}/web.yaml:4:24: host: a port is 1-65535, found 80800); fix it — "virtwire templates check" lists every problem` });
    expect(existsSync(join(paths.runDir, 'vms'))).toBe(false);
  });

  it('a virtwire.yaml broken while the VM runs does not leave its forwards behind at stop', async () => {
    await hook('prepare', vmA());
    writeFileSync(paths.configFile, 'firewall: {mark: nope}\n');
    expect(await hook('stopped', vmA())).toEqual({ exitCode: 0 });
    expect(await table()).toBe('');
    expect(await forwardRule()).toEqual([]);
    expect(readFileSync(paths.logFile, 'utf8')).toContain('firewall.mark must be a single bit');
  });

});

describe('operations with nothing to do', () => {
  it('exit 0 without reading stdin', async () => {
    const ctx = makeContext(testPaths(join(tempDir(), 'nonexistent')), async () => { throw new Error('no command expected'); }, { hostSockets: async () => [] }, 't');
    for (const op of ['started', 'attach', 'detach']) {
      expect(await handleQemuHook(ctx, ['vm', op, 'begin', '-'], async () => { throw new Error('stdin read'); })).toEqual({ exitCode: 0 });
    }
  });

  it('migrate/restore of a VM no template concerns: exit 0, no output (the XML stays as it came)', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'templates'));
    const ctx = makeContext(testPaths(root), async () => { throw new Error('no command expected'); }, { hostSockets: async () => [] }, 't');
    for (const op of ['migrate', 'restore']) expect(await handleQemuHook(ctx, ['db', op, 'begin', '-'], async () => domainXml('db'))).toEqual({ exitCode: 0 });
  });

  it('a VM no template matches exits 0 and touches nothing', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'templates'));
    const ctx = makeContext(testPaths(root), async () => { throw new Error('no command expected'); }, { hostSockets: async () => [] }, 't');
    expect(await handleQemuHook(ctx, ['db', 'prepare', 'begin', '-'], async () => domainXml('db'))).toEqual({ exitCode: 0 });
    expect(await handleQemuHook(ctx, ['db', 'start', 'begin', '-'], async () => domainXml('db'))).toEqual({ exitCode: 0 });
    expect(existsSync(join(root, 'run'))).toBe(false);
  });
});

import { ROOT, tempDir } from './helpers.js';
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuOpIsActive } from '../../src/hooks/qemu-handler.js';
import { QEMU_FAIL_CLOSED_OPS } from '../../src/hooks/entry.js';

const ALL_QEMU_OPS = ['prepare', 'start', 'started', 'stopped', 'release', 'migrate', 'restore', 'reconnect', 'attach'];
const REINSTALL = "reinstall virtwire: apt-get install nodejs if Node is gone, then run virtwire's install.sh";

/** The case arms of a shim: ops → fail_closed. */
function caseArms(shim: string): Map<string, string> {
  const arms = new Map<string, string>();
  for (const m of shim.matchAll(/^\s*([a-z|-]+)\) fail_closed=([01]) ;;$/gm)) for (const op of (m[1] as string).split('|')) arms.set(op, m[2] as string);
  return arms;
}

describe('hook shims: kept in step with the handlers', () => {
  it('the qemu shim lets through exactly the operations the handler acts on, and fails closed on exactly prepare/migrate/restore', () => {
    const arms = caseArms(readFileSync(join(ROOT, 'hooks', 'qemu'), 'utf8'));
    expect([...arms.keys()].sort()).toEqual(ALL_QEMU_OPS.filter(qemuOpIsActive).sort());
    expect([...arms].filter(([, f]) => f === '1').map(([op]) => op).sort()).toEqual([...QEMU_FAIL_CLOSED_OPS].sort());
  });

  it('the network shim lets through started/updated and never fails closed', () => {
    expect([...caseArms(readFileSync(join(ROOT, 'hooks', 'network'), 'utf8'))]).toEqual([['started', '0'], ['updated', '0']]);
  });
});

/**
 * The installed shims, rendered exactly as install.sh renders them, run the
 * way libvirt runs them (argv, XML on stdin, an environment without PATH).
 * Temp files under tmpdir(): they must be executable.
 */
describe('hook shims when Node or the bundle cannot run', () => {
  const dir = tempDir('vw-shim-', tmpdir());
  const dist = join(dir, 'dist');
  mkdirSync(dist);
  for (const b of ['qemu-hook.cjs', 'network-hook.cjs', 'virtwire.mjs']) writeFileSync(join(dist, b), '// stand-in bundle\n');

  // The shims' run dir and log, here (render.sh's defaults are the hooks' DEFAULT_PATHS: checked below).
  const runDir = join(dir, 'run');
  const logFile = join(dir, 'virtwire.log');
  function render(name: string, node: string, bundles = dist): string {
    const r = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), name, node, bundles, runDir, logFile], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const file = join(dir, `${name}-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, r.stdout, { mode: 0o755 });
    return file;
  }
  /** A stand-in for Node: a shell script with this body. */
  function fakeNode(body: string, mode = 0o755): string {
    const file = join(dir, `node-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, mode);
    return file;
  }
  const run = (shim: string, ...argv: string[]) => {
    const r = spawnSync(shim, argv, { input: '<domain/>', encoding: 'utf8', env: { LC_ALL: 'C' }, timeout: 15_000 });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout };
  };
  const writeEntry = (uuid: string) => { mkdirSync(join(runDir, 'vms'), { recursive: true }); writeFileSync(join(runDir, 'vms', `${uuid}.json`), '{}'); };
  const qemu = (shim: string, op: string) => run(shim, 'vm1', op, op === 'release' || op === 'stopped' ? 'end' : 'begin', '-');

  it('Node missing: reconnect, stopped and release exit 0 with one line; prepare, migrate and restore refuse with one line', () => {
    const shim = render('qemu', '/nonexistent/bin/node');
    const why = `virtwire: cannot run Node at /nonexistent/bin/node (missing or not executable); ${REINSTALL}`;
    for (const op of ['reconnect', 'stopped', 'release']) {
      expect(qemu(shim, op), op).toEqual({ status: 0, stdout: '', stderr: `${why} (ignored: libvirt must not see qemu ${op} fail)\n` });
    }
    for (const op of ['prepare', 'migrate', 'restore']) expect(qemu(shim, op), op).toEqual({ status: 1, stdout: '', stderr: `${why}\n` });
    // Operations virtwire does not act on never look for Node.
    expect(qemu(shim, 'started')).toEqual({ status: 0, stdout: '', stderr: '' });
    // start: Node only for a VM whose prepare left a start marker (a tap VLAN to set), and then it fails closed.
    const uuid = '6f1f6a0e-0000-4000-8000-0000000000aa';
    const start = () => {
      const r = spawnSync(shim, ['vm1', 'start', 'begin', '-'], { input: `<domain><name>vm1</name><uuid>${uuid}</uuid></domain>`, encoding: 'utf8', env: { LC_ALL: 'C' }, timeout: 15_000 });
      return { status: r.status, stderr: r.stderr, stdout: r.stdout };
    };
    expect(start()).toEqual({ status: 0, stdout: '', stderr: '' });
    mkdirSync(join(runDir, 'start'), { recursive: true });
    writeFileSync(join(runDir, 'start', uuid), '');
    expect(start()).toEqual({ status: 1, stdout: '', stderr: `${why}\n` });
    rmSync(join(runDir, 'start', uuid));
  });

  it('Node not executable counts as missing', () => {
    const node = fakeNode('exit 0', 0o644);
    expect(qemu(render('qemu', node), 'reconnect')).toEqual({ status: 0, stdout: '', stderr: `virtwire: cannot run Node at ${node} (missing or not executable); ${REINSTALL} (ignored: libvirt must not see qemu reconnect fail)\n` });
  });

  it('bundle missing: reconnect exits 0, prepare refuses', () => {
    const shim = render('qemu', fakeNode('exit 0'), join(dir, 'gone'));
    const why = `virtwire: cannot run ${join(dir, 'gone')}/qemu-hook.cjs (missing or unreadable); ${REINSTALL}`;
    expect(qemu(shim, 'reconnect')).toEqual({ status: 0, stdout: '', stderr: `${why} (ignored: libvirt must not see qemu reconnect fail)\n` });
    expect(qemu(shim, 'prepare')).toEqual({ status: 1, stdout: '', stderr: `${why}\n` });
  });

  it('Node exits 1: reconnect still exits 0 and says so; prepare passes the hook\'s own refusal through unchanged', () => {
    const node = fakeNode('echo "virtwire: VM \\"vm1\\": refused for a reason" >&2; exit 1');
    const shim = render('qemu', node);
    expect(qemu(shim, 'reconnect')).toEqual({
      status: 0, stdout: '',
      stderr: `virtwire: VM "vm1": refused for a reason\nvirtwire: Node at ${node} failed running ${dist}/qemu-hook.cjs (exit status 1); ${REINSTALL} (ignored: libvirt must not see qemu reconnect fail)\n`,
    });
    expect(qemu(shim, 'prepare')).toEqual({ status: 1, stdout: '', stderr: 'virtwire: VM "vm1": refused for a reason\n' });
  });

  it('Node crashes (SIGSEGV): release exits 0; prepare fails closed with a line saying Node crashed', () => {
    const node = fakeNode('kill -SEGV $$');
    const shim = render('qemu', node);
    const why = `virtwire: Node at ${node} failed running ${dist}/qemu-hook.cjs (exit status 139); ${REINSTALL}`;
    expect(qemu(shim, 'release')).toEqual({ status: 0, stdout: '', stderr: `${why} (ignored: libvirt must not see qemu release fail)\n` });
    expect(qemu(shim, 'prepare')).toEqual({ status: 1, stdout: '', stderr: `${why}\n` });
  });

  it('a working Node gets the bundle, the argv and the XML on stdin', () => {
    const seen = join(dir, 'seen');
    const shim = render('qemu', fakeNode(`{ printf '%s|' "$@"; cat; } > ${seen}`));
    expect(qemu(shim, 'prepare')).toEqual({ status: 0, stdout: '', stderr: '' });
    // The shim read the XML itself (to hand it to the watcher, had one served): it passes it on with a newline.
    expect(readFileSync(seen, 'utf8')).toBe(`--no-expose-wasm|--lite-mode|${dist}/qemu-hook.cjs|vm1|prepare|begin|-|<domain/>\n`);
  });

  it('stopped of a VM with an entry (no teardown): the shell reads the UUID from the first lines, and Node gets the whole XML', () => {
    const uuid = '6f1f6a0e-0000-4000-8000-0000000000bb';
    writeEntry(uuid);
    const seen = join(dir, 'seen-stopped');
    const shim = render('qemu', fakeNode(`cat > ${seen}`));
    // A name with a newline puts the UUID on the fourth line.
    const xml = `<domain type='qemu' id='3'>\n  <name>vm\n1</name>\n\n  <uuid>${uuid}</uuid>\n  <memory unit='KiB'>65536</memory>\n</domain>`;
    const r = spawnSync(shim, ['vm1', 'stopped', 'end', '-'], { input: xml, encoding: 'utf8', env: { LC_ALL: 'C' }, timeout: 15_000 });
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(readFileSync(seen, 'utf8')).toBe(`${xml}\n`);
    // Another VM's UUID: no entry, so neither Node nor a read of the rest.
    rmSync(seen);
    const other = spawnSync(shim, ['vm2', 'stopped', 'end', '-'], { input: xml.replace(uuid, '6f1f6a0e-0000-4000-8000-0000000000cc'), encoding: 'utf8', env: { LC_ALL: 'C' }, timeout: 15_000 });
    expect([other.status, other.stderr, existsSync(seen)]).toEqual([0, '', false]);
    rmSync(join(runDir, 'vms', `${uuid}.json`));
  });

  it('the network shim never fails the network', () => {
    writeEntry('6f1f6a0e-0000-4000-8000-0000000000ee');
    const shim = render('network', '/nonexistent/node');
    expect(run(shim, 'default', 'started', 'begin', '-')).toEqual({ status: 0, stdout: '', stderr: `virtwire: cannot run Node at /nonexistent/node (missing or not executable); ${REINSTALL} (ignored: libvirt must not see network started fail)\n` });
    expect(run(render('network', fakeNode('exit 3')), 'default', 'updated', 'begin', '-').status).toBe(0);
    const marker = join(dir, 'ran');
    expect(run(render('network', fakeNode(`touch ${marker}`)), 'default', 'port-created', 'begin', '-')).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(existsSync(marker)).toBe(false);
  });

  it('the virtwire command says what is wrong when Node is gone', () => {
    expect(run(render('virtwire', '/nonexistent/node'), 'purge')).toEqual({ status: 127, stdout: '', stderr: `virtwire: cannot run Node at /nonexistent/node (missing or not executable); ${REINSTALL}\n` });
  });

  it('render.sh refuses a path that would not be plain shell text', () => {
    for (const bad of ['/opt/my node/bin/node', "/opt/x'$(id)'/node", 'node']) {
      const r = spawnSync('sh', [join(ROOT, 'hooks', 'render.sh'), 'qemu', bad, dist], { encoding: 'utf8' });
      expect(r.status, bad).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^render\.sh: .* (is not an absolute path|has characters other than)/);
    }
  });
});

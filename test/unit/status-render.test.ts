// `virtwire status`'s human output (src/cli/status.ts renderStatus): one block
// per VM, one line per NIC and per forward, one per problem; a name with
// quotes or a newline never breaks a line, and never reaches a suggested
// command raw.
import { describe, expect, it } from 'vitest';
import { renderStatus, failedStatus, statusFails, type VmStatus } from '../../src/cli/status.js';

const MAC = '52:54:00:77:00:d1';
const vm = (over: Partial<VmStatus> = {}): VmStatus => ({
  vm: 'web-1', uuid: '6f1f6a0e-0000-4000-8000-0000000000d1', state: 'running', persistent: true,
  nics: [
    { mac: MAC, network: 'default', template: 'web', binding: 'nat', bindingVersion: 1, attached: null, attachPending: false, vf: null, addresses: ['192.168.122.10'], reservations: [{ ip: '192.168.122.10', reserved: true }] },
    { mac: '52:54:00:77:00:d2', network: null, template: null, binding: null, bindingVersion: null, attached: null, attachPending: false, vf: null, addresses: [], reservations: [] },
  ],
  forwards: [{ nic: MAC, text: 'tcp *:8080 -> 192.168.122.10:80' }],
  record: { state: 'current', differences: [] },
  host: { state: 'ok', problems: [] },
  error: null,
  ...over,
});

describe('renderStatus', () => {
  it('one block per VM: NICs, their forwards, the record and the host', () => {
    expect(renderStatus([vm()], [])).toBe([
      'VM "web-1" (running)',
      `  NIC ${MAC} on network "default": template "web", binding nat v1, address 192.168.122.10 (DHCP reservation)`,
      '    forward tcp *:8080 -> 192.168.122.10:80',
      '  NIC 52:54:00:77:00:d2: not wired by a template',
      '  record: current',
      '  host: ok',
      '',
    ].join('\n'));
  });

  it('a NIC a binding attaches: what to, and whether its definition still has to be rewritten', () => {
    const bridged = (attachPending: boolean): VmStatus => vm({
      nics: [{ mac: MAC, network: null, template: 'lan', binding: 'bridge', bindingVersion: 1, attached: 'bridge br0, VLAN 100', attachPending, vf: null, addresses: [], reservations: [] }],
      forwards: [],
    });
    expect(renderStatus([bridged(false)], []).split('\n')[1]).toBe(`  NIC ${MAC}: template "lan", binding bridge v1, attached to bridge br0, VLAN 100`);
    expect(renderStatus([bridged(true)], []).split('\n')[1]).toBe(`  NIC ${MAC}: template "lan", binding bridge v1, to be attached to bridge br0, VLAN 100 ("virtwire apply web-1" rewrites its definition)`);
  });

  it('a VF: its PF and index, and the PF\'s live line for it', () => {
    const vf = vm({
      nics: [{ mac: MAC, network: null, template: 'db', binding: 'sriov', bindingVersion: 1, attached: 'a VF of enp3s0f0, VLAN 100', attachPending: false,
        vf: { pf: 'enp3s0f0', index: 2, pci: '0000:03:10.2', live: `vf 2     link/ether ${MAC} brd ff:ff:ff:ff:ff:ff, vlan 100, spoof checking off, link-state auto, trust on` }, addresses: [], reservations: [] }],
      forwards: [],
    });
    expect(renderStatus([vf], []).split('\n')[1]).toBe(`  NIC ${MAC}: template "db", binding sriov v1, attached to a VF of enp3s0f0, VLAN 100, VF 2 of enp3s0f0 (0000:03:10.2): vf 2     link/ether ${MAC} brd ff:ff:ff:ff:ff:ff, vlan 100, spoof checking off, link-state auto, trust on`);
  });

  it('a stale record and host problems, one line each; strays after the VMs; an unreadable VM in one line', () => {
    const out = renderStatus([
      vm({ record: { state: 'stale', differences: [`NIC ${MAC}: +tcp *:8082 -> 192.168.122.10:80`] }, host: { state: 'not matching', problems: ['VM "web-1": p1', 'VM "web-1": p2'] } }),
      failedStatus('gone', 'no domain named "gone" in libvirt; check "virsh list --all"'),
    ], ['nft map fwd4 holds x, which no ledger entry has']);
    expect(out.split('\n').slice(4)).toEqual([
      '  record: stale: the templates now give something else; "virtwire apply web-1" records it',
      `    NIC ${MAC}: +tcp *:8082 -> 192.168.122.10:80`,
      '  host: not matching',
      '    VM "web-1": p1',
      '    VM "web-1": p2',
      'VM "gone": error: no domain named "gone" in libvirt; check "virsh list --all"',
      'host: nft map fwd4 holds x, which no ledger entry has',
      '',
    ]);
  });

  it('a name with quotes and a newline is quoted, and a suggested command gets a placeholder for it', () => {
    const name = 'web "1"\nx';
    const out = renderStatus([vm({ vm: name, record: { state: 'none', differences: [] }, nics: [{ ...vm().nics[0]!, network: 'n"\n', reservations: [{ ip: '192.168.122.10', reserved: false }] }] })], []);
    expect(out).toBe([
      'VM "web \\"1\\"\\nx" (running)',
      `  NIC ${MAC} on network "n\\"\\n": template "web", binding nat v1, address 192.168.122.10 (not reserved yet; "virtwire apply VM" reserves it)`,
      '    forward tcp *:8080 -> 192.168.122.10:80',
      '  record: none (never applied; "virtwire apply VM" records its wiring)',
      '  host: ok',
      '',
    ].join('\n'));
  });

  it('exit 1 for an unreadable VM or any host problem (a stopped VM with leftovers too); not for a stale record', () => {
    expect(statusFails(vm())).toBe(false);
    expect(statusFails(vm({ record: { state: 'stale', differences: ['x'] } }))).toBe(false);
    expect(statusFails(vm({ host: { state: 'not matching', problems: ['x'] } }))).toBe(true);
    expect(statusFails(vm({ state: 'shut off', host: { state: 'not running', problems: ['x'] } }))).toBe(true);
    expect(statusFails(failedStatus('x', 'e'))).toBe(true);
    expect(renderStatus([], [])).toBe('No domains in libvirt.\n');
    expect(renderStatus([vm({ persistent: false, record: { state: 'none', differences: [] } })], [])).toContain('\n  record: none (a transient domain: no definition to record in)\n');
  });
});

describe('forwardLine', () => {
  it('names the ssh command for a tcp forward to the guest\'s port 22 (a port block\'s usual point), and nothing for others', async () => {
    const { forwardLine } = await import('../../src/cli/status.js');
    const row = (o: Record<string, string>) => ({ proto: 'tcp', listen: '0.0.0.0', hostPort: '20000', guest: '192.168.122.2:22', text: 'T', ...o });
    expect(forwardLine(row({}))).toBe('forward T, ssh -p 20000 HOST');
    expect(forwardLine(row({ listen: '203.0.113.1' }))).toBe('forward T, ssh -p 20000 203.0.113.1');
    expect(forwardLine(row({ listen: '::', guest: '[fd00::2]:22' }))).toBe('forward T, ssh -p 20000 HOST');
    expect(forwardLine(row({ guest: '192.168.122.2:80' }))).toBe('forward T');
    expect(forwardLine(row({ proto: 'udp' }))).toBe('forward T');
    expect(forwardLine(row({ hostPort: '20000-20001', guest: '192.168.122.2:22-23' }))).toBe('forward T');
  });
});

describe('watcherLine', () => {
  it('says whether the watcher runs, is connected, and when it last reconciled; and how to start it', async () => {
    const { watcherLine } = await import('../../src/cli/commands/status.js');
    expect(watcherLine(undefined)).toMatch(/^watcher: not running — .*systemctl enable --now virtwire-watch, or virtwire watch\)$/);
    expect(watcherLine({ pid: 42, startedAt: 'x', connected: true, lastReconcile: '2026-11-30T06:00:00.000Z' })).toBe('watcher: running (pid 42, connected to libvirt), last full reconcile 2026-11-30T06:00:00.000Z');
    expect(watcherLine({ pid: 42, startedAt: 'x', connected: false })).toBe('watcher: running (pid 42, not connected to libvirt (retrying)), last full reconcile not yet');
  });
});

describe('networkHookLine', () => {
  it('says nothing of an armed or absent hook; a stood-down one is a line, a fault (exit 1) with no watcher serving; a file left alone is named', async () => {
    const { networkHookLine } = await import('../../src/cli/commands/status.js');
    const f = '/etc/libvirt/hooks/network.d/virtwire';
    expect(networkHookLine(f, 'armed', true)).toBeUndefined();
    expect(networkHookLine(f, 'armed', false)).toBeUndefined();
    expect(networkHookLine(f, 'absent', false)).toBeUndefined();
    expect(networkHookLine(f, 'stood down', true)).toEqual({ line: 'network hook: stood down (mode 0644) while the watcher covers network starts and updates', fault: false });
    expect(networkHookLine(f, 'stood down', false)).toEqual({ line: 'network hook: stood down (mode 0644) but no watcher serves: libvirt does not run it when a network starts or is updated; run "virtwire reconcile" (it arms it again)', fault: true });
    expect(networkHookLine(f, { refused: 'it is owned by uid 1000, not root' }, true)).toEqual({ line: `network hook: ${f} is left alone (it is owned by uid 1000, not root); run virtwire's install.sh again, which writes it root's and 0755; a hook of your own goes in network.d under another name`, fault: false });
  });
});

// Issue 10, `virtwire status` end to end, on libvirt 9 (iptables backend) and
// libvirt 11 (nftables backend): an applied, running VM is reported with its
// template, binding and forwards, record current and host ok; a template
// edited on disk makes the record stale (with the difference); the nft table
// deleted by hand makes the host not match (exit 1) until `virtwire
// reconcile`; a running VM with no ledger entry is named until `virtwire
// apply`; --json has the documented shape.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/demo/sandbox.js';
import { MODES, skipE2e, sandboxWithVirtwire } from './support.js';

const WEB = 'match: {domains: ["web-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const MAC = '52:54:00:e2:0b:01';
const WEB1 = { name: 'web-1', mac: MAC, ip: '192.168.122.2', reserve: false };
const NIC_LINE = `  NIC ${MAC} on network "default": template "web", binding nat v1, address 192.168.122.2 (DHCP reservation)`;
const FORWARD_LINE = '    forward tcp *:8080 -> 192.168.122.2:80';

/** status's last line in this sandbox, where no `virtwire watch` runs. */
const NO_WATCHER = 'watcher: not running — VMs defined in virt-manager get no wiring until "virtwire apply" (start it: systemctl enable --now virtwire-watch, or virtwire watch)';

describe.skipIf(skipE2e).each(MODES)('$mode', ({ trixie }) => {
  let sb: Sandbox;
  const virtwire = (...args: string[]) => sb.exec(['virtwire', ...args], { reject: false });

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web: WEB }));
    await sb.defineGuest(WEB1);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it('before apply: record none, host not running, exit 0', async () => {
    const r = await virtwire('status', 'web-1');
    expect(r).toMatchObject({ exitCode: 0, stderr: '' });
    expect(r.stdout.split('\n')).toEqual([
      'VM "web-1" (shut off)',
      `  NIC ${MAC} on network "default": template "web", binding nat v1, address 192.168.122.2 (not reserved yet; "virtwire apply web-1" reserves it)`,
      FORWARD_LINE,
      '  record: none (never applied; "virtwire apply web-1" records its wiring)',
      '  host: not running',
      NO_WATCHER,
    ]);
  }, 120_000);

  it('an applied running VM: template, binding, forwards, record current, host ok, exit 0; --json has the documented shape', async () => {
    expect((await virtwire('apply', 'web-1')).exitCode).toBe(0);
    await sb.startGuest(WEB1.name);
    const r = await virtwire('status', 'web-1');
    expect(r).toMatchObject({ exitCode: 0, stderr: '' });
    expect(r.stdout).toBe(['VM "web-1" (running)', NIC_LINE, FORWARD_LINE, '  record: current', '  host: ok', NO_WATCHER].join('\n'));

    const all = await virtwire('status');
    expect(all.exitCode, all.stdout).toBe(0);
    expect(all.stdout.split('\n')).toContain('VM "web-1" (running)');

    const json = await virtwire('status', '--json', 'web-1');
    expect(json.exitCode).toBe(0);
    const vms = JSON.parse(json.stdout) as unknown[];
    expect(vms).toEqual([{
      vm: 'web-1', uuid: expect.stringMatching(/^[0-9a-f-]{36}$/), state: 'running', persistent: true,
      nics: [{ mac: MAC, network: 'default', template: 'web', binding: 'nat', bindingVersion: 1, attached: null, attachPending: false, vf: null, addresses: ['192.168.122.2'], reservations: [{ ip: '192.168.122.2', reserved: true }] }],
      forwards: [{ proto: 'tcp', listen: '0.0.0.0', hostPort: '8080', guest: '192.168.122.2:80', from: 'any', nic: MAC, origin: expect.stringMatching(/^\/etc\/virtwire\/templates\/web\.yaml:\d+:\d+$/), text: 'tcp *:8080 -> 192.168.122.2:80' }],
      record: { state: 'current', differences: [] },
      host: { state: 'ok', problems: [] },
      error: null,
    }]);
  }, 300_000);

  it('a template edited on disk: record stale with the difference (the host still matches the ledger)', async () => {
    await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB.replace('host: 8080', 'host: 8082') });
    try {
      const r = await virtwire('status', 'web-1');
      expect(r.exitCode, r.stdout).toBe(0);
      expect(r.stdout.split('\n')).toEqual([
        'VM "web-1" (running)',
        NIC_LINE,
        '    forward tcp *:8082 -> 192.168.122.2:80',
        '  record: stale: the templates now give something else; "virtwire apply web-1" records it',
        `    NIC ${MAC}: +tcp *:8082 -> 192.168.122.2:80, -tcp *:8080 -> 192.168.122.2:80`,
        '  host: ok',
        NO_WATCHER,
      ]);
      const json = JSON.parse((await virtwire('status', '--json', 'web-1')).stdout) as Array<{ record: unknown }>;
      expect(json[0]?.record).toEqual({ state: 'stale', differences: [`NIC ${MAC}: +tcp *:8082 -> 192.168.122.2:80, -tcp *:8080 -> 192.168.122.2:80`] });
    } finally {
      await sb.exec(['tee', '/etc/virtwire/templates/web.yaml'], { input: WEB });
    }
    expect((await virtwire('status', 'web-1')).stdout).toContain('  record: current\n  host: ok');
  }, 120_000);

  it('the nft table deleted by hand: host not matching, exit 1, naming the fix; after virtwire reconcile ok again', async () => {
    await sb.exec(['nft', 'delete', 'table', 'inet', 'virtwire']);
    const r = await virtwire('status', 'web-1');
    expect(r.exitCode, r.stdout).toBe(1);
    expect(r.stdout).toContain([
      '  host: not matching',
      '    VM "web-1": the nft table inet virtwire is missing, so none of its 1 forward(s) is applied; run "virtwire reconcile"',
    ].join('\n'));
    const json = JSON.parse((await virtwire('status', '--json')).stdout) as Array<{ vm: string; host: { state: string; problems: string[] } }>;
    expect(json.find((v) => v.vm === 'web-1')?.host).toEqual({ state: 'not matching', problems: [expect.stringContaining('the nft table inet virtwire is missing')] });

    expect((await virtwire('reconcile')).exitCode).toBe(0);
    const after = await virtwire('status', 'web-1');
    expect(after.exitCode, after.stdout).toBe(0);
    expect(after.stdout.split('\n')).toContain('  host: ok');
  }, 120_000);

  it('a running VM with no ledger entry although the templates wire it: named, with restart or apply as the fix; apply puts it right', async () => {
    const uuid = JSON.parse((await virtwire('status', '--json', 'web-1')).stdout)[0].uuid as string;
    await sb.exec(['rm', `/run/virtwire/vms/${uuid}.json`]);
    const r = await virtwire('status', 'web-1');
    expect(r.exitCode, r.stdout).toBe(1);
    expect(r.stdout.split('\n')).toContain('    VM "web-1": runs with no ledger entry although the templates give it 1 forward(s) (started before virtwire was installed, or without its hooks); restart it or run "virtwire apply web-1"');
    expect((await virtwire('apply', 'web-1')).stdout.trim()).toBe('VM "web-1": changed (forwards moved live: +tcp *:8080 -> 192.168.122.2:80)');
    const after = await virtwire('status', 'web-1');
    expect(after.exitCode, after.stdout).toBe(0);
  }, 120_000);

  it('a VM that does not exist: an error line and exit 1, the others still shown', async () => {
    const r = await virtwire('status', 'no-such-vm', 'web-1');
    expect(r.exitCode).toBe(1);
    expect(r.stdout.split('\n')[0]).toBe('VM "no-such-vm": error: no domain named "no-such-vm" in libvirt; check "virsh list --all"');
    expect(r.stdout.split('\n')).toContain('VM "web-1" (running)');
  }, 60_000);
});

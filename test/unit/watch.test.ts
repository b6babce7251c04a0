// The watcher's event → action logic (src/cli/watch.ts), with the recorded
// virsh event streams (test/data/events) replayed through fake processes and
// a scripted libvirt at the boundary (the domains it lists, their XML); the
// effects — apply one domain, release the undefined, reconcile the host —
// recorded. Real timers, with short debounce and backoff.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Watcher } from '../../src/cli/watch.js';
import type { Domain, LibvirtClient } from '../../src/libvirt/client.js';
import { FakeProcess } from '../support/fake-event-process.js';
import { ROOT, tempDir, testPaths, writeFiles } from './helpers.js';
import type { Paths } from '../../src/paths.js';
import { templatesCacheFile } from '../../src/engine/reserve.js';
import { decode } from '../../src/policy/parse-cache.js';

const DATA = join(ROOT, 'test', 'data', 'events');
const WEB = 'match: {domains: ["vm-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** libvirt as the watcher's client sees it: a scripted domain list and XML. */
class ScriptedLibvirt {
  domains: Array<Domain & { xml: string }> = [];
  listCalls = 0;
  client(): LibvirtClient {
    return {
      listDomains: async () => { this.listCalls++; return this.domains.map(({ xml: _x, ...d }) => d); },
      domainXml: async (uuid: string) => this.domains.find((d) => d.uuid === uuid)?.xml ?? '',
      close: async () => undefined,
    } as unknown as LibvirtClient;
  }
}

const dom = (n: number, state: Domain['state'] = 'shut off'): Domain & { xml: string } => ({
  uuid: `6f1f6a0e-0000-4000-8000-00000000000${n}`, name: `vm-${n}`, state, persistent: true, xml: `<domain><name>vm-${n}</name></domain>`,
});

describe('the watcher: events and template edits → applies, releases, reconciles', () => {
  let paths: Paths;
  let libvirt: ScriptedLibvirt;
  let watcher: Watcher;
  let spawned: FakeProcess[];
  let actions: string[];
  let said: string[];

  /** The domain stream's process now (the latest spawned with `event`). */
  const domainStream = () => [...spawned].reverse().find((p) => p.argv.includes('event')) as FakeProcess;
  /** Waits until `cond` holds (the watcher works on timers and a queue). */
  async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
    for (const end = Date.now() + ms; !cond(); await sleep(10)) if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}\n${said.join('\n')}`);
    await watcher.idle();
  }

  beforeEach(async () => {
    paths = testPaths(tempDir());
    writeFiles(paths.templatesDir, { 'web.yaml': WEB });
    libvirt = new ScriptedLibvirt();
    libvirt.domains = [dom(1), dom(2)];
    spawned = [];
    actions = [];
    said = [];
    watcher = new Watcher({
      uri: 'qemu:///system', paths, run: async () => ({ exitCode: 0, stdout: '', stderr: '' }), say: (l) => said.push(l),
      events: {
        spawn: (command, args) => { const p = new FakeProcess([...command, ...args]); spawned.push(p); return p; },
        debounceMs: 20, maxWaitMs: 200, settleMs: 30, backoffInitialMs: 20, backoffMaxMs: 100, stableMs: 10_000,
      },
      firewall: { spawn: (command, args) => { const p = new FakeProcess([...command, ...args]); spawned.push(p); return p; }, settleMs: 30 },
      deps: {
        newClient: () => libvirt.client(),
        applyDomain: async (_c, d, templates) => { actions.push(`apply ${d.name} (${templates.templates.map((t) => t.name).join(',')})`); return []; },
        releaseGone: async () => { actions.push('release'); },
        reconcileHost: async () => { actions.push('reconcile'); return { notes: [], unresolved: [] }; },
      },
    });
    watcher.start();
    await until('the start-up reconcile', () => actions.includes('reconcile'));
  });

  afterEach(async () => {
    await watcher.stop();
  });

  it('at start-up: every domain applied, the undefined released, the host reconciled; its state says connected', () => {
    expect(actions).toEqual(['apply vm-1 (web)', 'apply vm-2 (web)', 'release', 'reconcile']);
    const state = JSON.parse(readFileSync(join(paths.runDir, 'watch.json'), 'utf8')) as { pid: number; connected: boolean; lastReconcile: string };
    expect(state).toMatchObject({ pid: process.pid, connected: true });
    expect(state.lastReconcile).toMatch(/^20\d\d-/);
  });

  it('libvirt\'s firewall chains changed under it (a daemon reload): one reconcile per burst, noted with why; its own accept, or its own table, none', async () => {
    const monitor = spawned.find((p) => p.argv.join(' ') === 'nft monitor rules') as FakeProcess;
    expect(monitor, 'the watcher runs nft monitor rules').toBeDefined();
    actions.length = 0;
    // Recorded from libvirt 11's reload: its rules re-added ahead of virtwire's accept.
    monitor.stdout('add rule ip libvirt_network guest_input oif "virbr0" ip daddr 192.168.122.0/24 ct state established,related counter packets 0 bytes 0 accept\nadd rule ip libvirt_network guest_input oif "virbr0" counter packets 0 bytes 0 reject\n');
    await until('the reconcile', () => actions.includes('reconcile'));
    await sleep(100);
    expect(actions).toEqual(['reconcile']);
    actions.length = 0;
    monitor.stdout('insert rule ip libvirt_network guest_input ct mark & 0x10000000 == 0x10000000 ct status dnat counter packets 0 bytes 0 accept comment "virtwire:mark=0x10000000"\nadd element inet virtwire fwd4 { tcp . 8080 : 192.168.122.10 . 80 }\nadd rule inet virtwire hairpin counter packets 0 bytes 0\n');
    await sleep(150);
    expect(actions, 'what virtwire itself did').toEqual([]);
  });

  it('a burst of recorded events is one sync; a domain whose definition and state did not change is not applied again', async () => {
    actions.length = 0;
    const before = libvirt.listCalls;
    domainStream().stdout(readFileSync(join(DATA, 'libvirt9-domain.txt')));
    await until('a sync', () => libvirt.listCalls > before);
    await sleep(100);
    expect(libvirt.listCalls - before).toBe(1);
    expect(actions).toEqual([]);
  });

  it('a changed definition or state is applied (that domain only); an undefined domain is released', async () => {
    actions.length = 0;
    libvirt.domains[0] = { ...dom(1), xml: '<domain><name>vm-1</name><!-- edited in virt-manager --></domain>' };
    libvirt.domains[1] = dom(2, 'running');
    domainStream().stdout("event 'lifecycle' for domain 'vm-1': Defined Updated\n");
    await until('the applies', () => actions.length >= 2);
    expect(actions).toEqual(['apply vm-1 (web)', 'apply vm-2 (web)']);

    actions.length = 0;
    libvirt.domains = [libvirt.domains[0]!];
    domainStream().stdout("event 'lifecycle' for domain 'vm-2': Undefined Removed\n");
    await until('the release', () => actions.includes('release'));
    expect(actions).toEqual(['release']);
  });

  it('its own define is not a change: the Defined event that follows applies nothing (no loop)', async () => {
    const w2 = new Watcher({
      uri: 'qemu:///system', paths, run: async () => ({ exitCode: 0, stdout: '', stderr: '' }), say: (l) => said.push(l),
      events: { spawn: (command, args) => { const p = new FakeProcess([...command, ...args]); spawned.push(p); return p; }, debounceMs: 20, settleMs: 10 },
      firewall: { spawn: (command, args) => new FakeProcess([...command, ...args]) },
      deps: {
        newClient: () => libvirt.client(),
        // Like apply: records the wiring (a define: the XML changes) the first time, nothing after.
        applyDomain: async (_c, d) => {
          actions.push(`apply ${d.name}`);
          const entry = libvirt.domains.find((x) => x.uuid === d.uuid)!;
          if (entry.xml.includes('<metadata>')) return [];
          entry.xml = entry.xml.replace('</name>', '</name><metadata>recorded</metadata>');
          return ['recorded its wiring'];
        },
        releaseGone: async () => undefined,
        reconcileHost: async () => { actions.push('reconcile'); return { notes: [], unresolved: [] }; },
      },
    });
    await watcher.stop();
    watcher = w2; // afterEach stops this one
    actions.length = 0;
    w2.start();
    await until('its start-up', () => actions.includes('reconcile'));
    expect(actions).toEqual(['apply vm-1', 'apply vm-2', 'reconcile']);
    actions.length = 0;
    const before = libvirt.listCalls;
    domainStream().stdout("event 'lifecycle' for domain 'vm-1': Defined Updated\nevent 'lifecycle' for domain 'vm-2': Defined Updated\n");
    await until('the sync', () => libvirt.listCalls > before);
    expect(actions).toEqual([]);
  });

  it('what it remembers per domain stays bounded by what libvirt defines: 200 domains defined and undefined in bursts leave the two that remain', async () => {
    const lines = readFileSync(join(DATA, 'libvirt9-domain.txt'), 'utf8').split('\n').filter((l) => l.includes("'burst-"));
    const defined = lines.filter((l) => l.endsWith('Defined Added'));
    const removed = lines.filter((l) => l.endsWith('Undefined Removed'));
    const seen = Reflect.get(watcher, 'seen') as Map<string, string>;
    let n = 100;
    for (let round = 0; round < 40; round++) {
      const burst = defined.map(() => ({ ...dom(0), uuid: `6f1f6a0e-0000-4000-8000-${String(n).padStart(12, '0')}`, name: `vm-${n++}` }));
      libvirt.domains.push(...burst);
      const before = libvirt.listCalls;
      domainStream().stdout(`${defined.join('\n')}\n`);
      await until('the defined applied', () => libvirt.listCalls > before && actions.length >= 5);
      expect(seen.size).toBe(2 + burst.length);
      libvirt.domains = libvirt.domains.slice(0, 2);
      actions.length = 0;
      domainStream().stdout(`${removed.join('\n')}\n`);
      await until('the release', () => actions.includes('release'));
      actions.length = 0;
    }
    expect([...seen.keys()]).toEqual([dom(1).uuid, dom(2).uuid]);
  });

  it('a network event reconciles the host', async () => {
    actions.length = 0;
    const net = [...spawned].reverse().find((p) => p.argv.includes('net-event')) as FakeProcess;
    net.stdout(readFileSync(join(DATA, 'libvirt11-network.txt')));
    await until('the reconcile', () => actions.includes('reconcile'));
    expect(actions).toEqual(['reconcile']);
  });

  it('libvirtd gone and back (the recorded disconnect): logged once, then a full reconcile — every domain applied again', async () => {
    actions.length = 0;
    const stream = domainStream();
    stream.stderr(readFileSync(join(DATA, 'libvirt9-disconnect.stderr')));
    stream.exit('exit status 1');
    await until('the full reconcile after reconnecting', () => actions.includes('reconcile'));
    expect(actions).toEqual(['apply vm-1 (web)', 'apply vm-2 (web)', 'release', 'reconcile']);
    expect(said.filter((l) => l.startsWith('lost libvirt: '))).toHaveLength(1);
  });

  it('its reloads parse the templates through the hooks\' parse cache: a start after an edit finds them parsed', async () => {
    const cached = (): string[] => Object.keys(decode(readFileSync(templatesCacheFile(paths, false) as string, 'utf8')) as object)
      .filter((k) => k.split('\0')[1] === 'template').map((k) => k.split('\0').slice(3).join('\0'));
    expect(cached()).toEqual([WEB]);
    const edited = WEB.replace('host: 8080', 'host: 8081');
    writeFileSync(join(paths.templatesDir, 'web.yaml'), edited);
    await until('the reload', () => cached().includes(edited));
    expect(cached()).toContain(WEB);
  });

  it('a template edit is validated, then every domain is re-applied with it; a broken edit is logged at file:line:column and applies nothing', async () => {
    actions.length = 0;
    writeFileSync(join(paths.templatesDir, 'db.yaml'), 'match: {domains: ["db-*"]}\nbinding: nat\nforwards: []\n');
    await until('the re-apply', () => actions.length >= 2);
    expect(actions).toEqual(['apply vm-1 (db,web)', 'apply vm-2 (db,web)']);

    actions.length = 0;
    writeFileSync(join(paths.templatesDir, 'web.yaml'), WEB.replace('host: 8080', 'hots: 8080'));
    await until('the problem logged', () => said.some((l) => l.includes('keeping the last good templates')));
    expect(said.some((l) => l.startsWith(`templates changed: ${paths.templatesDir}/web.yaml:4:`))).toBe(true);
    // Events still act, with the last good templates.
    libvirt.domains[0] = { ...dom(1), xml: '<domain><name>vm-1</name><!-- again --></domain>' };
    domainStream().stdout("event 'lifecycle' for domain 'vm-1': Defined Updated\n");
    await until('the apply', () => actions.length >= 1);
    expect(actions).toEqual(['apply vm-1 (db,web)']);
  });

  it('a domain that fails to apply is logged and the others go on', async () => {
    actions.length = 0;
    const own: FakeProcess[] = [];
    const failing = new Watcher({
      uri: 'qemu:///system', paths, run: async () => ({ exitCode: 0, stdout: '', stderr: '' }), say: (l) => said.push(l),
      events: { spawn: (command, args) => { const p = new FakeProcess([...command, ...args]); own.push(p); return p; }, settleMs: 10, debounceMs: 10 },
      firewall: { spawn: (command, args) => new FakeProcess([...command, ...args]) },
      deps: {
        newClient: () => libvirt.client(),
        applyDomain: async (_c, d) => { if (d.name === 'vm-1') throw new Error('libvirt said no'); actions.push(`apply ${d.name}`); return ['x']; },
        releaseGone: async () => undefined,
        reconcileHost: async () => { actions.push('reconcile'); return { notes: [], unresolved: [] }; },
      },
    });
    failing.start();
    try {
      for (const end = Date.now() + 3000; !actions.includes('reconcile') && Date.now() < end;) await sleep(10);
      expect(actions).toEqual(['apply vm-2', 'reconcile']);
      expect(said).toContain('VM "vm-1": error: libvirt said no [start-up]');
      expect(said).toContain('VM "vm-2": changed (x) [start-up]');
      // The next event tries the failed one again (its network may have started since) — and only it.
      said.length = 0;
      actions.length = 0;
      own.find((p) => p.argv.includes('net-event'))?.stdout("event 'lifecycle' for network default: Started\n");
      for (const end = Date.now() + 3000; !said.some((l) => l.startsWith('VM "vm-1": error')) && Date.now() < end;) await sleep(10);
      await failing.idle();
      expect(said.filter((l) => l.startsWith('VM '))).toEqual(['VM "vm-1": error: libvirt said no [1 network event (Started)]']);
      expect(actions).toEqual(['reconcile']);
    } finally {
      await failing.stop();
    }
  });
});

// `virtwire watch`: the define-time engine driven by libvirt's events and by
// edits of the templates, for VMs nobody runs `virtwire apply` for (the
// virt-manager path). Events are triggers only: every sync re-reads the
// domains by UUID from libvirt and acts on what changed since the last one.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LibvirtClient, type Domain } from '../libvirt/client.js';
import { LibvirtEvents, type EventTrigger } from '../libvirt/events.js';
import { loadConfig } from '../policy/config.js';
import { formatProblem } from '../policy/yaml-doc.js';
import type { TemplateSet } from '../policy/load.js';
import { makeContext, type HookContext } from '../engine/context.js';
import { configCacheFile } from '../engine/reserve.js';
import { reconcile, teardownVm } from '../engine/lifecycle.js';
import { hostSockets } from '../host/listening.js';
import type { Runner } from '../host/run.js';
import { Log } from '../log.js';
import { errorMessage, quoted } from '../errors.js';
import type { Paths } from '../paths.js';
import { applyDomain } from './apply-domain.js';
import { releaseGone } from './allocations.js';
import { templatesOf } from './reservations.js';
import { writeWatchState, type WatchState } from '../state/watch-state.js';
import { PrepareServer } from '../hooks/prepare-server.js';
import { NftSession } from '../host/nft-session.js';
import { FirewallMonitor, type FirewallMonitorOptions } from './firewall-monitor.js';
import { holdLocksThroughHelpers, lockAhead } from '../state/lock.js';
import { Ledger } from '../state/ledger.js';
import { handleQemuHook, refusalLine } from '../hooks/qemu-handler.js';
import { pluginFiles } from '../bindings/plugins.js';
import { setFlagsFromString } from 'node:v8';
import { REFUSED_HOOK_FIX, networkHookFile, switchNetworkHook } from '../host/network-hook-switch.js';
import { xtablesVariant } from '../host/libvirt-firewall.js';

/** Template and virtwire.yaml edits come in bursts (an editor writes, renames, chmods): one reload per burst. */
const FILE_DEBOUNCE_MS = 300;

export interface WatcherOptions {
  uri: string;
  paths: Paths;
  run: Runner;
  /** One line per action (stdout: the journal under systemd). */
  say: (line: string) => void;
  /**
   * Serve the qemu hook's `prepare` (hooks/qemu hands it over: no Node
   * start-up per VM start). Only with the hooks' own paths: a prepare must
   * read what the hook would.
   */
  servePrepare?: boolean;
  /** For tests: the event source's options (timings, a spawner replaying recorded streams). */
  events?: ConstructorParameters<typeof LibvirtEvents>[1];
  /** For tests: the firewall monitor's options (its nft, a spawner replaying recorded output, timings). */
  firewall?: FirewallMonitorOptions;
  /** For tests: what the watcher does, at the libvirt and host boundary. */
  deps?: Partial<WatcherDeps>;
}

/** The watcher's effects, at the libvirt and host boundary: real by default, recorded in unit tests. */
export interface WatcherDeps {
  newClient: () => LibvirtClient;
  applyDomain: (client: LibvirtClient, d: Domain, templates: TemplateSet) => Promise<string[]>;
  releaseGone: (client: LibvirtClient, say: (line: string) => void) => Promise<unknown>;
  reconcileHost: () => Promise<{ notes: string[]; unresolved: string[] }>;
  /** Whether nft sees libvirt's firewall rules (no iptables-legacy): `nft monitor` then sees libvirt rebuild them. */
  nftSeesLibvirtFirewall: () => boolean;
}

export class Watcher {
  private readonly log: Log;
  private client: LibvirtClient;
  private readonly events: LibvirtEvents;
  /** What each domain looked like at the last sync (persistent XML and state): only a change is worth an apply. */
  private readonly seen = new Map<string, string>();
  /** The last templates that were all valid; undefined until one such set was read. */
  private templates: TemplateSet | undefined;
  private work: Promise<void> = Promise.resolve();
  private readonly fileWatchers: FSWatcher[] = [];
  private fileTimer: ReturnType<typeof setTimeout> | undefined;
  private ctx: HookContext | undefined;
  private readonly state: WatchState;
  private readonly deps: WatcherDeps;
  private prepareServer: PrepareServer | undefined;
  /** This watcher serves the hooks (it holds the channel's lock): only then does it switch the network hook. */
  private serving = false;
  /** Connected to libvirt, with a full sync done since. */
  private connected = false;
  private stopping = false;
  /** Why the network hook could not be switched, said once until it changes. */
  private hookRefusal: string | undefined;
  /** The nft that served prepares and teardowns run their scripts through (started on first use). */
  private readonly nft: NftSession;
  /** libvirt's firewall chains changed under virtwire (a daemon reload): the host is reconciled. */
  private readonly firewall: FirewallMonitor;

  constructor(private readonly o: WatcherOptions) {
    this.log = new Log(o.paths.logFile, 'watch');
    this.nft = new NftSession(join(o.paths.runDir, 'nft-session.nft'));
    this.deps = {
      newClient: () => new LibvirtClient({ uri: o.uri }),
      applyDomain: (client, d, templates) => applyDomain(client, o.paths, () => this.context(), templates, d),
      releaseGone: (client, say) => releaseGone(client, o.paths, say),
      reconcileHost: () => reconcile(this.context()),
      nftSeesLibvirtFirewall: () => xtablesVariant('iptables') !== 'other' && xtablesVariant('ip6tables') !== 'other',
      ...o.deps,
    };
    this.client = this.deps.newClient();
    this.firewall = new FirewallMonitor(
      () => this.enqueue('libvirt firewall changed', () => this.reconcileHost('libvirt\'s firewall rules changed')),
      { say: (line) => this.note(line, true), stateChanged: () => this.coverNetworkHook('nft monitor stopped'), ...o.firewall },
    );
    this.state = { pid: process.pid, startedAt: new Date().toISOString(), connected: false };
    this.events = new LibvirtEvents({
      connected: () => this.enqueue('start-up', () => this.fullSync('start-up')),
      reconnected: () => this.enqueue('reconnect', () => this.fullSync('reconnected to libvirt')),
      disconnected: (why) => {
        // First: a libvirtd starting now must find its network hook armed (see coverNetworkHook).
        this.connected = false;
        this.coverNetworkHook('lost libvirt');
        this.note(`lost libvirt: ${why}; reconnecting`);
        this.setState({ connected: false });
      },
      retrying: (why, ms) => this.note(`libvirt not reachable (${why}); trying again in ${Math.round(ms / 100) / 10} s`),
      sync: (triggers) => this.enqueue('event', async () => {
        await this.sync(triggerText(triggers));
        // A network (re)started: what the network hook does, which this watcher stands down while
        // it covers it (reconcile withdraws what a network no longer fits, too); this also mends
        // what a hook could not.
        if (triggers.some((t) => t.kind === 'network')) await this.reconcileHost();
      }),
      handlerError: (err) => this.note(`error: ${errorMessage(err)}`, true),
    }, { uri: o.uri, ...o.events });
  }

  start(): void {
    this.reloadFiles('start-up');
    this.watchFiles();
    this.setState({});
    this.events.start();
    this.firewall.start();
    this.note(`watching libvirt at ${this.o.uri} and ${this.o.paths.templatesDir}`);
    if (this.o.servePrepare) {
      // V8 drops the bytecode of functions idle for a few major GCs, and the
      // code they were optimized to with it: on a host where VMs start now and
      // then, each start would pay for compiling the served prepare again.
      setFlagsFromString('--no-flush-bytecode');
      this.servePrepare();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.coverNetworkHook('the watcher is stopping');
    await this.prepareServer?.stop();
    this.firewall.stop();
    this.nft.close();
    if (this.o.servePrepare) holdLocksThroughHelpers(false);
    for (const w of this.fileWatchers) w.close();
    clearTimeout(this.fileTimer);
    await this.events.stop();
    await this.work.catch(() => undefined);
    await this.client.close();
  }

  /** Waits for the work queued so far (tests). */
  idle(): Promise<void> {
    return this.work;
  }

  /**
   * The qemu hook's prepare, run here by the hook's own handler on a fresh
   * hook context per request; with plugins installed the hook runs Node
   * itself (it loads them afresh on every run; this process loads them once).
   * Locks go through long-lived helpers from then on (state/lock.ts).
   */
  private servePrepare(): void {
    const { paths } = this.o;
    holdLocksThroughHelpers();
    const server = new PrepareServer({
      runDir: paths.runDir,
      prepare: (xml, early) => {
        const ctx = this.hookContext();
        return handleQemuHook(ctx, [domainNameIn(xml), 'prepare', 'begin', '-'], () => Promise.resolve(xml), {
          claimed: (uuid) => early.claimed(uuid),
          settled: (refusal) => early.settled(refusal === undefined ? undefined : refusalLine(ctx, refusal)),
        });
      },
      teardown: (uuid, op) => teardownVm(this.hookContext(), uuid, op),
      lockAhead: () => lockAhead(new Ledger(paths.runDir).lockFile),
      mustRunNode: () => pluginFiles(paths.pluginsDir).length > 0,
      log: this.log,
    });
    this.prepareServer = server;
    server.start().then(
      (serving) => {
        if (!serving) return;
        this.note(`serving the qemu hook's prepare and teardowns (${paths.runDir}/prepare): a VM start runs no Node`);
        this.serving = true;
        this.coverNetworkHook('');
      },
      (err: unknown) => this.note(`cannot serve the qemu hook's prepare (${errorMessage(err)}); the hook runs Node for it`, true),
    );
  }

  private note(line: string, isError = false): void {
    this.o.say(line);
    if (isError) this.log.error(line);
    else this.log.info(line);
  }

  private setState(change: Partial<WatchState>): void {
    Object.assign(this.state, change);
    writeWatchState(this.o.paths.runDir, this.state);
  }

  /**
   * One thing at a time: syncs, reloads and reconciles never overlap. A failure is logged, never fatal.
   * After each, the network hook is looked at again: a reinstall (install.sh writes it armed) or a
   * hand's chmod is put back to what this watcher's state says.
   */
  private enqueue(what: string, job: () => Promise<void>): void {
    this.work = this.work.then(job).catch((err: unknown) => this.note(`${what}: error: ${errorMessage(err)}`, true))
      .then(() => this.coverNetworkHook(''));
  }

  /** A fresh context for one served hook operation, as the hook's own run would make, with the long-lived nft. */
  private hookContext(): HookContext {
    return { ...makeContext(this.o.paths, this.o.run, { hostSockets: () => hostSockets() }, 'qemu-hook'), nft: this.nft };
  }

  private context(): HookContext {
    return (this.ctx ??= { ...makeContext(this.o.paths, this.o.run, { hostSockets: () => hostSockets() }, 'watch'), nft: this.nft });
  }

  /** Start-up and after every reconnect: every domain applied, what undefined ones held released, the host made to match the ledger. */
  private async fullSync(why: string): Promise<void> {
    // A restarted daemon ended the client's virsh: start afresh.
    await this.client.close().catch(() => undefined);
    this.client = this.deps.newClient();
    this.seen.clear();
    await this.sync(why);
    // Domains undefined while the watcher was away give back what they held.
    await this.deps.releaseGone(this.client, (line) => this.note(line.trimEnd()));
    await this.reconcileHost();
    this.setState({ connected: true, lastReconcile: new Date().toISOString() });
    this.connected = true;
    this.coverNetworkHook('');
  }

  /**
   * Stands virtwire's network hook down while this watcher covers what it
   * does — it serves (one watcher does), follows libvirt (whose network
   * events it reconciles on) and runs `nft monitor` on libvirt's chains,
   * which nft sees (not iptables-legacy) — and arms it whenever one of those
   * stops: `why` says which, for the log. libvirt then forks no hook for a
   * VM NIC's port-created and port-deleted. See host/network-hook-switch.ts.
   * Only the serving watcher touches the file.
   */
  private coverNetworkHook(why: string): void {
    try {
      this.setNetworkHook(why);
    } catch (err) {
      // Never in the way of the queue or a handler.
      this.o.say(`network hook: ${errorMessage(err)}`);
    }
  }

  private setNetworkHook(why: string): void {
    if (!this.serving) return;
    const covering = !this.stopping && this.connected && this.firewall.running && this.deps.nftSeesLibvirtFirewall();
    const file = networkHookFile(this.o.paths.libvirtHooksDir);
    const r = switchNetworkHook(file, !covering);
    if (r === 'stood down') {
      this.hookRefusal = undefined;
      this.note(`network hook ${file} stood down (mode 0644) while this watcher covers network starts and updates: libvirt runs it for no VM start or destroy`);
    } else if (r === 'armed') {
      this.note(`network hook ${file} armed again (mode 0755): ${why || 'this watcher no longer covers it'}`);
    } else if (typeof r === 'object' && r.refused !== this.hookRefusal) {
      this.hookRefusal = r.refused;
      this.note(`network hook ${file} left as it is (${r.refused}): libvirt runs it for every VM start and destroy; ${REFUSED_HOOK_FIX}`, !covering);
    }
  }

  /** The host made to match the ledger; what it did is noted after `why`. */
  private async reconcileHost(why = 'reconcile'): Promise<void> {
    const { notes, unresolved } = await this.deps.reconcileHost();
    for (const n of notes) this.note(`${why}: ${n}`);
    for (const u of unresolved) this.note(`${why}: error: ${u}`, true);
  }

  /** Applies every domain whose definition or state changed since the last sync (all with `force`); releases what vanished. */
  private async sync(why: string, force = false): Promise<void> {
    const templates = this.templates;
    if (!templates) return; // no valid templates yet: nothing to act on
    const domains = await this.client.listDomains();
    const keyOf = async (d: Domain): Promise<string> => `${d.state}\n${await this.client.domainXml(d.uuid, { inactive: d.persistent })}`;
    for (const d of domains) {
      // Undefined since the list was read: the next sync releases it.
      const key = await keyOf(d).catch(() => undefined);
      if (key === undefined || (!force && this.seen.get(d.uuid) === key)) continue;
      const result = await this.applyOne(d, templates, why);
      // A failure is tried again at the next sync (a network started, say); after a change, what it
      // looks like now is remembered, so the Defined event of the watcher's own define is a no-op.
      if (result === 'failed') this.seen.set(d.uuid, '');
      else this.seen.set(d.uuid, result === 'changed' ? (await keyOf(d).catch(() => key)) : key);
    }
    const gone = [...this.seen.keys()].filter((u) => !domains.some((d) => d.uuid === u));
    if (gone.length) {
      for (const u of gone) this.seen.delete(u);
      await this.deps.releaseGone(this.client, (line) => this.note(line.trimEnd()));
    }
  }

  /** Applies one domain. A failure is logged, never thrown. */
  private async applyOne(d: Domain, templates: TemplateSet, why: string): Promise<'changed' | 'unchanged' | 'failed'> {
    const vm = `VM ${quoted(d.name)}`;
    try {
      const changes = await this.deps.applyDomain(this.client, d, templates);
      if (changes.length) this.note(`${vm}: changed (${changes.join('; ')}) [${why}]`);
      return changes.length > 0 ? 'changed' : 'unchanged';
    } catch (err) {
      this.note(`${vm}: error: ${errorMessage(err)} [${why}]`, true);
      return 'failed';
    }
  }

  /**
   * Reads the templates and virtwire.yaml. All valid: they become the ones
   * in force. Any problem: each is logged with its file:line:column, and the
   * last good ones stay (nothing is re-applied from a broken edit).
   */
  private reloadFiles(why: string): boolean {
    let set: TemplateSet;
    try {
      // Through the hooks' parse cache: the first start after an edit does not parse the YAML on its
      // way (a 200-forward template: 15–70 ms here, against ~1.5 ms for a cache hit).
      set = templatesOf(this.o.paths, true);
      loadConfig(this.o.paths.configFile, configCacheFile(this.o.paths));
    } catch (err) {
      this.note(`${why}: ${errorMessage(err)}; keeping the last good templates and settings`, true);
      return false;
    }
    if (set.broken.length) {
      for (const b of set.broken) for (const p of b.problems) this.note(`${why}: ${formatProblem(p)}`, true);
      this.note(`${why}: ${set.broken.length} template(s) invalid; keeping the last good templates — fix them ("virtwire templates check" lists every problem)`, true);
      return false;
    }
    this.templates = set;
    return true;
  }

  private watchFiles(): void {
    const changed = (): void => {
      clearTimeout(this.fileTimer);
      this.fileTimer = setTimeout(() => this.enqueue('templates', async () => {
        if (this.reloadFiles('templates changed')) {
          this.note('templates changed: re-applying every domain');
          await this.sync('templates changed', true);
        }
      }), FILE_DEBOUNCE_MS);
    };
    const config = basename(this.o.paths.configFile);
    for (const [dir, only] of [[this.o.paths.templatesDir, undefined], [dirname(this.o.paths.configFile), config]] as const) {
      try {
        this.fileWatchers.push(watch(dir, (_event, name) => { if (!only || name === only) changed(); }));
      } catch (err) {
        this.note(`cannot watch ${dir} (${errorMessage(err)}); template edits there are picked up at the next libvirt event or restart`, true);
      }
    }
  }
}

/** The domain's name for the hook's log lines (its argv[0] when the hook runs Node). */
function domainNameIn(xml: string): string {
  return /<name>([^<]*)<\/name>/.exec(xml)?.[1] ?? '?';
}

/** "2 domain events (Defined, Started), 1 network event" — for the log. */
function triggerText(triggers: readonly EventTrigger[]): string {
  const part = (kind: EventTrigger['kind']): string | undefined => {
    const mine = triggers.filter((t) => t.kind === kind);
    if (!mine.length) return undefined;
    const verbs = [...new Set(mine.map((t) => t.lifecycle ?? t.event))];
    return `${mine.length} ${kind} event${mine.length > 1 ? 's' : ''} (${verbs.join(', ')})`;
  };
  return [part('domain'), part('network')].filter(Boolean).join(', ') || 'events';
}

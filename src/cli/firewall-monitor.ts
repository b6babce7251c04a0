// The watcher's eye on libvirt's firewall chains: one long-lived
// `nft monitor rules`, which reports every rule added or deleted on the host.
//
// Why: libvirt 11 (nftables backend) rebuilds its networks' rules on a reload
// of the daemon (SIGHUP, `systemctl reload libvirtd`), ahead of virtwire's
// accept in guest_input, and runs no network hook for it (LIBVIRT-NOTES.md).
// Every running VM's forwards are then rejected until the accept is first
// again. A change to those chains that virtwire did not make is reported
// here, once per burst; the watcher then reconciles the host. Only libvirt's
// chains count, never virtwire's own table: a VM's start or destroy changes
// that, and must not cost a reconcile.
import { spawnEventProcess, type EventProcess, type EventSpawner } from '../libvirt/events.js';
import { isVirtwireAcceptRule } from '../host/libvirt-firewall.js';

/** `add|insert|replace|delete rule FAMILY TABLE CHAIN …` on a chain holding virtwire's accept, and the rest of the line. */
const LIBVIRT_CHAIN_RULE = /^(?:add|insert|replace|delete) rule (?:ip|ip6) (?:libvirt_network guest_input|filter FORWARD) (.*)$/;

/**
 * Whether a line of `nft monitor rules` is a change to a libvirt firewall
 * chain that virtwire may have to answer: any rule added there but
 * virtwire's own accept, any rule deleted (a deletion names only a handle:
 * it may be virtwire's, whose reconcile then finds all in place).
 */
export function libvirtChainChange(line: string): boolean {
  const m = LIBVIRT_CHAIN_RULE.exec(line);
  if (!m) return false;
  if (line.startsWith('delete ')) return true;
  return !isVirtwireAcceptRule((m[1] as string).replace(/ # handle \d+$/, ''));
}

export interface FirewallMonitorOptions {
  /** How to run nft (default ['nft']; a test runs it in its netns). */
  nft?: readonly string[];
  /** For tests: what starts the monitor process. */
  spawn?: EventSpawner;
  /** Time from the first change of a burst to its report: libvirt rewrites its rules in one burst. */
  settleMs?: number;
  /** Wait before starting a monitor that ended or could not start again. */
  retryMs?: number;
  /** Where a monitor that ended is told (at most once in ten minutes). */
  say?: (line: string) => void;
  /** Called when the monitor process starts or ends (see `running`). */
  stateChanged?: () => void;
}

const SAY_EVERY_MS = 10 * 60_000;

export class FirewallMonitor {
  private proc: EventProcess | undefined;
  private stopped = true;
  private partial = '';
  private settleTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private lastSaid = -Infinity;
  private readonly o: Required<Omit<FirewallMonitorOptions, 'say' | 'stateChanged'>> & Pick<FirewallMonitorOptions, 'say' | 'stateChanged'>;

  /** `changed`: called once per burst of changes to libvirt's chains, and when a monitor that ended runs again. */
  constructor(private readonly changed: () => void, options: FirewallMonitorOptions = {}) {
    this.o = { nft: ['nft'], spawn: spawnEventProcess, settleMs: 300, retryMs: 5_000, ...options };
  }

  start(): void {
    this.stopped = false;
    this.spawnMonitor(false);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.settleTimer);
    clearTimeout(this.retryTimer);
    this.settleTimer = undefined;
    this.proc?.kill();
    this.proc = undefined;
  }

  /** Whether an `nft monitor` runs now: libvirt's chains are watched. */
  get running(): boolean {
    return this.proc !== undefined;
  }

  private spawnMonitor(again: boolean): void {
    if (this.stopped) return;
    const proc = this.o.spawn(this.o.nft, ['monitor', 'rules']);
    this.proc = proc;
    this.partial = '';
    // Up again after it ended: whatever changed meanwhile went unseen.
    if (again) this.soon();
    proc.onStdout((chunk) => this.lines(chunk.toString('utf8')));
    proc.onStderr(() => undefined);
    this.o.stateChanged?.();
    proc.onExit((why) => {
      if (this.proc !== proc || this.stopped) return;
      this.proc = undefined;
      this.o.stateChanged?.();
      if (Date.now() - this.lastSaid >= SAY_EVERY_MS) {
        this.lastSaid = Date.now();
        this.o.say?.(`nft monitor ended (${why}): libvirt's firewall chains go unwatched until it runs again; trying every ${this.o.retryMs / 1000} s`);
      }
      this.retryTimer = setTimeout(() => this.spawnMonitor(true), this.o.retryMs);
    });
  }

  private lines(text: string): void {
    const all = (this.partial + text).split('\n');
    this.partial = all.pop() ?? '';
    if (all.some(libvirtChainChange)) this.soon();
    // A line that long is no rule nft printed: dropped.
    if (this.partial.length > 1 << 20) this.partial = '';
  }

  /** Reports settleMs after the first change of a burst; a change after the report starts the next. */
  private soon(): void {
    if (this.settleTimer) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      if (!this.stopped) this.changed();
    }, this.o.settleMs);
  }
}

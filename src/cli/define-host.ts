// What define-time rewriting asks of the daemon and the host, read once per
// run (or per hold of the reservation lock) and only when a template needs it.
import type { LibvirtClient } from '../libvirt/client.js';
import type { Runner } from '../host/run.js';
import type { HostFacts } from '../bindings/types.js';
import { hostFacts } from '../host/links.js';

export class DefineHost {
  private version: Promise<number> | undefined;
  private facts: Promise<HostFacts> | undefined;
  private withOvs = false;
  private withBackends = false;

  constructor(private readonly client: LibvirtClient, private readonly run: Runner, private readonly sysRoot = '/sys') {}

  /** The daemon's libvirt version (encoded): which XML it takes. */
  libvirtVersion(): Promise<number> {
    return (this.version ??= this.client.daemonVersion());
  }

  /**
   * The host's links; Open vSwitch's bridges when `need.ovs`, the daemon's
   * interface backends when `need.backends` (each asked the first time a
   * template needs it).
   */
  hostFacts(need: { ovs: boolean; backends: boolean }): Promise<HostFacts> {
    if (!this.facts || (need.ovs && !this.withOvs) || (need.backends && !this.withBackends)) {
      this.withOvs ||= need.ovs;
      this.withBackends ||= need.backends;
      const backends = this.withBackends ? this.client.netBackendTypes() : Promise.resolve(undefined);
      this.facts = backends.then((b) => hostFacts(this.run, this.sysRoot, this.withOvs, b));
    }
    return this.facts;
  }
}

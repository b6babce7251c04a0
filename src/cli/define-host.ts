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

  constructor(private readonly client: LibvirtClient, private readonly run: Runner, private readonly sysRoot = '/sys') {}

  /** The daemon's libvirt version (encoded): which XML it takes. */
  libvirtVersion(): Promise<number> {
    return (this.version ??= this.client.daemonVersion());
  }

  /** The host's links, and Open vSwitch's bridges when `ovs` (asked again the first time a template needs them). */
  hostFacts(ovs: boolean): Promise<HostFacts> {
    if (!this.facts || (ovs && !this.withOvs)) {
      this.withOvs ||= ovs;
      this.facts = hostFacts(this.run, this.sysRoot, this.withOvs);
    }
    return this.facts;
  }
}

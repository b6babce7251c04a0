// What define-time rewriting asks of the daemon and the host, read once per
// run (or per hold of the reservation lock) and only when a template needs it.
import type { LibvirtClient } from '../libvirt/client.js';
import type { Runner } from '../host/run.js';
import type { HostFacts } from '../bindings/types.js';
import { hostFacts } from '../host/links.js';
import { pciDevicesOf } from '../xml/domain.js';
import type { PciHolder } from '../engine/vf-allocate.js';

export class DefineHost {
  private version: Promise<number> | undefined;
  private facts: Promise<HostFacts> | undefined;
  private withOvs = false;
  private withBackends = false;
  private usage: Promise<Map<string, PciHolder>> | undefined;

  constructor(private readonly client: LibvirtClient, private readonly run: Runner, private readonly sysRoot = '/sys') {}

  /**
   * The PCI devices every domain hands its guest — in its definition and, if
   * it runs, its live XML — by address: a VF any domain names is taken. Read
   * once (one dumpxml per domain); VFs given out meanwhile are noted in it.
   */
  pciUsage(): Promise<Map<string, PciHolder>> {
    return (this.usage ??= (async () => {
      const used = new Map<string, PciHolder>();
      for (const d of await this.client.listDomains()) {
        const xmls = [
          ...(d.persistent ? [await this.client.domainXml(d.uuid, { inactive: true })] : []),
          ...(d.state === 'running' || d.state === 'paused' ? [await this.client.domainXml(d.uuid)] : []),
        ];
        for (const pci of xmls.flatMap(pciDevicesOf)) if (!used.has(pci)) used.set(pci, { uuid: d.uuid, name: d.name });
      }
      return used;
    })());
  }

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

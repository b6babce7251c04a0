// Define time: which VF of a PF a NIC gets (binding sriov). Pure over the
// PF's inventory (sysfs) and the PCI devices every domain already names.
import type { DomainInfo } from '../xml/domain.js';
import type { RewriteEnv } from '../bindings/types.js';
import type { HostFacts, PciVf } from '../model/host.js';
import { UserError, quoted as q } from '../errors.js';

/** Who holds a PCI device: a domain by UUID and name. */
export interface PciHolder { uuid: string; name: string }

/**
 * Gives a NIC of `domain` a VF of a PF: the one it has while no other
 * domain names it, else the lowest one no domain names; noted as taken, so
 * the next VM of a run sees it. None free: one line naming the holders and
 * the fix.
 */
export function vfAllocator(domain: DomainInfo, facts: HostFacts, usage: Map<string, PciHolder>): NonNullable<RewriteEnv['allocateVf']> {
  // VFs given to this domain's NICs in this run: its own definition names them all, so that alone cannot tell its NICs apart.
  const givenNow = new Set<string>();
  return (pf, current): PciVf => {
    const inv = facts.sriov(pf);
    if (typeof inv === 'string') throw new UserError(`VM ${q(domain.name)}: ${inv}`);
    const freeFor = (pci: string): boolean => { const h = usage.get(pci); return (!h || h.uuid === domain.uuid) && !givenNow.has(pci); };
    const vf = inv.vfs.find((v) => v.pci === current && freeFor(v.pci)) ?? inv.vfs.find((v) => freeFor(v.pci));
    if (!vf) {
      const holders = [...new Set(inv.vfs.map((v) => usage.get(v.pci)?.name).filter((n): n is string => n !== undefined))];
      throw new UserError(`VM ${q(domain.name)}: all ${inv.vfs.length} enabled VFs of ${pf} are in use (by ${holders.map(q).join(', ')}); enable more (up to ${inv.totalVfs}: /sys/class/net/${pf}/device/sriov_numvfs) or free one`);
    }
    usage.set(vf.pci, { uuid: domain.uuid, name: domain.name });
    givenNow.add(vf.pci);
    return vf;
  };
}

import type { PortRange } from './ports.js';

export type Proto = 'tcp' | 'udp';

/**
 * One forward, fully resolved for one address family: everything the nft
 * table needs, and enough to explain it. Stored in the ledger, so it must be
 * plain JSON and self-contained (cleanup never re-reads templates).
 */
export interface ResolvedForward {
  family: 4 | 6;
  proto: Proto;
  /** Host address to listen on; undefined = every host address. */
  listen?: string;
  host: PortRange;
  guestAddr: string;
  guest: PortRange;
  /** Source allow-list (CIDR texts of this family); empty = any source. */
  from: string[];
  /** Subnet of the guest's network, for hairpin masquerade. */
  guestSubnet: string;
  nic: string;
  network: string;
  /** Where the forward was asked for: "file:line:col" or "domain metadata". */
  origin: string;
  description?: string;
  allowHostConflict: boolean;
}

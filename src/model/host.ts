// Shapes of host state, shared by the drivers that read or change it (host/)
// and the planning that reasons about it (plan/).

/** A libvirt firewall chain that holds virtwire's accept: which backend, which family. */
export type AcceptTarget = { backend: 'iptables' | 'nftables'; family: 4 | 6 };

/** A socket the host itself listens on (TCP LISTEN, or a bound UDP socket). */
export interface HostSocket {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  address: string;
  port: number;
}

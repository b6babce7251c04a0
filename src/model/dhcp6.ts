// What a DHCPv6 host reservation is keyed by: the client's DUID (dnsmasq
// hands the address to it) and a host name (virtwire finds a domain's IPv6
// reservation by name=, libvirt's IPv6 <host> having no MAC).

/**
 * DUID-LL of a MAC (RFC 8415 type 3, hardware type 1 = Ethernet): what
 * busybox udhcpc6 sends as its client id.
 */
export function duidLL(mac: string): string {
  return `00:03:00:01:${mac.toLowerCase()}`;
}

/**
 * The MAC a DUID is built from: DUID-LL (type 3) or DUID-LLT (type 1, a
 * 4-byte time before the MAC), Ethernet. Undefined for the other types
 * (DUID-EN, DUID-UUID: systemd-networkd's and others' defaults), which no
 * MAC can be derived from.
 */
export function macOfDuid(duid: string): string | undefined {
  const d = duid.toLowerCase();
  const m = /^00:03:00:01:((?:[0-9a-f]{2}:){5}[0-9a-f]{2})$/.exec(d) ?? /^00:01:00:01:(?:[0-9a-f]{2}:){4}((?:[0-9a-f]{2}:){5}[0-9a-f]{2})$/.exec(d);
  return m?.[1];
}

/**
 * Why `name` cannot be a DHCPv6 <host name=…> that works, or undefined.
 * libvirt refuses a host name that does not start with a letter; libvirt
 * writes the name into dnsmasq's hosts file as one comma-separated field
 * (a comma would start another field), and dnsmasq drops a line whose name
 * is not a legal host name (letters, digits, - and _, not first; a dot
 * starts a domain part dnsmasq may strip). So: a letter, then letters,
 * digits, - and _, 63 characters at most (one DNS label).
 */
export function dhcpHostNameProblem(name: string): string | undefined {
  return /^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(name) ? undefined
    : 'is not a host name libvirt and dnsmasq accept in a DHCPv6 reservation (a letter, then letters, digits, "-" and "_", at most 63 characters)';
}

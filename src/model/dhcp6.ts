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

/** A host name dnsmasq takes (legal_hostname, check_name): labels of letters, digits, - and _, the first starting with a letter or digit. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_-]{1,63})*$/;
/** Fields dnsmasq reads as something else than a name in a dhcp-host line: a lease time, a keyword, an IPv4 address. */
const DNSMASQ_FIELD = /^(?:\d+[smhdw]?|infinite|ignore|deprecated|[\d.]+)$/i;

/**
 * Why `name` cannot be the name= of a DHCPv6 <host> that works, or
 * undefined. libvirt checks little (9.0 and 11.3 took "a,b", "my vm", 'a"b'
 * and "a$b", refused "é1") and writes the name as one field of a
 * comma-separated dnsmasq hosts-file line (`id:DUID,NAME,[IP]`): a comma
 * starts another field (a VM named "x,ignore" would switch its own
 * reservation off), a name such as "7d" or "ignore" is read as a lease time
 * or keyword, and dnsmasq refuses the line ("bad DHCP host name", dnsmasq
 * 2.90 --test) for a space, a quote, "$", a leading "-" or "_", a label over
 * 63 characters.
 */
export function dhcpHostNameProblem(name: string): string | undefined {
  return HOST_NAME.test(name) && !DNSMASQ_FIELD.test(name) ? undefined
    : 'is not a host name dnsmasq takes in a DHCPv6 reservation (labels of letters, digits, "-" and "_", at most 63 characters each, not starting with "-" or "_"; not a number, a lease time or an address)';
}

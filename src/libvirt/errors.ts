// Typed errors of the virsh client, mapped from virsh's own `error: …` lines
// (virsh runs with LC_ALL=C, so they are libvirt's untranslated messages).
// Checked against virsh 9.0 (Debian 12) and 11.3 (Debian 13): see the e2e
// test test/e2e/libvirt-client.test.ts.
import { oneLine } from '../errors.js';

export type LibvirtErrorKind =
  /** No domain with that UUID (virsh: "failed to get domain '…'", "Domain not found"). */
  | 'no-domain'
  /** No network with that UUID ("failed to get network '…'", "Network not found"). */
  | 'no-network'
  /** The domain has no metadata element in that namespace (virsh 9; virsh 11 prints nothing instead). */
  | 'no-metadata'
  /** libvirtd unreachable, or the connection (or the virsh process) was lost during the call. */
  | 'connection'
  /** The call ran out of its time bound (virsh was killed), or libvirt's own "Timed out during operation". */
  | 'timeout'
  /** libvirt rejected the XML: not well-formed, not valid, or an XML error in its content. */
  | 'invalid-xml'
  /** libvirt refused the operation in this state ("Requested operation is not valid": a duplicate DHCP host, none to modify…). */
  | 'invalid-operation'
  /** An argument virsh cannot carry at all (a NUL, a lone UTF-16 surrogate) or not a UUID where one is required. */
  | 'invalid-argument'
  | 'other';

export class LibvirtError extends Error {
  override name = 'LibvirtError';
  constructor(
    readonly kind: LibvirtErrorKind,
    /** What virsh (or the client) said, `error: ` prefixes removed; may span lines. */
    readonly virshMessage: string,
    /** The virsh command and its arguments (without the connection options). */
    readonly command: readonly string[],
    /**
     * For a call that changes something and was cut off (timeout, virsh or
     * libvirtd gone mid-call): it may or may not have been applied. Re-read
     * before retrying.
     */
    readonly mayHaveApplied = false,
  ) {
    super(`virsh ${command[0] ?? '?'}: ${oneLine(virshMessage.split('\n').filter((l) => l.trim()).slice(0, 3).join(' | ')) || kind}${mayHaveApplied ? ' (it may or may not have been applied)' : ''}`);
  }
}

const ERROR_PREFIX = 'error: ';

/**
 * Lines virsh prints on stderr about its connection, not about the command
 * that happens to be running: the close callback's "Disconnected from URI due
 * to end of file" (asynchronous, printed by virsh's event loop thread) and
 * "Reconnected to the hypervisor" (printed before the next command, which then
 * runs normally). Both are printed as `error: ` lines.
 */
const NOTICE = /^error: (Disconnected from .* due to .*|Reconnected to the hypervisor)$/;

export function isConnectionNotice(line: string): boolean {
  return NOTICE.test(line);
}

/** virsh's stderr without the `error: ` prefixes (continuation lines of a multi-line message kept). */
export function virshMessage(stderr: string): string {
  return stderr
    .replace(/\n+$/, '')
    .split('\n')
    .map((l) => (l.startsWith(ERROR_PREFIX) ? l.slice(ERROR_PREFIX.length) : l))
    .join('\n');
}

/** True when stderr holds a line virsh prints for a failure (`error: …`, connection notices excluded). */
export function hasErrorLine(stderr: string): boolean {
  return stderr.split('\n').some((l) => l.startsWith(ERROR_PREFIX) && !isConnectionNotice(l));
}

const CONNECTION = [
  /failed to connect to the hypervisor/i,
  /Failed to reconnect to the hypervisor/,
  /Failed to connect socket/,
  /no valid connection/,
  /Cannot recv data/,
  /Cannot write data/,
  /End of file while reading data/,
  /client socket is closed/,
  /Disconnected from .* due to/,
  /keepalive timeout/,
  /Connection reset by peer/,
  /Broken pipe/,
];
/** libxml2's parser errors: "(domain_definition):2: …", "network_update_xml:1: …" (libvirt 9), "at line 2: …" (libvirt 11). */
const XML_PARSE = /^(\(\w+\)|\w+_xml|\w+_definition):\d+: |^at line \d+: /m;
const INVALID_XML = [
  /XML error: /,
  /failed to validate against schema/,
  XML_PARSE,
  /invalid char in name/,
  /unsupported configuration: /,
  /XML description for .* must contain/,
];

/** The kind of a failure, from virsh's message (LC_ALL=C). Connection trouble wins over "not found". */
export function classify(message: string): LibvirtErrorKind {
  if (CONNECTION.some((re) => re.test(message))) return 'connection';
  if (/Timed out during operation/.test(message)) return 'timeout';
  if (/^failed to get domain '|Domain not found/m.test(message)) return 'no-domain';
  if (/^failed to get network '|Network not found/m.test(message)) return 'no-network';
  if (/metadata not found/.test(message)) return 'no-metadata';
  if (INVALID_XML.some((re) => re.test(message))) return 'invalid-xml';
  if (/Requested operation is not valid/.test(message)) return 'invalid-operation';
  return 'other';
}

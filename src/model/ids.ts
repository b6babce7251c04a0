// Identifier shapes shared by every layer.

/** A libvirt UUID as libvirt prints it (lower case). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A MAC address, lower case (libvirt's <mac address>). */
export const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** A template's name (its file name without .yaml): how domains opt in to it. */
export const TEMPLATE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A Linux network interface name (IFNAMSIZ is 16 with its NUL; no '/', ':' or whitespace). */
export const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** A libvirt network name virtwire writes or defines (libvirt itself only forbids '/'; this keeps names usable in commands and messages). */
export const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

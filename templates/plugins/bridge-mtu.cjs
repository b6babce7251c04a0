// Example virtwire plugin: binding "bridge-mtu" puts a NIC on a host bridge
// with a given MTU (jumbo frames on a storage bridge, say). Install it as
// /etc/virtwire/plugins/bridge-mtu.cjs, root-owned and not group/world-
// writable (as every directory up to /): virtwire loads nothing else.
// A template then says:
//
//   binding: bridge-mtu
//   bridgeMtu: {bridge: br-storage, mtu: 9000}
//
// Host work at start or stop, if a binding needs any, goes in its drop-ins:
// /etc/virtwire/hooks.d/bridge-mtu/{start,release} (README "Drop-in executables").
'use strict';

const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

module.exports = {
  apiVersion: 1,
  name: 'bridge-mtu',
  keys: ['bridgeMtu'],

  // values: the plain YAML values of this plugin's keys. Report each problem
  // on its key (virtwire adds file:line:column); return the settings (JSON).
  parse(values, problem) {
    const v = values.bridgeMtu;
    if (v === undefined) { problem('bridgeMtu', 'binding bridge-mtu needs bridgeMtu: {bridge: br0, mtu: 9000}'); return {}; }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) { problem('bridgeMtu', 'must be a mapping: {bridge: br0, mtu: 9000}'); return {}; }
    for (const k of Object.keys(v)) if (k !== 'bridge' && k !== 'mtu') problem('bridgeMtu', `unknown key "${k}"; allowed: bridge, mtu`);
    if (typeof v.bridge !== 'string' || !IFNAME.test(v.bridge)) problem('bridgeMtu', 'bridge must be a network interface name');
    if (!Number.isInteger(v.mtu) || v.mtu < 576 || v.mtu > 65535) problem('bridgeMtu', 'mtu must be a whole number from 576 to 65535');
    return { bridge: v.bridge, mtu: v.mtu };
  },

  // Define time, idempotent: the NIC's <interface> as this binding wants it.
  rewrite(nic, s) {
    nic.setType('bridge');
    nic.setSource({ bridge: s.bridge });
    nic.setElement('mtu', { size: String(s.mtu) });
    nic.removeElement('virtualport');
    nic.removeElement('vlan');
  },

  summary(s) {
    return `bridge ${s.bridge}, MTU ${s.mtu}`;
  },
};

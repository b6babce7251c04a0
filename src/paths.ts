/**
 * Where virtwire keeps things. Hooks always use the defaults (libvirt clears
 * the environment); the CLI and tests may point elsewhere.
 */
export interface Paths {
  configFile: string;
  templatesDir: string;
  runDir: string;
  logFile: string;
  /** libvirt's run-time state: qemu/NAME.xml domain status, network/NAME.xml live networks. */
  libvirtRunDir: string;
  /** libvirt's persistent state: dnsmasq/BRIDGE.status DHCP leases. */
  libvirtLibDir: string;
  /** virtwire's persistent state (kept across reboots): allocations.json, the define-time allocations. */
  stateDir: string;
  /** sysfs: the host's links and bridges (tests point it at a tree in a temp dir). */
  sysDir: string;
  /** Drop-in executables per binding: hooks.d/BINDING/{start,release}. */
  hooksDir: string;
  /** Third-party bindings: plugins/NAME.cjs. */
  pluginsDir: string;
  /** libvirt's hook scripts (qemu.d/, network.d/): the watcher stands the network hook down while it covers it. */
  libvirtHooksDir: string;
}

export const DEFAULT_PATHS: Paths = {
  configFile: '/etc/virtwire/virtwire.yaml',
  templatesDir: '/etc/virtwire/templates',
  runDir: '/run/virtwire',
  logFile: '/var/log/virtwire.log',
  libvirtRunDir: '/run/libvirt',
  libvirtLibDir: '/var/lib/libvirt',
  stateDir: '/var/lib/virtwire',
  sysDir: '/sys',
  hooksDir: '/etc/virtwire/hooks.d',
  pluginsDir: '/etc/virtwire/plugins',
  libvirtHooksDir: '/etc/libvirt/hooks',
};

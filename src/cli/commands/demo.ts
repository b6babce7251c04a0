import { defineCommand } from '../command.js';

export const command = defineCommand({
  name: 'demo',
  summary: `Show virtwire at work in a throwaway sandbox: a private libvirtd,
a tiny guest, and a request through a forwarded port. Needs root.`,
  usage: 'demo [--keep]',
  options: { keep: { type: 'boolean' } },
  optionHelp: { keep: "Keep the sandbox's files (logs, overlays) in /tmp afterwards." },
  help: `Shows virtwire at work without changing the host: starts a private libvirtd in its own
network, mount and PID namespaces, installs virtwire into it with its own install.sh, drops a
template, boots a tiny guest (a Debian kernel and busybox) with a plain "virsh start", and shows
a client in another namespace reaching the guest's web server through the host's port 8080 —
then the nftables state behind it, and that "virsh destroy" leaves nothing behind. About a
minute. Needs root, libvirt, QEMU and dnsmasq ("install.sh --with-deps" installs them); writes
only under /tmp and the guest-image cache in /var/cache/virtwire.`,
  examples: ['virtwire demo', 'virtwire demo --keep'],
  async run({ values, out }) {
    const { runDemo } = await import('../../demo/demo.js');
    return runDemo({ keep: values.keep === true, out });
  },
});

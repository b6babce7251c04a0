import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UserError } from '../../errors.js';
import { defineCommand } from '../command.js';
// Types only (erased): the demo's code is its own bundle, never part of virtwire.mjs.
import type { runDemo } from '../../demo/demo.js';

/** dist/demo.mjs, beside the running dist/virtwire.mjs (installed: /usr/local/lib/virtwire/dist). */
export function demoBundle(from: string = import.meta.url): string {
  return fileURLToPath(new URL('./demo.mjs', from));
}

/** Loads the demo bundle at run time (a computed path, so esbuild leaves it out of virtwire.mjs). */
export async function loadDemo(file: string = demoBundle()): Promise<typeof runDemo> {
  if (!existsSync(file)) {
    throw new UserError(`demo: ${file} is missing (the demo is its own bundle, installed beside virtwire.mjs); run virtwire's install.sh again, or "npm run build" in a checkout`);
  }
  const mod = (await import(pathToFileURL(file).href)) as { runDemo: typeof runDemo };
  return mod.runDemo;
}

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
    const runDemo = await loadDemo();
    return runDemo({ keep: values.keep === true, out });
  },
});

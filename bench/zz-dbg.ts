import { sandboxWithVirtwire } from '../test/e2e/support.js';
import { VM, keepVirtwireShims, sh, useWatcher } from './hook-cases.js';
const trixie = process.argv.includes('--trixie');
const { sb } = await sandboxWithVirtwire(trixie, { web: 'match: {domains: ["bench-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n' });
try {
  await sh(sb, `printf '#!/bin/sh\\necho "$(date +%%T.%%N) $*" >> /run/nethook.log\\n' > /etc/libvirt/hooks/network.d/00-log; chmod 755 /etc/libvirt/hooks/network.d/00-log; kill -HUP "$(cat /run/libvirtd.pid)"; sleep 1`);
  await useWatcher(sb, true);
  await sb.bootGuest(VM);
  const get = async () => sb.clientHttpGet(sb.hostAddress, 8080, 3000).then((t) => t.trim(), (e: Error) => `FAILED ${e.message}`);
  console.log('before', await get());
  await sh(sb, ': > /run/nethook.log; kill -HUP "$(cat /run/libvirtd.pid)"; sleep 3');
  console.log('after HUP', await get());
  console.log((await sh(sb, 'cat /run/nethook.log; nft list chain ip libvirt_network guest_input 2>&1; iptables -S FORWARD 2>&1 | head -5; tail -5 /var/log/virtwire.log')).stdout);
} finally { await sb.stop(); }

// Issue 9's hostile-input and fault proofs, against virtwire installed by its
// own install.sh in the sandbox, with a real libvirtd and a booted victim VM
// whose forward must keep answering through everything below — on Debian
// 12's libvirt 9 (iptables backend) and libvirt 11 in a Debian 13 root
// (nftables backend).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, skipE2e, sandboxWithVirtwire } from './support.js';
import { Sandbox, type GuestSpec } from '../../src/demo/sandbox.js';
import { guestLabel } from '../../src/demo/domain-xml.js';
import { recordFigure } from '../support/figures.js';


const NS = 'https://virtwire.dev/xmlns/domain/1';
const WEB = 'match: {domains: ["web-*"], networks: [default]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8080, guest: 80}\n';
const EVIL = 'match: {domains: ["evil-*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9001, guest: 80}\n';
const DEV = 'match: {optIn: true}\nbinding: nat\n';
const WEB1: GuestSpec = { name: 'web-1', mac: '52:54:00:e9:00:10', ip: '192.168.122.10' };
const ISO_NET = `<network><name>iso</name><bridge name='virbr9'/><ip address='10.99.0.1' prefix='24'/></network>`;


interface HostileCase {
  /** What an attacker (or an admin having a bad day) tries. */
  what: string;
  /** A domain the case defines and tries to start (name starts with evil- unless it opts in). */
  guest: GuestSpec;
  /** <wiring> children for the domain's virtwire metadata, set with `virsh metadata` as the README says. */
  metadata?: string;
  /** An extra template file the case drops (name, YAML). */
  template?: [string, string];
  /** The line `virsh start` must fail with (virtwire's one-line refusal). */
  refusal: string | RegExp;
}

const meta = (forwards: string) => `<template name="dev"/>${forwards}`;

const CASES: HostileCase[] = [
  {
    what: "a domain copying the running VM's MAC",
    guest: { name: 'evil-mac', mac: WEB1.mac, ip: WEB1.ip },
    refusal: `virtwire: VM "evil-mac" NIC ${WEB1.mac}: running VM "web-1" has a NIC with the same MAC; a forward may only reach this VM's own NIC — give this NIC its own MAC (virsh edit)`,
  },
  {
    what: 'a NIC on an isolated network (no `networks:` in the template)',
    guest: { name: 'evil-iso', mac: '52:54:00:e9:00:21', ip: '192.168.122.21', network: 'iso' },
    refusal: `virtwire: VM "evil-iso" NIC 52:54:00:e9:00:21 (network "iso"): binding nat needs a NAT network (<forward mode='nat'/>), but network "iso" has forward mode "isolated"; attach the NIC to a NAT network, or limit the template with match.networks`,
  },
  {
    what: 'metadata asking for more forwards than allowed',
    guest: { name: 'opt-many', mac: '52:54:00:e9:00:22', ip: '192.168.122.22' },
    metadata: meta(Array.from({ length: 17 }, (_, i) => `<forward proto="tcp" host="${21000 + i}"/>`).join('')),
    refusal: `virtwire: VM "opt-many": its metadata asks for 17 forwards, over limits.metadataForwardsPerVm = 16 of /etc/virtwire/virtwire.yaml; remove some from the domain's <metadata>, or ask the admin for a template`,
  },
  {
    what: 'metadata: a port range × sources over the element limit',
    guest: { name: 'opt-wide', mac: '52:54:00:e9:00:23', ip: '192.168.122.23' },
    metadata: meta('<forward proto="udp" host="21000-21999" from="198.51.100.0/24 203.0.113.0/24 192.0.2.0/24"/>'),
    refusal: 'virtwire: VM "opt-wide": forward udp 21000-21999 (domain metadata) needs 3000 nft elements (1000 port(s) × 3 source(s)), over limits.elementsPerForward = 1024; narrow the forward or raise the limit in /etc/virtwire/virtwire.yaml',
  },
  {
    what: 'metadata: a made-up listen address',
    guest: { name: 'opt-listen', mac: '52:54:00:e9:00:24', ip: '192.168.122.24' },
    metadata: meta('<forward proto="tcp" host="21080" listen="198.51.100.9"/>'),
    refusal: `virtwire: VM "opt-listen" metadata forward #1: listen 198.51.100.9 is not an address of this host; use one of the host's addresses, or remove listen to mean all of them`,
  },
  {
    what: 'metadata: a loopback listen spelled as IPv4-mapped IPv6',
    guest: { name: 'opt-loop', mac: '52:54:00:e9:00:25', ip: '192.168.122.25' },
    metadata: meta('<forward proto="tcp" host="21081" listen="::ffff:127.0.0.1"/>'),
    refusal: /^virtwire: VM "opt-loop" metadata forward #1: listen: loopback/,
  },
  {
    what: 'metadata: the port of a dual-stack host service (listening on ::)',
    guest: { name: 'opt-steal', mac: '52:54:00:e9:00:26', ip: '192.168.122.26' },
    metadata: meta('<forward proto="tcp" host="21082" guest="80"/>'),
    refusal: 'virtwire: VM "opt-steal": tcp port 21082 on every host IPv4 address is in use by the host itself ([::]:21082, which also receives IPv4); stop that service, use another host port, or set allowHostConflict: true on the forward (domain metadata)',
  },
  {
    what: 'a template glob with an invalid character class',
    guest: { name: 'evil-glob', mac: '52:54:00:e9:00:27', ip: '192.168.122.27' },
    template: ['glob', 'match: {domains: ["evil-[z-a]*"]}\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9002}\n'],
    refusal: /^virtwire: VM "evil-glob": template \/etc\/virtwire\/templates\/glob\.yaml is invalid \(\/etc\/virtwire\/templates\/glob\.yaml:1:\d+: /,
  },
  {
    what: 'a template listen with an IPv6 zone id',
    guest: { name: 'evil-zone', mac: '52:54:00:e9:00:28', ip: '192.168.122.28' },
    template: ['zone', 'match: {domains: ["evil-zone"]}\npriority: 10\nbinding: nat\nforwards:\n  - {proto: tcp, host: 9003, listen: "fe80::1%uplink0"}\n'],
    refusal: /^virtwire: VM "evil-zone": template \/etc\/virtwire\/templates\/zone\.yaml is invalid \(\/etc\/virtwire\/templates\/zone\.yaml:5:\d+: /,
  },
];

describe.skipIf(skipE2e).each(MODES)('$mode', ({ mode, trixie }) => {
  let sb: Sandbox;
  const label = guestLabel(WEB1.name);
  const virtwire = async (...args: string[]) => (await sb.exec(['virtwire', ...args])).stdout;
  const writeFile = (file: string, text: string) => sb.exec(['tee', file], { input: text });
  const nftTable = async () => (await sb.exec(['nft', 'list', 'table', 'inet', 'virtwire'], { reject: false })).stdout;
  const victimAnswers = async () => (await sb.clientHttpGet(sb.hostAddress, 8080)).trim() === `virtwire-guest ${label}`;
  /** Runs a shell line inside the sandbox (test-side commands only, never built from untrusted input). */
  const sh = (script: string, ...args: string[]) => sb.exec(['bash', '-c', script, 'sh', ...args]);

  beforeAll(async () => {
    ({ sb } = await sandboxWithVirtwire(trixie, { web: WEB, evil: EVIL, dev: DEV }));
    await writeFile('/tmp/iso.xml', ISO_NET);
    await sb.virsh('net-define', '--file', '/tmp/iso.xml');
    await sb.virsh('net-start', '--network', 'iso');
    await sb.bootGuest(WEB1);
  }, 600_000);

  afterAll(async () => {
    await sb?.stop();
  }, 120_000);

  it.each(CASES)('hostile input refused with one line, nothing applied, the other VM untouched: $what', async (c) => {
    const forwardsBefore = await virtwire('forwards', '--json');
    const tableBefore = await nftTable();
    let listener: string | undefined;
    if (c.template) await writeFile(`/etc/virtwire/templates/${c.template[0]}.yaml`, c.template[1]);
    if (c.guest.name === 'opt-steal') {
      // A host service on [::]:21082 without IPV6_V6ONLY: it receives IPv4 too.
      listener = (await sh('setsid node -e "require(\'net\').createServer().listen({port: 21082, host: \'::\'})" >/dev/null 2>&1 & echo $!')).stdout.trim();
      await sh('for i in $(seq 50); do grep -qi ":525A .* 0A " /proc/net/tcp6 && exit 0; sleep 0.1; done; exit 1');
    }
    try {
      await sb.defineGuest(c.guest);
      if (c.metadata) {
        await sb.virsh('metadata', '--domain', c.guest.name, '--uri', NS, '--key', 'virtwire', '--config', '--set', `<wiring>${c.metadata}</wiring>`);
      }
      const err = await sb.startGuest(c.guest.name, 30_000).then(() => undefined, (e: Error) => e.message);
      const line = err?.split('\n').find((l) => l.includes('virtwire:'))?.replace(/^.*?(virtwire: )/, '$1').trim();
      if (typeof c.refusal === 'string') expect(line).toBe(c.refusal);
      else expect(line).toMatch(c.refusal);
      expect((await sb.virsh('domstate', '--domain', c.guest.name)).stdout.trim()).toBe('shut off');
      expect(await virtwire('forwards', '--json')).toBe(forwardsBefore);
      expect(await nftTable()).toBe(tableBefore);
      expect((await sb.exec(['ls', '/run/virtwire/vms'])).stdout).not.toMatch(/\.tmp-/);
      expect(await victimAnswers()).toBe(true);
      recordFigure('hostile input', c.what, mode);
    } finally {
      if (listener) await sh('kill "$1"', listener);
      if (c.template) await sb.exec(['rm', '-f', `/etc/virtwire/templates/${c.template[0]}.yaml`]);
      await sb.virsh('undefine', '--domain', c.guest.name).catch(() => undefined);
    }
  }, 120_000);

  it('fault: kill -9 of the prepare hook while it applies: the start fails, nothing is left half-applied, the next start works', async () => {
    // An nft wrapper (PATH's /usr/local/sbin comes first for hooks) that hangs once, in the middle of the hook's apply.
    await writeFile('/usr/local/sbin/nft', '#!/bin/sh\nif [ "$1" = "-f" ] && mv /run/vw-hang-nft /run/vw-hang-nft.taken 2>/dev/null; then echo $$ > /run/vw-hang-nft.pid; exec sleep 600; fi\nexec /usr/sbin/nft "$@"\n');
    await sb.exec(['chmod', '755', '/usr/local/sbin/nft']);
    const web2: GuestSpec = { name: 'web-2', mac: '52:54:00:e9:00:11', ip: '192.168.122.11' };
    await writeFile('/etc/virtwire/templates/web2.yaml', 'match: {domains: ["web-2"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8082, guest: 80}\n');
    try {
      await sb.defineGuest(web2);
      await sb.exec(['touch', '/run/vw-hang-nft']);
      const starting = sb.startGuest(web2.name, 60_000).then(() => 'started', (e: Error) => e.message);
      // Wait until the hook hangs inside nft, then kill -9 the hook's Node process.
      await sh('for i in $(seq 300); do [ -s /run/vw-hang-nft.pid ] && exit 0; sleep 0.1; done; exit 1');
      // The hook: its Node process (mid-apply) and the shim libvirt spawned; then the hung nft.
      // (Matched by process name, not by its command line: this script's own command line holds the pattern.)
      const killed = await sh(`for p in /proc/[0-9]*; do
          comm=$(cat "$p/comm" 2>/dev/null) || continue
          case "$comm" in node|virtwire) ;; *) continue;; esac
          cmd=$({ tr "\\0" " " < "$p/cmdline"; } 2>/dev/null) || continue
          case "$cmd" in *" web-2 prepare begin"*) kill -9 "\${p#/proc/}" && echo "\${p#/proc/}";; esac
        done; kill -9 "$(cat /run/vw-hang-nft.pid)" || true`);
      expect(killed.stdout.trim()).toMatch(/^\d+(\n\d+)*$/);
      expect(await starting).toMatch(/Hook script execution failed/);
      expect((await sb.virsh('domstate', '--domain', web2.name)).stdout.trim()).toBe('shut off');
      // libvirt ran stopped/release for the aborted start: no entry, no element, nothing untracked.
      expect((await sb.exec(['ls', '/run/virtwire/vms'])).stdout).not.toMatch(/\.tmp-/);
      expect(JSON.parse(await virtwire('forwards', '--json')).map((r: { vm: string }) => r.vm)).toEqual(['web-1']);
      expect(await nftTable()).not.toContain('8082');
      expect(await victimAnswers()).toBe(true);
      // And a plain start now works.
      await sb.startGuest(web2.name);
      expect((await sb.clientHttpGet(sb.hostAddress, 8082)).trim()).toBe('virtwire-guest web-2');
      await sb.destroyGuest(web2.name);
      recordFigure('fault', 'kill -9 of the start hook mid-apply', mode);
    } finally {
      await sb.exec(['rm', '-f', '/usr/local/sbin/nft', '/run/vw-hang-nft', '/run/vw-hang-nft.taken', '/run/vw-hang-nft.pid', '/etc/virtwire/templates/web2.yaml']);
      await sb.virsh('undefine', '--domain', web2.name).catch(() => undefined);
    }
  }, 180_000);

  it('fault: a full ledger disk refuses the start with one line and tracks nothing it did not apply', async () => {
    const web3: GuestSpec = { name: 'web-3', mac: '52:54:00:e9:00:12', ip: '192.168.122.12' };
    await writeFile('/etc/virtwire/templates/web3.yaml', 'match: {domains: ["web-3"]}\npriority: 60\nbinding: nat\nforwards:\n  - {proto: tcp, host: 8083, guest: 80}\n');
    // A 64 KiB tmpfs over /run/virtwire/vms holding the current entries, then filled up.
    await sh('set -e; mkdir -p /tmp/vms-save; cp -a /run/virtwire/vms/. /tmp/vms-save/; mount -t tmpfs -o size=64k vw-full /run/virtwire/vms; cp -a /tmp/vms-save/. /run/virtwire/vms/; dd if=/dev/zero of=/run/virtwire/vms/filler bs=4k 2>/dev/null || true');
    try {
      await sb.defineGuest(web3);
      const err = await sb.startGuest(web3.name, 30_000).then(() => undefined, (e: Error) => e.message);
      const line = err?.split('\n').find((l) => l.includes('virtwire:'))?.replace(/^.*?(virtwire: )/, '$1').trim();
      expect(line).toMatch(/^virtwire: cannot write virtwire's ledger \/run\/virtwire\/vms\/[0-9a-f-]{36}\.json: ENOSPC \(no space left on the device holding it; free space there: df -h \/run\)$/);
      expect((await sb.exec(['ls', '/run/virtwire/vms'])).stdout).not.toMatch(/\.tmp-/);
      expect(await nftTable()).not.toContain('8083');
      expect(await victimAnswers()).toBe(true);
    } finally {
      await sh('set -e; rm -f /run/virtwire/vms/filler; cp -a /run/virtwire/vms/. /tmp/vms-save/; umount /run/virtwire/vms; cp -a /tmp/vms-save/. /run/virtwire/vms/; rm -rf /tmp/vms-save');
    }
    await sb.startGuest(web3.name);
    expect((await sb.clientHttpGet(sb.hostAddress, 8083)).trim()).toBe('virtwire-guest web-3');
    await sb.destroyGuest(web3.name);
    await sb.exec(['rm', '-f', '/etc/virtwire/templates/web3.yaml']);
    await sb.virsh('undefine', '--domain', web3.name);
    recordFigure('fault', 'a full ledger disk at start', mode);
  }, 180_000);

  it('fault: a corrupt ledger file of the running VM is rebuilt, and its port stays its own', async () => {
    const uuid = (await sb.virsh('domuuid', '--domain', WEB1.name)).stdout.trim();
    await writeFile(`/run/virtwire/vms/${uuid}.json`, '{"truncated');
    // A second VM wanting the same port: refused, because the start first rebuilds web-1's entry from libvirt's status file.
    const thief: GuestSpec = { name: 'web-thief', mac: '52:54:00:e9:00:13', ip: '192.168.122.13' };
    await sb.defineGuest(thief);
    const err = await sb.startGuest(thief.name, 30_000).then(() => undefined, (e: Error) => e.message);
    expect(err).toContain('virtwire: VM "web-thief": tcp port 8080 on every host IPv4 address is already forwarded to running VM "web-1"');
    expect(JSON.parse(await virtwire('forwards', '--json')).map((r: { vm: string; state: string }) => `${r.vm} ${r.state}`)).toEqual(['web-1 applied']);
    expect(await victimAnswers()).toBe(true);
    await sb.virsh('undefine', '--domain', thief.name);
    recordFigure('fault', 'a corrupt ledger file of a running VM', mode);
  }, 120_000);

  it('fault: `nft flush ruleset` drops every rule; `virtwire reconcile` brings the forward back', async () => {
    await sb.exec(['nft', 'flush', 'ruleset']);
    expect(await victimAnswers().catch(() => false)).toBe(false);
    expect(await virtwire('reconcile')).toContain('nft table inet virtwire: 1 forward(s)');
    expect(await victimAnswers()).toBe(true);
    recordFigure('fault', '`nft flush ruleset`, then `virtwire reconcile`', mode);
  }, 120_000);
});

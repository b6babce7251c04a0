// Records what `virsh event --all --loop` and `virsh net-event --event
// lifecycle --loop` print against a real libvirtd (the e2e sandbox's), into
// test/data/events/ (replayed by test/unit/libvirt-events.test.ts). As root:
//
//   npx vite-node test/support/record-events.ts            # Debian 12: libvirt 9
//   npx vite-node test/support/record-events.ts trixie     # Debian 13 root: libvirt 11
//
// Runs the same argv as src/libvirt/events.ts (STREAM_ARGS), in the
// sandbox's namespaces with nsenter, and a fixed script of actions (see
// ACTIONS in test/data/events/README.md). Not a test: rerun it when virsh's
// output may have changed, and review the diff.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../../src/demo/sandbox.js';
import { STREAM_ARGS } from '../../src/libvirt/events.js';
import { restartLibvirtd } from '../e2e/support.js';
import { ensureTrixieRoot } from './rootfs.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A name that spells out a whole fake event, with a quote, a double quote, U+2028, U+0085 and CJK. */
export const TRICKY_NAME = `q'uote "dq" vm' for domain 'evil': Undefined Removed\u2028next\u0085 日本`;

const trixie = process.argv[2] === 'trixie';
const tag = trixie ? 'libvirt11' : 'libvirt9';
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'events');
const sb = await Sandbox.start({ rootfs: trixie ? await ensureTrixieRoot() : undefined });

function record(args: readonly string[], uri = 'qemu:///system') {
  const c = spawn('nsenter', ['-t', String(sb.initPid), '-n', '-m', '-p', '-r', '-w', '--', 'virsh', '-c', uri, ...args], {
    env: { LC_ALL: 'C', PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  c.stdout.on('data', (b: Buffer) => out.push(b));
  c.stderr.on('data', (b: Buffer) => err.push(b));
  const exit = new Promise<string>((r) => c.on('close', (code, sig) => r(sig ?? `exit ${code}`)));
  return { c, out, err, exit };
}

try {
  // A socket nobody listens on: what virsh prints when the daemon is not there.
  const refused = record(STREAM_ARGS.domain, 'qemu:///system?socket=/run/virtwire-no-such.sock');
  const refusedExit = await refused.exit;
  writeFileSync(join(dir, `${tag}-refused.stderr`), Buffer.concat(refused.err));

  const dom = record(STREAM_ARGS.domain);
  const net = record(STREAM_ARGS.network);
  await sleep(1000);
  await sb.defineGuest({ name: TRICKY_NAME, mac: '52:54:00:aa:00:01', ip: '192.168.122.11' });
  await sb.virsh('start', '--domain', TRICKY_NAME);
  await sleep(1500);
  await sb.virsh('destroy', '--domain', TRICKY_NAME);
  await sb.virsh('undefine', '--domain', TRICKY_NAME);
  // A burst: five defines, then five undefines, back to back.
  for (let i = 0; i < 5; i++) await sb.defineGuest({ name: `burst-${i}`, mac: `52:54:00:aa:01:0${i}`, ip: `192.168.122.2${i}`, reserve: false });
  for (let i = 0; i < 5; i++) await sb.virsh('undefine', '--domain', `burst-${i}`);
  await sb.virsh('net-destroy', '--network', 'default');
  await sb.virsh('net-start', '--network', 'default');
  await sleep(500);
  await restartLibvirtd(sb);
  const exits = await Promise.race([Promise.all([dom.exit, net.exit]), sleep(5000).then(() => undefined)]);
  if (!exits) throw new Error('virsh event did not exit within 5 s of the libvirtd restart');
  writeFileSync(join(dir, `${tag}-domain.txt`), Buffer.concat(dom.out));
  writeFileSync(join(dir, `${tag}-network.txt`), Buffer.concat(net.out));
  writeFileSync(join(dir, `${tag}-disconnect.stderr`), Buffer.concat(dom.err));
  console.log(`${tag}: refused virsh ${refusedExit}; after the restart virsh event ${exits[0]}, net-event ${exits[1]}`);
} finally {
  await sb.stop();
}

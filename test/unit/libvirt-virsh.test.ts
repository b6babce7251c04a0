// src/libvirt/virsh.ts against the real virsh of this host and libvirt's
// in-process test driver (test:///default: no daemon, a fresh mock host per
// virsh process). The e2e test test/e2e/libvirt-client.test.ts does the same
// against real libvirtd 9 and 11.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Virsh, batchWord, uncarriable, BATCH_PROBE } from '../../src/libvirt/virsh.js';
import { LibvirtError, classify } from '../../src/libvirt/errors.js';
import { dhcpHostXml } from '../../src/libvirt/client.js';
import { holds, hostileText } from './fuzz.js';
import { tempDir } from './helpers.js';
import { alive } from '../support/process.js';

const haveVirsh = spawnSync('virsh', ['--version'], { stdio: 'ignore' }).status === 0;
const TEST_URI = 'test:///default';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function failure(p: Promise<unknown>): Promise<LibvirtError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof LibvirtError)) throw new Error(`expected a LibvirtError, got ${String(err)}`);
  return err;
}


describe('virsh argument encoding (pure)', () => {
  it('single-quotes every word in virsh\'s own syntax; a line cannot carry control characters', () => {
    expect(batchWord(`it's "x" \\ #;`)).toBe(`'it'\\''s "x" \\ #;'`);
    expect(batchWord('')).toBe("''");
    expect(batchWord('a\tb')).toBeUndefined();
    expect(batchWord('a\nb')).toBeUndefined();
    expect(batchWord('a\x7fb')).toBeUndefined();
    expect(batchWord('ü\u0085\u202e')).toBe("'ü\u0085\u202e'");
    expect(uncarriable('a\0b')).toMatch(/NUL/);
    expect(uncarriable('a\ud800b')).toMatch(/surrogate/);
    expect(uncarriable('🎉')).toBeUndefined();
  });

  it('maps virsh 9 and 11 messages to kinds; connection trouble wins over "not found"', () => {
    expect(classify("failed to get domain '0a'")).toBe('no-domain');
    expect(classify("failed to get network 'x'\nNetwork not found: no network with matching name 'x'")).toBe('no-network');
    expect(classify('metadata not found: Requested metadata element is not present')).toBe('no-metadata');
    expect(classify("Failed to define domain from /tmp/x\n(domain_definition):2: Premature end of data in tag domain line 1")).toBe('invalid-xml');
    expect(classify('Failed to define domain from /dev/stdin\nat line 2: Premature end of data in tag domain line 1')).toBe('invalid-xml');
    expect(classify("Failed to update network default\nnetwork_update_xml:1: AttValue: ' expected")).toBe('invalid-xml');
    expect(classify('Failed to define domain from x\nXML error: name a/b cannot contain \'/\'')).toBe('invalid-xml');
    expect(classify("Failed to update network default\nRequested operation is not valid: there is an existing dhcp host entry in network 'default' that matches")).toBe('invalid-operation');
    expect(classify("failed to get domain '0a'\nDisconnected from qemu:///system due to end of file")).toBe('connection');
    expect(classify("Failed to reconnect to the hypervisor\nFailed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory")).toBe('connection');
    expect(classify('Timed out during operation: cannot acquire state change lock')).toBe('timeout');
    expect(classify("command 'dumpxml' doesn't support option --nosuch")).toBe('other');
  });

  it('builds DHCP host XML from checked fields, escaping every attribute', () => {
    expect(dhcpHostXml({ mac: '52:54:00:AA:00:01', name: `a "c" > ü`, ip: '192.168.122.5' })).toBe(
      `<host mac='52:54:00:AA:00:01' name='a &#34;c&#34; &#62; ü' ip='192.168.122.5'/>`,
    );
    for (const name of [`it's`, 'a<b', 'a&b', 'a\tb', 'a\nb']) expect(() => dhcpHostXml({ mac: '52:54:00:00:00:01', name, ip: '192.168.122.5' })).toThrow(/libvirt writes unescaped/);
    expect(dhcpHostXml({ id: '00:03:00:01:52:54:00:aa:00:01', name: 'web-1', ip: 'fd00::10' })).toBe(`<host id='00:03:00:01:52:54:00:aa:00:01' name='web-1' ip='fd00::10'/>`);
    expect(() => dhcpHostXml({ mac: 'nope', ip: '192.168.122.5' })).toThrow(/not a MAC/);
    expect(() => dhcpHostXml({ mac: '52:54:00:00:00:01', ip: '192.168.122.500' })).toThrow(/not an IP/);
    expect(() => dhcpHostXml({ ip: '192.168.122.5' })).toThrow(/needs a mac, an id or a name/);
  });
});

describe.skipIf(!haveVirsh && process.env.CI !== 'true')('virsh client against the real virsh (test:///default)', () => {
  it('batch mode hands any text to virsh intact (echo round trip), equal to one-shot; control characters go one-shot; NUL is refused', async () => {
    const batch = new Virsh({ uri: TEST_URI });
    const oneShot = new Virsh({ uri: TEST_URI, mode: 'oneshot' });
    try {
      expect(await batch.run(['echo', '--', BATCH_PROBE])).toBe(BATCH_PROBE);
      await holds(
        fc.asyncProperty(hostileText, async (s) => {
          const args = ['echo', '--', s];
          if (s.includes('\0')) {
            expect((await failure(batch.run(args))).kind).toBe('invalid-argument');
            return;
          }
          const viaBatch = await batch.run(args);
          expect(viaBatch).toBe(await oneShot.run(args));
          expect(viaBatch).toBe(s);
        }),
        150,
      );
      expect(batch.stats.batchStarts).toBe(1);
      expect(batch.stats.batchCalls).toBeGreaterThan(20);
      expect(batch.stats.oneShotCalls).toBeGreaterThan(0); // the control characters
      expect(batch.mode).toBe('batch');
    } finally {
      await batch.close();
      await oneShot.close();
    }
  }, 60_000);

  it('one batch process reports each call\'s own result and error, in order, under concurrent callers', async () => {
    const v = new Virsh({ uri: TEST_URI });
    try {
      const calls: Array<[string[], string]> = [];
      for (let i = 0; i < 40; i++) {
        calls.push([['echo', `ok ${i}`], `ok ${i}`]);
        calls.push([['dominfo', '--domain', `nosuch-${i}`], `no-domain:failed to get domain 'nosuch-${i}'`]);
        calls.push([['net-info', '--network', `nonet-${i}`], `no-network:failed to get network 'nonet-${i}'`]);
        calls.push([['dumpxml', `--bogus${i}`], `other:command 'dumpxml' doesn't support option --bogus${i}`]);
        calls.push([['list', '--name'], 'test\n']);
      }
      const got = await Promise.all(
        calls.map(([args]) => v.run(args, { readOnly: true }).then((out) => out, (e: LibvirtError) => `${e.kind}:${e.virshMessage.split('\n')[0]}`)),
      );
      expect(got).toEqual(calls.map(([, want]) => want));
      expect(v.stats.batchStarts).toBe(1);
      expect(v.stats.oneShotCalls).toBe(0);
    } finally {
      await v.close();
    }
  }, 60_000);

  it('a call past its time bound is "timeout", virsh is killed, and the next call gets a fresh virsh', async () => {
    const v = new Virsh({ uri: TEST_URI });
    try {
      await v.run(['echo', 'warm']);
      const pid = v.batchPid as number;
      const t = Date.now();
      const err = await failure(v.run(['event', '--all', '--timeout', '30'], { timeoutMs: 500 }));
      expect(Date.now() - t).toBeLessThan(5000);
      expect(err.kind).toBe('timeout');
      expect(err.mayHaveApplied).toBe(true);
      for (let i = 0; i < 50 && alive(pid); i++) await sleep(20);
      expect(alive(pid)).toBe(false);
      expect(await v.run(['echo', 'again'])).toBe('again');
      expect(v.stats.batchStarts).toBe(2);
    } finally {
      await v.close();
    }
  });

  it('a virsh killed while idle is replaced; killed mid-call: a read-only call is repeated, a changing one reported as maybe applied', async () => {
    const v = new Virsh({ uri: TEST_URI });
    try {
      await v.run(['echo', 'warm']);
      process.kill(v.batchPid as number, 'SIGKILL');
      await sleep(100);
      expect(await v.run(['echo', 'after idle kill'])).toBe('after idle kill');
      expect(v.stats.batchStarts).toBe(2);

      const changing = v.run(['event', '--all', '--timeout', '20']);
      await sleep(300);
      process.kill(v.batchPid as number, 'SIGKILL');
      const err = await failure(changing);
      expect(err.kind).toBe('connection');
      expect(err.mayHaveApplied).toBe(true);
      expect(err.message).toMatch(/virsh killed by SIGKILL during the call/);

      const reading = v.run(['event', '--all', '--timeout', '1'], { readOnly: true });
      await sleep(300);
      process.kill(v.batchPid as number, 'SIGKILL');
      expect(await reading).toContain('events received: 0');
      expect(v.stats.batchStarts).toBe(4); // warm, after the idle kill, the changing call's, the read's repeat
    } finally {
      await v.close();
    }
  });

  it('virsh that cannot connect at start: "connection", and batch mode is kept for the next call', async () => {
    const v = new Virsh({ uri: 'test+unix:///default?socket=/nonexistent/virtwire.sock' });
    try {
      const err = await failure(v.run(['list', '--uuid'], { readOnly: true }));
      expect(err.kind).toBe('connection');
      expect(err.virshMessage).toMatch(/failed to connect to the hypervisor/);
      expect(v.mode).toBe('batch');
      expect((await failure(v.run(['list']))).kind).toBe('connection');
    } finally {
      await v.close();
    }
  });

  it('falls back to one-shot for good when the probe does not come back intact (a virsh that mangles 8-bit input)', async () => {
    // A stand-in for a readline set up to strip the 8th bit: the real virsh
    // behind a filter on its stdin. One-shot calls have no stdin: unaffected.
    const v = new Virsh({ uri: TEST_URI, command: ['sh', '-c', "LC_ALL=C sed -u 's/[\\x80-\\xff]/?/g' | exec virsh \"$@\"", 'virsh'], timeoutMs: 10_000 });
    try {
      expect(await v.run(['echo', 'ü日本'])).toBe('ü日本');
      expect(v.mode).toBe('oneshot');
      expect(v.stats.fallback).toMatch(/did not echo the probe back intact/);
      expect(v.stats.oneShotCalls).toBe(1);
    } finally {
      await v.close();
    }
  });

  it('interactive virsh writes no history file (it would hold every command, XML included)', async () => {
    const history = join(process.env.HOME ?? '/root', '.cache', 'libvirt', 'virsh', 'history');
    const before = statSync(history, { throwIfNoEntry: false })?.mtimeMs;
    const v = new Virsh({ uri: TEST_URI });
    await v.run(['echo', 'secret <xml/>']);
    await v.close();
    expect(statSync(history, { throwIfNoEntry: false })?.mtimeMs).toBe(before);
  });

  it('refuses commands that end or redirect the session or want a terminal; /dev/stdin goes one-shot', async () => {
    const v = new Virsh({ uri: TEST_URI });
    try {
      for (const cmd of ['quit', 'exit', 'connect', 'cd', 'console', 'edit', 'net-edit']) {
        expect((await failure(v.run([cmd]))).kind).toBe('invalid-argument');
      }
      await v.run(['echo', 'warm']);
      // A batch virsh would read the command stream as the file; one-shot gets an empty stdin.
      const err = await failure(v.run(['define', '--file', '/dev/stdin'], { timeoutMs: 5000 }));
      expect(err.kind).toBe('invalid-xml');
      expect(v.stats.oneShotCalls).toBe(1);
      expect(await v.run(['echo', 'still one batch'])).toBe('still one batch');
      expect(v.stats.batchStarts).toBe(1);
    } finally {
      await v.close();
    }
  });

  it('define through a file: invalid XML is "invalid-xml", and the same batch keeps working', async () => {
    const dir = tempDir();
    const bad = join(dir, 'bad.xml');
    writeFileSync(bad, '<domain><name>x</name>');
    const v = new Virsh({ uri: TEST_URI });
    try {
      const err = await failure(v.run(['define', '--file', bad]));
      expect(err.kind).toBe('invalid-xml');
      expect(err.virshMessage).toMatch(/^Failed to define domain from /);
      expect(err.mayHaveApplied).toBe(false);
      expect(await v.run(['echo', 'still here'])).toBe('still here');
      expect(v.stats.batchStarts).toBe(1);
    } finally {
      await v.close();
    }
  });
});

import { describe, it, expect } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRunning } from '../../src/host/libvirt-status.js';
import { domainXml, tempDir, writeFiles } from './helpers.js';

const UUID_A = '6f1f6a0e-0000-4000-8000-00000000000a';
const UUID_B = '6f1f6a0e-0000-4000-8000-00000000000b';

describe('readRunning: the running domains from libvirt status files', () => {
  const runDir = (): string => tempDir();
  /** libvirt's status file for a domain whose QEMU is `pid` (this test process: alive). */
  const status = (dir: string, name: string, xml: string, pid = process.pid): void => {
    writeFiles(join(dir, 'qemu'), { [`${name}.xml`]: `<domstatus state='running' pid='${pid}'>\n  <qemuCaps><flag name='kvm'/></qemuCaps>\n${xml}\n</domstatus>\n` });
  };

  it('parses a status file once per text: an unchanged file gives the same (frozen) domain, a changed one is read again', () => {
    const dir = runDir();
    status(dir, 'a', domainXml('a', [{ mac: '52:54:00:00:00:0a' }], '', UUID_A));
    status(dir, 'b', domainXml('b', [{ mac: '52:54:00:00:00:0b' }], '', UUID_B));
    const first = readRunning(dir, true);
    const second = readRunning(dir, true);
    expect(first.domains.map((d) => d.domain.name).sort()).toEqual(['a', 'b']);
    const a1 = first.domains.find((d) => d.domain.uuid === UUID_A)?.domain;
    const a2 = second.domains.find((d) => d.domain.uuid === UUID_A)?.domain;
    expect(a2).toBe(a1); // not parsed again
    expect(Object.isFrozen(a1?.nics[0])).toBe(true);
    // libvirt rewrote a's status file (a NIC hot-plugged): the new text is parsed.
    status(dir, 'a', domainXml('a', [{ mac: '52:54:00:00:00:0a' }, { mac: '52:54:00:00:00:1a' }], '', UUID_A));
    const third = readRunning(dir, true);
    expect(third.domains.find((d) => d.domain.uuid === UUID_A)?.domain.nics.map((n) => n.mac)).toEqual(['52:54:00:00:00:0a', '52:54:00:00:00:1a']);
    expect(third.domains.find((d) => d.domain.uuid === UUID_B)?.domain).toBe(first.domains.find((d) => d.domain.uuid === UUID_B)?.domain);
  });

  it('a domain that stopped is gone at once: its file removed, or its QEMU pid dead with the same text as before', () => {
    const dir = runDir();
    status(dir, 'a', domainXml('a', [{ mac: '52:54:00:00:00:0a' }], '', UUID_A));
    status(dir, 'b', domainXml('b', [{ mac: '52:54:00:00:00:0b' }], '', UUID_B), 999_999_999);
    expect([...readRunning(dir, true).uuids]).toEqual([UUID_A]);
    expect([...readRunning(dir, false).uuids]).toEqual([UUID_A]);
    rmSync(join(dir, 'qemu', 'a.xml'));
    expect(readRunning(dir, true)).toEqual({ uuids: new Set(), domains: [] });
  });

  it('a status file that does not parse still counts as running, and is reported on every read', () => {
    const dir = runDir();
    writeFileSync(join(writeFiles(join(dir, 'qemu'), {}), 'broken.xml'), `<domstatus state='running' pid='${process.pid}'>\n<domain type='qemu'><name>broken</name><uuid>${UUID_A}</uuid><devices><interface></devices></domain>\n</domstatus>\n`);
    const problems: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = readRunning(dir, true, (m) => problems.push(m));
      expect([...r.uuids]).toEqual([UUID_A]);
      expect(r.domains).toEqual([]);
    }
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^cannot read libvirt status file .*broken\.xml: /);
  });
});

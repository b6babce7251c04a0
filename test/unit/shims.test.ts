import { ROOT } from './helpers.js';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuOpIsActive } from '../../src/hooks/qemu-handler.js';


describe('hook shims', () => {
  it('the qemu shim lets through exactly the operations the handler acts on', () => {
    const shim = readFileSync(join(ROOT, 'hooks', 'qemu'), 'utf8');
    const ops = /^\s*([a-z|-]+)\) ;;$/m.exec(shim)?.[1]?.split('|') ?? [];
    const all = ['prepare', 'start', 'started', 'stopped', 'release', 'migrate', 'restore', 'reconnect', 'attach'];
    expect(ops.sort()).toEqual(all.filter(qemuOpIsActive).sort());
  });
});

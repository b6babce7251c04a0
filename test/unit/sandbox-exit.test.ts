// The sandbox's last-resort cleanup (src/demo/sandbox.ts liveSandboxes): the
// e2e files run one after another in one forked process, each with its own
// copy of the module, and must share one 'exit' listener between them.
import { expect, it, vi } from 'vitest';

it('one set of live sandboxes and one exit listener per process, however many copies of the module are loaded', async () => {
  const before = process.listenerCount('exit');
  const first = await import('../../src/demo/sandbox.js');
  const live = first.liveSandboxes();
  vi.resetModules();
  const second = await import('../../src/demo/sandbox.js');
  expect(second, 'a fresh copy of the module').not.toBe(first);
  expect(second.liveSandboxes()).toBe(live);
  for (let i = 0; i < 12; i++) {
    vi.resetModules();
    (await import('../../src/demo/sandbox.js')).liveSandboxes();
  }
  expect(process.listenerCount('exit')).toBeLessThanOrEqual(before + 1);
  // What the listener does: stop what is still live.
  const stopped: string[] = [];
  live.add({ stopSync: () => stopped.push('a') });
  for (const l of process.listeners('exit').slice(before)) l.call(process, 0);
  expect(stopped).toEqual(['a']);
  live.clear();
});

// README command (1) as a user runs it: install.sh, then `virtwire demo` from
// the *installed* copy (which re-runs /usr/local/lib/virtwire/install.sh inside
// its own sandbox). Run inside a Debian 12 sandbox so the host's /usr/local and
// /etc stay untouched; the demo's sandbox nests inside it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Sandbox } from '../../src/demo/sandbox.js';

const RUN = process.getuid?.() === 0 || process.env.CI === 'true';

describe.runIf(RUN)('virtwire demo, from an installed virtwire', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await Sandbox.start();
    await sb.exec(['bash', join(sb.repoDirInside, 'install.sh')]);
  }, 300_000);
  afterAll(async () => { await sb?.stop(); }, 120_000);

  it('shows a client reaching the guest through the host port, then leaves nothing behind', async () => {
    const r = await sb.exec(['virtwire', 'demo'], { timeoutMs: 280_000, reject: false });
    expect(r.stderr, r.stdout).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).not.toContain('building');
    expect(r.stdout).toMatch(/client 192\.0\.2\.2 -> http:\/\/192\.0\.2\.1:8080\/ answered: "virtwire-guest web-demo"/);
    expect(r.stdout).toMatch(/udp 192\.0\.2\.1:5353 answered: "udp-pong web-demo"/);
    expect(r.stdout).toContain('after stop: no forward left in the table');
    expect(r.stdout).toContain('no virtwire table left');
    // The demo's own namespaces are gone.
    expect((await sb.exec(['ip', 'netns', 'list'])).stdout.trim()).toBe('');
  }, 300_000);
});

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Runner } from '../../src/host/run.js';
import { runCommand } from '../../src/host/run.js';

/** Whether this process may create network namespaces (root). Under CI=true a test that needs one must not skip. */
export const canNetns = process.getuid?.() === 0;
export const mustRunEverything = process.env.CI === 'true';

/** A throwaway network namespace, for checking generated rules against the real kernel and tools. */
export class ScratchNetns {
  readonly name = `vw-u-${process.pid}-${randomBytes(3).toString('hex')}`;

  constructor() {
    execFileSync('ip', ['netns', 'add', this.name]);
  }

  /** A Runner whose commands run inside the namespace. */
  get run(): Runner {
    return (argv, opts) => runCommand(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  delete(): void {
    execFileSync('ip', ['netns', 'del', this.name]);
  }
}

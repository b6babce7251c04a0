import { defineWorkspace } from 'vitest/config';

// Why a workspace (vitest 2.1.9, checked with --maxWorkers=3):
// - e2e files each boot a private libvirtd and TCG guests; on 2 cores they
//   must never overlap. `forks` + `singleFork` runs them one after another in
//   one child process (a real process: it owns the sandbox namespaces and
//   the process 'exit' cleanup).
// - One config with poolMatchGlobs + forks.singleFork (or maxForks: 1) does
//   NOT serialize them: the matched files ran concurrently in the one fork.
// - fileParallelism: false would serialize the unit tests too.
// Projects run side by side, so unit tests still run while an e2e file does.
export default defineWorkspace([
  {
    extends: './vitest.config.ts',
    test: { name: 'unit', include: ['test/unit/**/*.test.ts'], pool: 'threads' },
  },
  {
    extends: './vitest.config.ts',
    test: {
      name: 'e2e',
      include: ['test/e2e/**/*.test.ts'],
      // Once per run: clears and, after a full run, checks the README's figures table.
      globalSetup: ['test/support/figures-setup.ts'],
      pool: 'forks',
      poolOptions: { forks: { singleFork: true } },
    },
  },
]);

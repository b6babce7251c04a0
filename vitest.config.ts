import { defineConfig } from 'vitest/config';

// Unit tests (test/unit) run in parallel worker threads. E2E files
// (test/e2e) each boot a private libvirtd and TCG guests on a 2-core machine:
// poolMatchGlobs sends them to the forks pool, and singleFork runs that pool's
// files one after another in one child process (still isolated per file), so
// two e2e files never overlap. Forks, not threads: a real process owns the
// sandbox's namespaces and its process 'exit' cleanup.
// (vitest 2.1: poolMatchGlobs is the single-file way; workspaces need a
// separate vitest.workspace.ts.)
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'threads',
    poolMatchGlobs: [['test/e2e/**', 'forks']],
    poolOptions: {
      forks: { singleFork: true },
    },
    testTimeout: 20_000,
    hookTimeout: 60_000,
    teardownTimeout: 60_000,
  },
});

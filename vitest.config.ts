import { defineConfig } from 'vitest/config';

// Shared defaults. The test projects live in vitest.workspace.ts (each
// `extends` this file): unit tests in parallel worker threads, e2e files one
// at a time in a single forked process.
export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 60_000,
    teardownTimeout: 60_000,
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // corpus-setup first: under CI a missing corpus fails before anything is built.
    globalSetup: ['test/support/corpus-setup.ts', 'test/global-setup.ts'],
  },
});

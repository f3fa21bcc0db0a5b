import { defineConfig } from 'vitest/config';

/**
 * The end-to-end suite (`npm run e2e`): test/e2e/*.e2e.ts against a real etcd + kube-apiserver.
 * One file at a time: each file starts its own control plane, and the machine has two cores.
 */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    globalSetup: ['test/e2e/global-setup.ts'],
  },
});

import { defineConfig } from 'vitest/config';

/**
 * The fault cases of test/faults/ that stop, restart or reconfigure a PostgreSQL server. Each file starts
 * its own throwaway cluster (dev/cluster.ts), never the shared server: no URL and no global
 * setup. The folder's two other files share the suite's server and run through vitest.config.ts, next in
 * `npm run test:faults`: interleavings.test.ts (gated) and model.test.ts (200 schedules, then 50 with
 * incremental views: MODEL_INCREMENTAL=1, MODEL_INCREMENTAL_SCHEDULES). One file at a
 * time, since every file restarts servers and spawns daemons.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    exclude: ['test/faults/interleavings.test.ts', 'test/faults/model.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
});

import { defineConfig } from 'vitest/config';

/**
 * The fault cases that stop, restart or reconfigure a PostgreSQL server (test/own-cluster/). Each file
 * starts its own throwaway cluster (dev/cluster.ts), never the shared server: no URL and
 * no global setup. The fault cases that share the suite's server (test/faults/) run under `npm test`. One file at a time, since every file restarts servers and spawns daemons.
 */
export default defineConfig({
  test: {
    include: ['test/own-cluster/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
});

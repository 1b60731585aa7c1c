import { defineConfig } from 'vitest/config';

/**
 * `npm run test:ops`: the operator's kit against Debian's Prometheus (test/ops/): promtool unit tests of
 * the alert rules, and a private Prometheus scraping a daemon under load that evaluates every dashboard
 * panel's query and every alert expression. Skipped without the binaries unless
 * MVREFRESH_TEST_REQUIRE_PROMETHEUS is set.
 */
export default defineConfig({
  test: {
    include: ['test/ops/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});

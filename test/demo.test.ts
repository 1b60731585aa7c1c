import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';

const run = promisify(execFile);

describe('npm run demo', () => {
  it(
    'shows the view refreshed as orders arrive, ends equal to its query, and removes its directory',
    { timeout: 120_000 },
    async () => {
      const { stdout } = await run(
        process.execPath,
        [join(packageRoot, 'dist', 'demo', 'main.js'), '--seconds', '6'],
        {
          env: { PATH: process.env['PATH'] ?? '' },
          timeout: 110_000,
        },
      );
      const refreshes = stdout
        .split('\n')
        .filter((l) => / refresh public\.monthly_product_sales: (refreshed|populated)/.test(l));
      expect(refreshes.length).toBeGreaterThanOrEqual(2);
      const statuses = stdout.split('\n').filter((l) => l.includes(' status: '));
      expect(statuses.at(-1)).toMatch(/view equals its query/);
      const dir = /temporary directory: (\S+)/.exec(stdout)?.[1];
      expect(dir).toBeDefined();
      expect(existsSync(dir!)).toBe(false);
    },
  );
});

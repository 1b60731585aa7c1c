import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { viewMatches } from './support/shop.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('failures');
let d: TestDaemon;

const QUERY = 'SELECT region, count(*) > 0 AS active FROM accounts GROUP BY region, kind';

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE accounts (id int PRIMARY KEY, region text NOT NULL, kind text NOT NULL);
    INSERT INTO accounts VALUES (1, 'eu', 'a'), (2, 'us', 'a');
    CREATE MATERIALIZED VIEW active_regions AS ${QUERY};
    CREATE UNIQUE INDEX ON active_regions (region);
    SELECT mvrefresh.watch('active_regions');`);
  // a backoff far longer than the test waits: only the fixing write can bring the retry forward
  d = await startDaemon(db.url, { backoffBaseMs: 120_000, backoffMaxMs: 240_000 });
  await waitFor('the first refresh', () => d.reports.some((r) => r.outcome === 'refreshed'));
});

afterAll(async () => {
  await d?.stop();
});

describe('failures that explain themselves', () => {
  it('records which key columns a 21000 failure duplicated and how often, never their values, and refreshes soon after the fixing write, not when the backoff ends', async () => {
    await db.exec("INSERT INTO accounts VALUES (3, 'eu', 'b')");
    const failure = await waitFor('the failure recorded', async () => {
      const { rows } = await db.sql.query<{ last_sqlstate: string | null; last_error: string | null }>(
        "SELECT last_sqlstate, last_error FROM mvrefresh.status WHERE view = 'public.active_regions'",
      );
      return rows[0]?.last_sqlstate === '21000' ? rows[0] : undefined;
    });
    expect(failure.last_error).toContain(
      'duplicated keys on (region): 1 key value repeated, up to 2 times; GROUP BY region HAVING count(*) > 1',
    );
    // whoever reads mvrefresh.status may not read the view: no row value is recorded
    expect(failure.last_error).not.toMatch(/\beu\b/);
    await db.exec("UPDATE accounts SET kind = 'a', region = 'asia' WHERE id = 3");
    await waitFor(
      'the view refreshed after the fix',
      async () => {
        const { rows } = await db.sql.query<{ consecutive_failures: number }>(
          "SELECT consecutive_failures FROM mvrefresh.status WHERE view = 'public.active_regions'",
        );
        return rows[0]?.consecutive_failures === 0;
      },
      { timeoutMs: 20_000 },
    );
    expect(await viewMatches(db.sql, 'active_regions', QUERY)).toBe(true);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { delay, waitFor } from './support/wait.js';

const db = useTestDatabase('target_misses');
/** startDaemon's default staleness target. */
const TARGET_MS = 200;

let d: TestDaemon | undefined;

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE items (id int PRIMARY KEY);
    CREATE MATERIALIZED VIEW item_count AS SELECT count(*) AS n FROM items;
    CREATE UNIQUE INDEX ON item_count (n);
    SELECT mvrefresh.watch('item_count');`);
});

afterAll(async () => {
  await d?.stop();
});

describe('target misses', () => {
  it('a view watched before the daemon started does not start with a miss', async () => {
    // dirty since watch, longer than the target before any daemon runs
    await delay(TARGET_MS * 3);
    d = await startDaemon(db.url);
    const daemon = d;
    await waitFor('the first refresh', () => daemon.reports.some((r) => r.outcome === 'refreshed'));
    // a miss is recorded in view_state as the refresh ends (one statement, not awaited): give it time to land
    await delay(1000);
    const { rows } = await db.sql.query<{ target_misses: string }>(
      "SELECT target_misses FROM mvrefresh.status WHERE view = 'public.item_count'",
    );
    expect(rows[0]!.target_misses).toBe('0');
  });
});

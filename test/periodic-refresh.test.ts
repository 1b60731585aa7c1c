import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('periodic_refresh');
const INTERVAL_MS = 400;
const PERIODS = 10;

let d: TestDaemon | undefined;

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE ticks (id int PRIMARY KEY);
    CREATE MATERIALIZED VIEW tick_count AS SELECT count(*) AS n, now() AS at FROM ticks;
    CREATE UNIQUE INDEX ON tick_count (n);
    SELECT mvrefresh.watch('tick_count', p_refresh_interval_ms => ${INTERVAL_MS});`);
});

afterAll(async () => {
  await d?.stop();
});

describe('--refresh-interval-ms', () => {
  it(`refreshes a view every N ms, not every 2N: the mean of ${PERIODS} periods is within 10% of N = ${INTERVAL_MS}`, async () => {
    d = await startDaemon(db.url);
    const daemon = d;
    const periodic = () =>
      daemon.reports.filter((r) => r.cause === 'interval' && r.outcome === 'refreshed').map((r) => r.at);
    // the first periodic refresh may follow the start sweep's: count from the second on
    await waitFor(`${PERIODS + 2} periodic refreshes`, () => periodic().length >= PERIODS + 2, {
      timeoutMs: 60_000,
    });

    const at = periodic().slice(1, PERIODS + 2);
    const mean = (at.at(-1)! - at[0]!) / PERIODS;
    expect(mean).toBeGreaterThan(INTERVAL_MS * 0.9);
    expect(mean).toBeLessThan(INTERVAL_MS * 1.1);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { delay, waitFor } from './support/wait.js';

const db = useTestDatabase('lock_wait_cost');
let d: TestDaemon;
/** How long another session keeps the view's refresh waiting for its lock. */
const HOLD_MS = 8000;

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE lw_src (k int PRIMARY KEY);
    CREATE TABLE lw_other (k int);
    INSERT INTO lw_src VALUES (1);
    CREATE MATERIALIZED VIEW lw_view AS
      SELECT s.k, count(o.k) AS n FROM lw_src s LEFT JOIN lw_other o USING (k) GROUP BY s.k;
    CREATE UNIQUE INDEX ON lw_view (k);`);
  await db.sql.query("SELECT mvrefresh.watch('lw_view')");
  d = await startDaemon(db.url, { lockTimeoutMs: 60_000 });
  await waitFor('the first refresh', () =>
    d.reports.some((r) => r.outcome === 'refreshed' || r.outcome === 'populated'),
  );
});

afterAll(async () => {
  await d?.stop();
});

describe('the cost estimate of a view', () => {
  it('does not count a wait for a lock: a refresh that waited seconds behind another session leaves the cost small', async () => {
    const id = (await db.sql.query<{ id: number }>('SELECT id FROM mvrefresh.view_state')).rows[0]!.id;
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      // the refresh reads lw_other: it waits until the lock is gone; writes to lw_src go on
      await locker.query('BEGIN; LOCK TABLE lw_other IN ACCESS EXCLUSIVE MODE');
      const before = d.reports.length;
      await db.sql.query('INSERT INTO lw_src VALUES (2)');
      await delay(HOLD_MS);
      await locker.query('COMMIT');
      const waitedCycle = await waitFor('the refresh that waited', () =>
        d.reports.slice(before).find((r) => r.outcome === 'refreshed'),
      );
      expect(waitedCycle.durationMs).toBeGreaterThan(HOLD_MS / 2);
      expect(waitedCycle.lockWaitMs, JSON.stringify(waitedCycle)).toBeGreaterThan(HOLD_MS / 4);
      const plan = d.running.scheduler.describe(id)!;
      // the cycle's own work, without the wait, is what the budget counts: in the mean cost and in the
      // share of time spent refreshing (which spaces the next cycles)
      const seen = JSON.stringify({ waitedCycle, plan });
      expect(plan.costMs, seen).toBeLessThan(HOLD_MS / 5);
      expect(plan.budgetInUse, seen).toBeLessThan(0.5);
    } finally {
      await locker.end();
    }
  });
});

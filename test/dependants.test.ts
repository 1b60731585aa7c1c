import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { delay, waitFor } from './support/wait.js';

const db = useTestDatabase('dependants');
const ROUNDS = 5;

let d: TestDaemon | undefined;

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE items (id int PRIMARY KEY);
    CREATE MATERIALIZED VIEW item_count AS SELECT count(*) AS n FROM items;
    CREATE UNIQUE INDEX ON item_count (n);
    CREATE MATERIALIZED VIEW item_count_doubled AS SELECT n * 2 AS n2 FROM item_count;
    CREATE UNIQUE INDEX ON item_count_doubled (n2);
    SELECT mvrefresh.watch('item_count');
    SELECT mvrefresh.watch('item_count_doubled');`);
});

afterAll(async () => {
  await d?.stop();
});

const refreshed = (t: TestDaemon, view: string) =>
  t.reports.filter((r) => r.view === view && r.outcome === 'refreshed').length;

/** Both views clean, nothing planned, queued or running, and still so a moment later (a late notification). */
async function quiet(t: TestDaemon): Promise<void> {
  const idle = async () => {
    const { rows } = await db.sql.query<{ dirty: boolean }>(
      "SELECT dirty FROM mvrefresh.status WHERE view IN ('public.item_count', 'public.item_count_doubled')",
    );
    return (
      rows.length === 2 &&
      rows.every((r) => !r.dirty) &&
      t.running.scheduler.waitingCount === 0 &&
      t.running.refresher.active === 0 &&
      t.running.refresher.queued === 0
    );
  };
  await waitFor('the views clean and the daemon idle', idle);
  await delay(500);
  await waitFor('the views clean and the daemon idle', idle);
}

describe('dependants of a refreshed view', () => {
  it('are refreshed once per refresh of their source view (scheduled by its notification alone)', async () => {
    // a 1 ms target: a dependant is due the moment it is scheduled, so a second scheduling of the same
    // upstream refresh would arrive while its cycle runs and run it again
    d = await startDaemon(db.url, { maxStalenessMs: 1 });
    const t = d;
    await quiet(t);
    t.reports.length = 0;
    for (let i = 1; i <= ROUNDS; i += 1) {
      await db.sql.query('INSERT INTO items VALUES ($1)', [i]);
      await waitFor(`refresh ${i} of the dependant`, () => refreshed(t, 'public.item_count_doubled') >= i);
      await quiet(t);
    }
    const cycles = (view: string) => t.reports.filter((r) => r.view === view).map((r) => r.outcome);
    expect(cycles('public.item_count')).toEqual(Array(ROUNDS).fill('refreshed'));
    expect(cycles('public.item_count_doubled')).toEqual(Array(ROUNDS).fill('refreshed'));
    const { rows } = await db.sql.query<{ n2: number }>('SELECT n2::int FROM item_count_doubled');
    expect(rows).toEqual([{ n2: ROUNDS * 2 }]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('drift_levels');

let d: TestDaemon | undefined;

const driftLog = (daemon: TestDaemon, change: string) =>
  daemon.logs.find(
    (l) => l['event'] === 'source_drift' && (l['changes'] as string[]).some((c) => c.startsWith(change)),
  );

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE payment (id int NOT NULL, month int NOT NULL, amount int NOT NULL) PARTITION BY LIST (month);
    CREATE TABLE payment_p01 PARTITION OF payment FOR VALUES IN (1);
    CREATE MATERIALIZED VIEW payment_totals AS SELECT month, sum(amount) AS total FROM payment GROUP BY month;
    CREATE UNIQUE INDEX ON payment_totals (month);
    SELECT mvrefresh.watch('payment_totals');`);
  d = await startDaemon(db.url, { driftCheckIntervalMs: 1000 });
});

afterAll(async () => {
  await d?.stop();
});

describe('the level of a source drift log line', () => {
  it.each([
    {
      title:
        'is info for a new partition whose missing trigger the check installed (expected monthly: nobody is paged)',
      change: 'CREATE TABLE payment_p02 PARTITION OF payment FOR VALUES IN (2)',
      found: 'trigger missing on public.payment_p02',
      alsoFound: ['source added: public.payment_p02'],
      level: 'info',
    },
    {
      title: 'stays warn for a trigger found disabled on a known source',
      change: 'ALTER TABLE payment_p01 DISABLE TRIGGER mvrefresh_mark',
      found: 'trigger disabled on public.payment_p01',
      alsoFound: [],
      level: 'warn',
    },
  ])('$title', async ({ change, found, alsoFound, level }) => {
    const daemon = d!;
    await db.sql.query(change);
    const line = await waitFor(`"${found}" logged`, () => driftLog(daemon, found));
    for (const other of alsoFound) expect(line['changes']).toContain(other);
    expect(line['level']).toBe(level);
  });
});

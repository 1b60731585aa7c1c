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
  it('is info for a new partition whose missing trigger the check installed (expected monthly: nobody is paged)', async () => {
    const daemon = d!;
    await db.sql.query('CREATE TABLE payment_p02 PARTITION OF payment FOR VALUES IN (2)');
    const line = await waitFor('the drift of the new partition logged', () =>
      driftLog(daemon, 'trigger missing on public.payment_p02'),
    );
    expect(line['changes']).toContain('source added: public.payment_p02');
    expect(line['level']).toBe('info');
  });

  it('stays warn for a trigger found disabled on a known source', async () => {
    const daemon = d!;
    await db.sql.query('ALTER TABLE payment_p01 DISABLE TRIGGER mvrefresh_mark');
    const line = await waitFor('the disabled trigger logged', () =>
      driftLog(daemon, 'trigger disabled on public.payment_p01'),
    );
    expect(line['level']).toBe('warn');
  });
});

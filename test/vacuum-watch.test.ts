import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { watchShop } from './support/shop.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('vacuum_watch');
/** Above the floor of dead rows that counts as bloat for mvrefresh's own tables (src/db/vacuum.ts). */
const DEAD_MARKS = 12_000;

const events = (d: TestDaemon, event: string) => d.logs.filter((l) => l['event'] === event);

async function metric(d: TestDaemon, line: RegExp): Promise<number | undefined> {
  const text = await d.running.metrics.registry.metrics();
  const found = text.split('\n').find((l) => line.test(l));
  return found === undefined ? undefined : Number(found.split(' ').at(-1));
}

beforeAll(async () => {
  await watchShop(db.sql);
  // only this test's rows count: autovacuum (on in some test servers) must not remove them first
  await db.sql.query('ALTER TABLE mvrefresh.marks SET (autovacuum_enabled = false)');
});

describe('the vacuum watch of a running daemon', () => {
  let d: TestDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
  });

  it('exports the dead rows of the churned catalogs, and logs a bloated table of its own once, then its recovery', async () => {
    d = await startDaemon(db.url, { vacuumCheckIntervalMs: 200 });
    await waitFor(
      'the catalog gauge',
      async () => (await metric(d!, /^mvrefresh_table_dead_rows\{table="pg_attribute"\}/)) !== undefined,
    );
    await db.exec(
      `INSERT INTO mvrefresh.marks (view_id) SELECT -1 FROM generate_series(1, ${DEAD_MARKS});
       DELETE FROM mvrefresh.marks WHERE view_id = -1`,
    );
    await waitFor('the bloat warning', () => events(d!, 'table_bloat').length > 0);
    const bloat = events(d, 'table_bloat');
    expect(bloat).toHaveLength(1);
    expect(bloat[0]).toMatchObject({ table: 'mvrefresh.marks', level: 'warn' });
    expect(Number(bloat[0]?.['deadRows'])).toBeGreaterThanOrEqual(DEAD_MARKS);
    expect(await metric(d, /^mvrefresh_table_dead_rows\{table="mvrefresh.marks"\}/)).toBeGreaterThanOrEqual(
      DEAD_MARKS,
    );
    await db.exec('VACUUM mvrefresh.marks');
    await waitFor('the recovery', () => events(d!, 'table_bloat_cleared').length > 0);
    expect(events(d, 'table_bloat')).toHaveLength(1);
    await d.stop();
    d = undefined;
  });

  it('warns once that autovacuum cannot run (track_counts off), and exports it', async () => {
    await db.sql.query(`ALTER DATABASE ${db.name} SET track_counts = off`);
    try {
      d = await startDaemon(db.url, { vacuumCheckIntervalMs: 200 });
      await waitFor('several checks', async () => (await metric(d!, /^mvrefresh_autovacuum_enabled /)) === 0);
      await new Promise((r) => setTimeout(r, 1000));
      expect(events(d, 'autovacuum_off')).toHaveLength(1);
      expect(events(d, 'autovacuum_off')[0]).toMatchObject({ level: 'warn', trackCounts: false });
    } finally {
      await d?.stop();
      d = undefined;
      await db.sql.query(`ALTER DATABASE ${db.name} RESET track_counts`);
    }
  });
});

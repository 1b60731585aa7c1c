import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { viewMatches } from './support/shop.js';
import { insertsReported, viewDirty } from './support/drift.js';

/**
 * A statement addressed to a partitioned (or inheritance) parent fires only the parent's statement triggers,
 * also for the rows it routes into a partition: a view that reads one partition (or child) directly must be
 * marked by the parent's trigger, and the drift check must take the parent's mark as the partition's.
 * Everything runs in this file's one session (db.sql), so that no other session may hold unreported
 * statistics and the drift check judges the write counters without slack.
 */
const db = useTestDatabase('partition_ancestors');

const ONE_PARTITION = 'SELECT k, count(*) AS n FROM visits_0 GROUP BY k';
const ALL_PARTITIONS = 'SELECT k, count(*) AS n FROM visits GROUP BY k';
const ONE_CHILD = 'SELECT k, count(*) AS n FROM events_2026 GROUP BY k';

interface DriftRow {
  view: string;
  changes: string[];
}

const checkDrift = async () =>
  (await db.sql.query<DriftRow>('SELECT view, changes FROM mvrefresh.check_drift(1000)')).rows;

const dirty = (view: string) => viewDirty(db.sql, view);

const reported = (table: string, inserted: number) => insertsReported(db.sql, table, inserted);

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE visits (k int NOT NULL, v int NOT NULL) PARTITION BY LIST (k);
    CREATE TABLE visits_0 PARTITION OF visits FOR VALUES IN (1, 2, 3);
    CREATE TABLE visits_1 PARTITION OF visits FOR VALUES IN (4, 5, 6);
    CREATE MATERIALIZED VIEW visits_0_by_k AS ${ONE_PARTITION};
    CREATE UNIQUE INDEX ON visits_0_by_k (k);
    CREATE MATERIALIZED VIEW visits_by_k AS ${ALL_PARTITIONS};
    CREATE UNIQUE INDEX ON visits_by_k (k);
    CREATE TABLE events (k int NOT NULL);
    CREATE TABLE events_2026 () INHERITS (events);
    CREATE MATERIALIZED VIEW events_2026_by_k AS ${ONE_CHILD};
    CREATE UNIQUE INDEX ON events_2026_by_k (k);
    SELECT mvrefresh.watch('visits_0_by_k');
    SELECT mvrefresh.watch('visits_by_k');
    SELECT mvrefresh.watch('events_2026_by_k');`);
  await db.sql.query('CALL mvrefresh.refresh_dirty()');
  // the baseline of the write counters
  await checkDrift();
});

describe('a view that reads one partition or inheritance child directly', () => {
  it('has a trigger on every ancestor, and the ancestors among its sources', async () => {
    const { rows } = await db.sql.query<{ table: string }>(
      `SELECT tgrelid::regclass::text AS table FROM pg_trigger
        WHERE tgname = 'mvrefresh_mark' AND tgfoid = 'mvrefresh.mark_table()'::regprocedure ORDER BY 1`,
    );
    expect(rows.map((r) => r.table)).toEqual(['events', 'events_2026', 'visits', 'visits_0', 'visits_1']);
    const sources = await db.sql.query<{ sources: string[] }>(
      "SELECT sources FROM mvrefresh.status WHERE view = 'public.visits_0_by_k'",
    );
    expect(sources.rows[0]!.sources).toEqual(['public.visits', 'public.visits_0']);
  });

  it('is marked by an INSERT addressed to the partitioned parent and routed to its partition', async () => {
    await db.sql.query('INSERT INTO visits VALUES (3, 1)');
    expect(await dirty('public.visits_0_by_k')).toBe(true);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'visits_0_by_k', ONE_PARTITION)).toBe(true);
    expect(await viewMatches(db.sql, 'visits_by_k', ALL_PARTITIONS)).toBe(true);
  });

  it('is marked by an UPDATE and a DELETE addressed to the inheritance parent', async () => {
    await db.sql.query('INSERT INTO events_2026 VALUES (1)');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('UPDATE events SET k = 2');
    expect(await dirty('public.events_2026_by_k')).toBe(true);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'events_2026_by_k', ONE_CHILD)).toBe(true);
    await db.sql.query('DELETE FROM events');
    expect(await dirty('public.events_2026_by_k')).toBe(true);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'events_2026_by_k', ONE_CHILD)).toBe(true);
  });

  it('loses the trigger on the parent through the drift check once the partition is detached', async () => {
    await db.sql.query(`
      CREATE TABLE only_parent (k int NOT NULL) PARTITION BY LIST (k);
      CREATE TABLE only_parent_1 PARTITION OF only_parent FOR VALUES IN (1);
      CREATE MATERIALIZED VIEW only_parent_1_n AS SELECT count(*) AS n FROM only_parent_1;
      CREATE UNIQUE INDEX ON only_parent_1_n (n);
      SELECT mvrefresh.watch('only_parent_1_n');`);
    const triggerOnParent = async () =>
      (
        await db.sql.query(
          "SELECT FROM pg_trigger WHERE tgrelid = 'only_parent'::regclass AND tgname = 'mvrefresh_mark'",
        )
      ).rowCount;
    expect(await triggerOnParent()).toBe(1);
    await db.sql.query('ALTER TABLE only_parent DETACH PARTITION only_parent_1');
    const drift = await checkDrift();
    expect(drift.find((d) => d.view === 'public.only_parent_1_n')?.changes).toEqual([
      'source removed: public.only_parent',
    ]);
    expect(await triggerOnParent()).toBe(0);
    await db.sql.query('ALTER TABLE only_parent ATTACH PARTITION only_parent_1 FOR VALUES IN (1)');
    expect((await checkDrift()).find((d) => d.view === 'public.only_parent_1_n')?.changes).toEqual([
      'source added: public.only_parent',
      'trigger missing on public.only_parent',
    ]);
    expect(await triggerOnParent()).toBe(1);
    await db.sql.query("SELECT mvrefresh.unwatch('only_parent_1_n')");
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
  });
});

describe('the periodic drift check after writes routed through a partitioned parent', () => {
  it('reports no unmarked writes to the partitions: the parent’s trigger fired', async () => {
    await checkDrift();
    const { rows } = await db.sql.query<{ n: string }>(
      "SELECT n_tup_ins AS n FROM pg_stat_user_tables WHERE relid = 'visits_0'::regclass",
    );
    const before = Number(rows[0]!.n);
    await db.sql.query('INSERT INTO visits VALUES (1, 1), (2, 1), (4, 1)');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await reported('visits_0', before + 2);
    await db.sql.query('INSERT INTO visits VALUES (1, 2)');
    await reported('visits_0', before + 3);
    const drift = await checkDrift();
    expect(drift.flatMap((d) => d.changes).filter((c) => c.includes('fired no trigger'))).toEqual([]);
    expect(await viewMatches(db.sql, 'visits_by_k', ALL_PARTITIONS)).toBe(false);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'visits_0_by_k', ONE_PARTITION)).toBe(true);
    expect(await viewMatches(db.sql, 'visits_by_k', ALL_PARTITIONS)).toBe(true);
  });

  it('still reports a partition whose trigger was disabled, and reflects the writes addressed to it', async () => {
    await checkDrift();
    await db.sql.query('ALTER TABLE visits_1 DISABLE TRIGGER mvrefresh_mark');
    const { rows } = await db.sql.query<{ n: string }>(
      "SELECT n_tup_ins AS n FROM pg_stat_user_tables WHERE relid = 'visits_1'::regclass",
    );
    await db.sql.query('INSERT INTO visits_1 VALUES (5, 1)');
    await reported('visits_1', Number(rows[0]!.n) + 1);
    const changes = (await checkDrift()).find((d) => d.view === 'public.visits_by_k')?.changes ?? [];
    expect(changes).toContain('trigger disabled on public.visits_1');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'visits_by_k', ALL_PARTITIONS)).toBe(true);
  });
});

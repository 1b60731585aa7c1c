import { describe, expect, it } from 'vitest';
import { sql } from '../src/db/sql.js';
import { useTestDatabase } from './support/db.js';
import { viewMatches } from './support/shop.js';

/**
 * A source changed and changed back between two drift checks, with a refresh in between (the model check's
 * seed 24379 of 2026-12-08: a plain view redefined, the view refreshed for another reason, the plain view
 * given back its definition): the refresh read the other definition, so the view differs from its query
 * although the definition's text is what the last check stored. check_drift() must still mark the view
 * (routines/source_fingerprint.sql: each rule and inheritance link counts with its catalog row's xmin; a
 * policy altered and altered back: test/rls-policy-sources.test.ts).
 * No daemon: each step is a call, in the order that lost the change.
 */
const db = useTestDatabase('drift_aba');
const FILTERED = 'SELECT a FROM aba_t WHERE a > 0';
const MV_QUERY = 'SELECT 1 AS k, count(*) AS n, COALESCE(sum(a), 0) AS total FROM aba_plain';
const PART_QUERY = 'SELECT region, sum(amount) AS total FROM aba_sales GROUP BY region';

async function checkDrift(): Promise<{ view: string; changes: string[] }[]> {
  return (
    await db.sql.query<{ view: string; changes: string[] }>(
      'SELECT view, changes FROM mvrefresh.check_drift(1000)',
    )
  ).rows;
}

/** A refresh cycle of the view, forced, as the daemon runs it for any cause. */
async function refresh(view: string): Promise<void> {
  const { rows } = await db.sql.query<{ id: number }>(
    'SELECT id FROM mvrefresh.view_state WHERE view_name = $1',
    [view],
  );
  await db.sql.query(sql.refreshView, [rows[0]!.id, true, 1000, 5000, 100, 500]);
}

describe('a source changed and changed back between two drift checks, with a refresh in between', () => {
  it('a plain view redefined and given back its definition: the view is marked and refreshed to its query', async () => {
    await db.sql.query(`
      CREATE TABLE aba_t (a int NOT NULL);
      INSERT INTO aba_t VALUES (1), (2), (-5), (-7);
      CREATE VIEW aba_plain AS ${FILTERED};
      CREATE MATERIALIZED VIEW aba_mv AS ${MV_QUERY}; CREATE UNIQUE INDEX ON aba_mv (k);`);
    // a rule's stored text holds the positions of its statement's tokens in the query string (pg_rewrite):
    // the definition given back with the same statement alone reads the same, as in the model check
    await db.sql.query(`CREATE OR REPLACE VIEW aba_plain AS SELECT a FROM aba_t`);
    await db.sql.query(`CREATE OR REPLACE VIEW aba_plain AS ${FILTERED}`);
    await db.sql.query(`SELECT mvrefresh.watch('aba_mv')`);
    expect(await checkDrift()).toEqual([]);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('CREATE OR REPLACE VIEW aba_plain AS SELECT a FROM aba_t');
    await refresh('aba_mv');
    await db.sql.query(`CREATE OR REPLACE VIEW aba_plain AS ${FILTERED}`);
    expect(await viewMatches(db.sql, 'aba_mv', MV_QUERY)).toBe(false);
    expect(await checkDrift()).toEqual([
      { view: 'public.aba_mv', changes: ['definition changed (the view, or a plain view it reads)'] },
    ]);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'aba_mv', MV_QUERY)).toBe(true);
    expect(await checkDrift()).toEqual([]);
  });

  it('a partition detached and attached again: the view is marked and refreshed to its query', async () => {
    await db.sql.query(`
      CREATE TABLE aba_sales (region text NOT NULL, amount int NOT NULL) PARTITION BY LIST (region);
      CREATE TABLE aba_sales_eu PARTITION OF aba_sales FOR VALUES IN ('eu');
      CREATE TABLE aba_sales_us PARTITION OF aba_sales FOR VALUES IN ('us');
      INSERT INTO aba_sales VALUES ('eu', 1), ('us', 10);
      CREATE MATERIALIZED VIEW aba_part AS ${PART_QUERY}; CREATE UNIQUE INDEX ON aba_part (region);
      SELECT mvrefresh.watch('aba_part');`);
    expect(await checkDrift()).toEqual([]);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('ALTER TABLE aba_sales DETACH PARTITION aba_sales_us');
    await refresh('aba_part');
    await db.sql.query("ALTER TABLE aba_sales ATTACH PARTITION aba_sales_us FOR VALUES IN ('us')");
    expect(await viewMatches(db.sql, 'aba_part', PART_QUERY)).toBe(false);
    expect((await checkDrift()).map((r) => r.view)).toEqual(['public.aba_part']);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'aba_part', PART_QUERY)).toBe(true);
  });

  it('a fingerprint stored by an earlier version: replaced without a report when nothing changed, reported when something did', async () => {
    const stored = () =>
      db.sql.query<{ fingerprint: string }>(
        `SELECT f.fingerprint FROM mvrefresh.source_fingerprints f
           JOIN mvrefresh.view_state v ON v.id = f.view_id WHERE v.view_name = 'aba_mv'`,
      );
    const storeV1 = () =>
      db.sql.query(`UPDATE mvrefresh.source_fingerprints f
                       SET fingerprint = mvrefresh.source_fingerprint_v1('aba_mv'::regclass, v.source_relids)
                      FROM mvrefresh.view_state v WHERE v.id = f.view_id AND v.view_name = 'aba_mv'`);
    await storeV1();
    expect((await stored()).rows[0]!.fingerprint).not.toMatch(/^v2:/);
    expect(await checkDrift()).toEqual([]);
    expect((await stored()).rows[0]!.fingerprint).toMatch(/^v2:/);
    await storeV1();
    await db.sql.query('CREATE OR REPLACE VIEW aba_plain AS SELECT a FROM aba_t WHERE a > 1');
    expect((await checkDrift()).map((r) => r.view)).toEqual(['public.aba_mv']);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'aba_mv', MV_QUERY)).toBe(true);
  });
});

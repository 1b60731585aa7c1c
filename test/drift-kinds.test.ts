import { describe, expect, it } from 'vitest';
import { DRIFT_KINDS, type DriftKind } from '../src/db/protocol.js';
import { useTestDatabase } from './support/db.js';

/**
 * check_drift() names the kind of each change it reports (its kinds column, one of DRIFT_KINDS), so that
 * the daemon's metric labels and log levels never depend on how a change is worded.
 */
const db = useTestDatabase('drift_kinds');

interface DriftRow {
  view: string;
  changes: string[];
  kinds: DriftKind[];
}

async function checkDrift(): Promise<DriftRow[]> {
  const { rows } = await db.sql.query<DriftRow>(
    'SELECT view, changes, kinds FROM mvrefresh.check_drift(1000)',
  );
  for (const r of rows) {
    expect(r.kinds).toHaveLength(r.changes.length);
    for (const kind of r.kinds) expect(DRIFT_KINDS).toContain(kind);
  }
  return rows;
}

describe('check_drift() kinds', () => {
  it('says the kind of each change: sources added and removed, a missing trigger, a trigger not ours', async () => {
    await db.sql.query(`
      CREATE TABLE k_a (id int PRIMARY KEY); CREATE TABLE k_b (id int PRIMARY KEY);
      CREATE VIEW k_plain AS SELECT id FROM k_a;
      CREATE MATERIALIZED VIEW k_v AS SELECT id FROM k_plain; CREATE UNIQUE INDEX ON k_v (id);
      SELECT mvrefresh.watch('k_v');`);
    expect(await checkDrift()).toEqual([]);

    await db.sql.query('CREATE OR REPLACE VIEW k_plain AS SELECT id FROM k_b');
    expect(await checkDrift()).toEqual([
      {
        view: 'public.k_v',
        changes: ['source added: public.k_b', 'source removed: public.k_a', 'trigger missing on public.k_b'],
        kinds: ['source_added', 'source_removed', 'trigger'],
      },
    ]);

    await db.sql.query(`
      CREATE FUNCTION k_other() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
      DROP TRIGGER mvrefresh_mark ON k_b;
      CREATE TRIGGER mvrefresh_mark AFTER INSERT ON k_b FOR EACH STATEMENT EXECUTE FUNCTION k_other();`);
    const [foreign] = await checkDrift();
    expect(foreign?.kinds).toEqual(['foreign_trigger']);
    // a standing condition: also in the view's warnings, worded as watch() words it
    const { rows } = await db.sql.query<{ warnings: string[] }>(
      "SELECT warnings FROM mvrefresh.status WHERE view = 'public.k_v'",
    );
    expect(rows[0]!.warnings).toEqual(foreign?.changes);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { sql } from '../src/db/sql.js';
import { testRoles } from './support/roles.js';
import { viewDirty, viewSources } from './support/drift.js';

/**
 * REFRESH runs a view's query as the view's owner, so row-level security policies that apply to that role
 * decide which rows it sees: a table a policy reads changes the view's rows as surely as the tables its
 * query names (issue 23, finding 7). The view's owner here is an ordinary role subject to the policy; the
 * tables belong to another role.
 */
const db = useTestDatabase('rls_policy_sources');
const { TABLES: TABLE_OWNER, VIEWS: VIEW_OWNER, OTHER } = testRoles('rls', 'TABLES', 'VIEWS', 'OTHER');
const QUERY = 'SELECT grp, count(*) AS n FROM docs GROUP BY grp';

const sources = (view: string) => viewSources(db.sql, view);
const dirty = (view: string) => viewDirty(db.sql, view);

/** The view equals its query as its owner sees it (with the policies that apply to the owner). */
async function fresh(view: string): Promise<boolean> {
  await db.sql.query(`SET ROLE ${VIEW_OWNER}`);
  try {
    const { rows } = await db.sql.query<{ differs: boolean }>(
      `SELECT EXISTS ((SELECT * FROM ${view} EXCEPT ALL ${QUERY}) UNION ALL (${QUERY} EXCEPT ALL SELECT * FROM ${view})) AS differs`,
    );
    return !rows[0]!.differs;
  } finally {
    await db.sql.query('RESET ROLE');
  }
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE ROLE ${TABLE_OWNER}; CREATE ROLE ${VIEW_OWNER}; CREATE ROLE ${OTHER};
    GRANT CREATE, USAGE ON SCHEMA public TO ${TABLE_OWNER}, ${VIEW_OWNER};
    SET ROLE ${TABLE_OWNER};
    CREATE TABLE visible_groups (grp int NOT NULL);
    CREATE TABLE hidden_groups (grp int NOT NULL);
    CREATE TABLE docs (grp int NOT NULL, body text);
    ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
    CREATE POLICY readers ON docs FOR SELECT TO ${VIEW_OWNER} USING (grp IN (SELECT grp FROM visible_groups));
    CREATE POLICY others ON docs FOR SELECT TO ${OTHER} USING (grp NOT IN (SELECT grp FROM hidden_groups));
    GRANT SELECT ON docs, visible_groups, hidden_groups TO ${VIEW_OWNER};
    INSERT INTO docs VALUES (1, 'a'), (2, 'b'), (2, 'c');
    INSERT INTO visible_groups VALUES (1);
    SET ROLE ${VIEW_OWNER};
    CREATE MATERIALIZED VIEW docs_by_group AS ${QUERY};
    CREATE UNIQUE INDEX ON docs_by_group (grp);
    RESET ROLE;
    SELECT mvrefresh.watch('docs_by_group');`);
  await db.sql.query('CALL mvrefresh.refresh_dirty()');
  await db.sql.query('SELECT count(*) FROM mvrefresh.check_drift(1000)');
});

afterAll(async () => {
  await db.sql.query(`SELECT mvrefresh.unwatch('docs_by_group')`);
  for (const role of [VIEW_OWNER, TABLE_OWNER, OTHER]) {
    await db.sql.query(`DROP OWNED BY ${role}`);
    await db.sql.query(`DROP ROLE ${role}`);
  }
});

describe('a view whose owner is subject to a row-level security policy of a table it reads', () => {
  it('has the tables that policy reads among its sources, and not those of policies for other roles', async () => {
    expect(await sources('public.docs_by_group')).toEqual(['public.visible_groups', 'public.docs']);
  });

  it('is marked by a write to a table the policy reads, and shows the rows it makes visible once refreshed', async () => {
    expect(await fresh('docs_by_group')).toBe(true);
    await db.sql.query('INSERT INTO visible_groups VALUES (2)');
    expect(await dirty('public.docs_by_group')).toBe(true);
    expect(await fresh('docs_by_group')).toBe(false);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await fresh('docs_by_group')).toBe(true);
  });

  it('is refreshed by the drift check when the policy is altered to read another table', async () => {
    await db.sql.query(
      `ALTER POLICY readers ON docs USING (grp IN (SELECT grp FROM visible_groups) AND grp NOT IN (SELECT grp FROM hidden_groups))`,
    );
    const { rows } = await db.sql.query<{ view: string; changes: string[] }>(
      'SELECT view, changes FROM mvrefresh.check_drift(1000)',
    );
    expect(rows).toEqual([
      {
        view: 'public.docs_by_group',
        changes: ['source added: public.hidden_groups', 'trigger missing on public.hidden_groups'],
      },
    ]);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('INSERT INTO hidden_groups VALUES (2)');
    expect(await dirty('public.docs_by_group')).toBe(true);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await fresh('docs_by_group')).toBe(true);
  });
  it('is refreshed by the drift check when the policy is altered and altered back between two checks, with a refresh in between', async () => {
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('SELECT count(*) FROM mvrefresh.check_drift(1000)');
    expect(await fresh('docs_by_group')).toBe(true);
    const { rows } = await db.sql.query<{ qual: string; id: number }>(
      `SELECT pg_get_expr(p.polqual, p.polrelid) AS qual,
              (SELECT id FROM mvrefresh.view_state WHERE view_name = 'docs_by_group') AS id
         FROM pg_policy p WHERE p.polname = 'readers'`,
    );
    await db.sql.query('ALTER POLICY readers ON docs USING (true)');
    await db.sql.query(sql.refreshView, [rows[0]!.id, true, 1000, 5000, 100, 500]);
    await db.sql.query(`ALTER POLICY readers ON docs USING (${rows[0]!.qual})`);
    expect(await fresh('docs_by_group')).toBe(false);
    const { rows: drift } = await db.sql.query<{ view: string }>(
      'SELECT view FROM mvrefresh.check_drift(1000)',
    );
    expect(drift.map((r) => r.view)).toEqual(['public.docs_by_group']);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await fresh('docs_by_group')).toBe(true);
  });
});

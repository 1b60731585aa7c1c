import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { PG15, serverVersionNum } from './support/version.js';

const db = useTestDatabase('replace');
const suffix = `${process.pid}`;
const OWNER = `mvr_rp_owner_${suffix}`;
const READER = `mvr_rp_reader_${suffix}`;
const VIEWER = `mvr_rp_viewer_${suffix}`;

const NEW_DEFINITION = `SELECT customer, sum(amount) AS total, count(*) AS n, max(amount) AS biggest
  FROM orders GROUP BY customer`;

async function replace(args: string[], env: Record<string, string> = {}) {
  const p = runCli(['replace', ...args], { DATABASE_URL: db.url, ...env });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

async function one<T>(text: string, values: unknown[] = []): Promise<T> {
  return (await db.sql.query<T & object>(text, values)).rows[0]!;
}

async function all<T>(text: string, values: unknown[] = []): Promise<T[]> {
  return (await db.sql.query<T & object>(text, values)).rows;
}

/** Everything the catalog says about the properties a replacement must keep, read without our code. */
async function catalogSnapshot() {
  return {
    indexes: await all(
      `SELECT indexname, regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON') AS def FROM pg_indexes
        WHERE tablename = 'totals' ORDER BY 1`,
    ),
    clustered: await all(
      `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'totals'::regclass AND i.indisclustered`,
    ),
    rel: await one(
      `SELECT pg_get_userbyid(relowner) AS owner, reloptions, reltablespace,
              (SELECT reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid) AS toast
         FROM pg_class c WHERE oid = 'totals'::regclass`,
    ),
    acl: await all(
      `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
              a.privilege_type, a.is_grantable
         FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'totals'::regclass ORDER BY 1, 2`,
    ),
    columnAcl: await all(
      `SELECT at.attname, pg_get_userbyid(a.grantee) AS grantee, a.privilege_type
         FROM pg_attribute at, aclexplode(at.attacl) a WHERE at.attrelid = 'totals'::regclass ORDER BY 1, 2`,
    ),
    privileges: await one(
      `SELECT has_table_privilege($1, 'totals', 'SELECT') AS reader_select,
              has_column_privilege($2, 'totals', 'total', 'SELECT') AS viewer_total,
              has_column_privilege($2, 'totals', 'customer', 'SELECT') AS viewer_customer,
              has_table_privilege($2, 'big_customers', 'SELECT') AS viewer_view`,
      [READER, VIEWER],
    ),
    comments: await all(
      `SELECT objsubid, description FROM pg_description
        WHERE objoid = 'totals'::regclass ORDER BY 1`,
    ),
    indexComment: await one(`SELECT obj_description('totals_total'::regclass, 'pg_class') AS c`),
    views: await all(
      `SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner, c.reloptions,
              obj_description(c.oid, 'pg_class') AS comment, c.relacl::text AS acl
         FROM pg_class c WHERE c.relname IN ('big_customers', 'top_customers', 'top_view') ORDER BY 1`,
    ),
    dependantColumnComment: await one(`SELECT col_description('big_customers'::regclass, 1) AS c`),
    dependantTriggers: await all(
      `SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = 'top_view'::regclass`,
    ),
    dependantIndexes: await all(
      `SELECT indexname FROM pg_indexes WHERE tablename = 'top_customers' ORDER BY 1`,
    ),
    settings: await all(
      `SELECT view_name, max_staleness_ms, refresh_budget, refresh_interval_ms, depth, paused, id
         FROM mvrefresh.view_state ORDER BY view_name`,
    ),
    deps: await all(
      `SELECT v.view_name, d.view_name AS depends_on FROM mvrefresh.view_deps x
         JOIN mvrefresh.view_state v ON v.id = x.view_id JOIN mvrefresh.view_state d ON d.id = x.depends_on`,
    ),
  };
}

beforeAll(async () => {
  for (const role of [OWNER, READER, VIEWER]) await db.sql.query(`CREATE ROLE ${role}`);
  // security_invoker exists from PostgreSQL 15
  const invoker = (await serverVersionNum(db.sql)) >= PG15 ? ', security_invoker = true' : '';
  await db.sql.query(`
    CREATE TABLE orders (id serial PRIMARY KEY, customer int NOT NULL, amount numeric NOT NULL);
    CREATE TABLE refunds (id serial PRIMARY KEY, customer int NOT NULL);
    INSERT INTO orders (customer, amount) SELECT g % 50, g FROM generate_series(1, 2000) g;
    GRANT SELECT ON orders, refunds TO ${OWNER};
    CREATE MATERIALIZED VIEW totals WITH (fillfactor = 70, autovacuum_enabled = false, toast.autovacuum_enabled = false) AS
      SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer;
    ALTER MATERIALIZED VIEW totals OWNER TO ${OWNER};
    CREATE UNIQUE INDEX totals_customer ON totals (customer);
    CREATE INDEX totals_total ON totals (total DESC) WITH (fillfactor = 60) WHERE total > 0;
    ALTER MATERIALIZED VIEW totals CLUSTER ON totals_customer;
    COMMENT ON INDEX totals_total IS 'by total';
    COMMENT ON MATERIALIZED VIEW totals IS 'sales by customer';
    COMMENT ON COLUMN totals.total IS 'sum of amounts';
    GRANT SELECT ON totals TO ${READER} WITH GRANT OPTION;
    GRANT SELECT (customer) ON totals TO ${VIEWER};
    CREATE VIEW big_customers WITH (security_barrier = true${invoker}) AS
      SELECT customer, total FROM totals WHERE total > 30000;
    ALTER VIEW big_customers OWNER TO ${OWNER};
    COMMENT ON VIEW big_customers IS 'the big ones';
    COMMENT ON COLUMN big_customers.customer IS 'who';
    GRANT SELECT ON big_customers TO ${VIEWER};
    CREATE VIEW top_view AS SELECT customer FROM big_customers;
    CREATE FUNCTION top_view_insert() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
    CREATE TRIGGER top_view_insert INSTEAD OF INSERT ON top_view FOR EACH ROW EXECUTE FUNCTION top_view_insert();
    CREATE MATERIALIZED VIEW top_customers AS SELECT customer, n FROM totals WHERE n > 10;
    CREATE UNIQUE INDEX top_customers_customer ON top_customers (customer);
  `);
  await db.sql.query(`SELECT mvrefresh.watch('totals', p_max_staleness_ms => 5000, p_refresh_budget => 0.3)`);
  await db.sql.query(`SELECT mvrefresh.watch('top_customers', p_refresh_interval_ms => 60000)`);
});

afterAll(async () => {
  for (const role of [OWNER, READER, VIEWER]) {
    await db.sql.query(`DROP OWNED BY ${role}`).catch(() => undefined);
    await db.sql.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  }
});

describe('mvrefresh replace', () => {
  it('swaps in the new definition and keeps indexes, owner, grants, comments, storage, dependants and settings', async () => {
    const before = await catalogSnapshot();
    const oldOid = (await one<{ oid: number }>(`SELECT 'totals'::regclass::oid AS oid`)).oid;
    const r = await replace(['totals', '--query', NEW_DEFINITION]);
    expect(r.text).toContain('replaced totals');
    expect(r.code).toBe(0);
    const after = await catalogSnapshot();
    expect(after).toEqual(before);
    expect((await one<{ oid: number }>(`SELECT 'totals'::regclass::oid AS oid`)).oid).not.toBe(oldOid);
    // the view equals its new query, its dependants are populated from it
    const diff = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM ((TABLE totals EXCEPT ${NEW_DEFINITION}) UNION ALL (${NEW_DEFINITION} EXCEPT TABLE totals)) x`,
    );
    expect(diff.n).toBe(0);
    expect((await one<{ n: number }>('SELECT count(*)::int AS n FROM top_customers')).n).toBe(50);
    expect((await one<{ n: number }>('SELECT count(*)::int AS n FROM top_view')).n).toBeGreaterThan(0);
    // leaves nothing behind, and asks the daemon to refresh it (writes during the build)
    expect(await all(`SELECT relname FROM pg_class WHERE relname LIKE '%mvr%'`)).toEqual([]);
    expect(await one(`SELECT status, step FROM mvrefresh.replace_requests ORDER BY id DESC LIMIT 1`)).toEqual(
      { status: 'done', step: 'done' },
    );
    const marks = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM mvrefresh.marks m JOIN mvrefresh.view_state v ON v.id = m.view_id
        WHERE v.view_name = 'totals'`,
    );
    expect(marks.n).toBeGreaterThan(0);
  });

  it('re-syncs the triggers when the new definition reads another table', async () => {
    const r = await replace([
      'totals',
      '--query',
      `SELECT o.customer, sum(o.amount) AS total, count(*) AS n, max(o.amount) AS biggest
         FROM orders o WHERE NOT EXISTS (SELECT FROM refunds f WHERE f.customer = o.customer) GROUP BY o.customer`,
    ]);
    expect(r.code).toBe(0);
    expect(
      await all(
        `SELECT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = 'mvrefresh_mark' ORDER BY 1`,
      ),
    ).toEqual([{ t: 'orders' }, { t: 'refunds' }]);
  });

  it('refuses a definition that drops or retypes a column a dependant uses, naming both, and changes nothing', async () => {
    const before = await catalogSnapshot();
    const dropped = await replace([
      'totals',
      '--query',
      'SELECT customer, count(*) AS n FROM orders GROUP BY customer',
    ]);
    expect(dropped.code).toBe(1);
    expect(dropped.text).toContain('big_customers uses column total, which the new definition drops');
    const retyped = await replace([
      'totals',
      '--query',
      'SELECT customer, sum(amount)::text AS total, count(*) AS n FROM orders GROUP BY customer',
    ]);
    expect(retyped.code).toBe(1);
    expect(retyped.text).toContain(
      'big_customers uses column total, which the new definition retypes from numeric to text',
    );
    expect(await catalogSnapshot()).toEqual(before);
    expect(await all(`SELECT relname FROM pg_class WHERE relname LIKE '%mvr%'`)).toEqual([]);
  });

  it('refuses a definition that fails, and a name that is not a materialized view', async () => {
    const bad = await replace(['totals', '--query', 'SELECT nope FROM orders']);
    expect(bad.code).toBe(1);
    expect(bad.text).toMatch(/the new definition fails: .*nope/);
    const notMv = await replace(['big_customers', '--query', 'SELECT 1']);
    expect(notMv.code).toBe(1);
    expect(notMv.text).toContain('is not a materialized view');
    const usage = await replace(['totals']);
    expect(usage.code).toBe(2);
    expect(await all(`SELECT relname FROM pg_class WHERE relname LIKE '%mvr%'`)).toEqual([]);
  });

  it('replaces a view whose schema and name need quoting', async () => {
    await db.sql.query(`
      CREATE SCHEMA "Other Schema";
      CREATE MATERIALIZED VIEW "Other Schema"."Mixed View" AS SELECT customer AS "Who" FROM orders GROUP BY customer;
      CREATE UNIQUE INDEX "Mixed Index" ON "Other Schema"."Mixed View" ("Who");
    `);
    const r = await replace([
      '"Other Schema"."Mixed View"',
      '--query',
      'SELECT customer AS "Who", count(*) AS "How Many" FROM orders GROUP BY customer',
    ]);
    expect(r.text).toContain('replaced');
    expect(r.code).toBe(0);
    expect(
      await all(
        `SELECT indexname FROM pg_indexes WHERE schemaname = 'Other Schema' AND tablename = 'Mixed View'`,
      ),
    ).toEqual([{ indexname: 'Mixed Index' }]);
    expect(await one(`SELECT "How Many" AS n FROM "Other Schema"."Mixed View" WHERE "Who" = 1`)).toEqual({
      n: '40',
    });
  });

  it('refuses a request from a role that is not a member of the owner role', async () => {
    const err = await db.sql
      .query(
        `GRANT USAGE ON SCHEMA mvrefresh TO ${READER};
         GRANT EXECUTE ON ALL ROUTINES IN SCHEMA mvrefresh TO ${READER};
         SET ROLE ${READER}; SELECT mvrefresh.request_replace('totals', 'SELECT 1')`,
      )
      .catch((e: Error) => e.message);
    await db.sql.query('RESET ROLE');
    expect(err).toContain(
      `role ${READER} may not replace public.totals: only members of its owner role (${OWNER}) may`,
    );
  });

  it('gives up the swap after --timeout while a long reader holds the view, leaving it as it was', async () => {
    const reader = new pg.Client({ connectionString: db.url });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM totals');
      const before = await catalogSnapshot();
      const r = await replace([
        'totals',
        '--query',
        NEW_DEFINITION,
        '--lock-timeout',
        '100ms',
        '--timeout',
        '1s',
      ]);
      expect(r.code).toBe(1);
      expect(r.text).toMatch(
        /could not take the locks of public\.totals for the swap within 1000 ms \(\d+ attempts of at most 100 ms each\)/,
      );
      expect(await catalogSnapshot()).toEqual(before);
      expect(await all(`SELECT relname FROM pg_class WHERE relname LIKE '%mvr%'`)).toEqual([]);
    } finally {
      await reader.end();
    }
  });
});

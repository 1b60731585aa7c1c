import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { watchView, type WatchReport } from '../src/commands/admin.js';
import { sql } from '../src/db/sql.js';
import { useTestDatabase } from './support/db.js';
import { lemmyPost } from './support/lemmy.js';

const db = useTestDatabase('watch');

type Report = WatchReport;

async function watch(
  name: string,
  opts: { withDependencies?: boolean; allowBlocking?: boolean; interval?: number } = {},
) {
  const { rows } = await db.sql.query<{ r: Report }>(
    'SELECT mvrefresh.watch($1, p_refresh_interval_ms => $2, p_allow_blocking_refresh => $3, p_with_dependencies => $4) AS r',
    [name, opts.interval ?? null, opts.allowBlocking ?? false, opts.withDependencies ?? false],
  );
  return rows[0]!.r;
}

async function watchError(name: string, opts: Parameters<typeof watch>[1] = {}) {
  try {
    await watch(name, opts);
  } catch (err) {
    return err as pg.DatabaseError;
  }
  throw new Error(`watch(${name}) succeeded`);
}

/** Triggers mvrefresh installed, as "table: definition". */
async function triggers(): Promise<string[]> {
  const { rows } = await db.sql.query<{ t: string }>(
    `SELECT tgrelid::regclass || ': ' || pg_get_triggerdef(oid) AS t FROM pg_trigger
      WHERE tgfoid = 'mvrefresh.mark_table()'::regprocedure ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

/** The tables that carry mvrefresh's trigger. */
async function triggered(): Promise<string[]> {
  return (await triggers()).map((t) => t.split(': ')[0]!);
}

async function marked(view: string): Promise<boolean> {
  const { rows } = await db.sql.query<{ dirty: boolean }>(
    'SELECT dirty FROM mvrefresh.status WHERE view = $1',
    [view],
  );
  return rows[0]?.dirty ?? false;
}

/** Clears a view's marks as a refresh cycle would. */
async function refresh(view: string) {
  const { rows } = await db.sql.query<{ id: number }>('SELECT id FROM mvrefresh.status WHERE view = $1', [
    view,
  ]);
  await db.sql.query(sql.refreshView, [rows[0]!.id, false, 1000, 5000, 1000, 300000]);
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE base_a (id int PRIMARY KEY, amount int, note text);
    CREATE TABLE base_b (id int PRIMARY KEY, a_id int, label text, unread text);
    CREATE VIEW v1 AS SELECT a.id, a.amount, b.label FROM base_a a JOIN base_b b ON b.a_id = a.id;
    CREATE VIEW v2 AS SELECT id, amount * 2 AS amount2, label FROM v1 WHERE amount > 0;
    CREATE MATERIALIZED VIEW through_views AS SELECT id, amount2, label FROM v2;
    CREATE UNIQUE INDEX ON through_views (id);
    CREATE TABLE measurements (at date NOT NULL, value int) PARTITION BY RANGE (at);
    CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE MATERIALIZED VIEW yearly AS SELECT date_trunc('year', at) AS year, sum(value) AS total FROM measurements GROUP BY 1;
    CREATE UNIQUE INDEX ON yearly (year);
  `);
});

describe('watch discovers what a view reads', () => {
  it('follows a chain of plain views down to the tables, and puts one trigger naming no column on each, enabled ALWAYS', async () => {
    const report = await watch('through_views');
    expect(report.tables.sort()).toEqual(['public.base_a', 'public.base_b']);
    expect(await triggers()).toEqual([
      'base_a: CREATE TRIGGER mvrefresh_mark AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.base_a FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.mark_table()',
      'base_b: CREATE TRIGGER mvrefresh_mark AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.base_b FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.mark_table()',
    ]);
    const { rows } = await db.sql.query(
      "SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgname = 'mvrefresh_mark'",
    );
    expect(rows).toEqual([{ tgenabled: 'A' }]);
  });

  it('marks the view for an UPDATE of any column of a table it reads', async () => {
    await db.sql.query("INSERT INTO base_a VALUES (1, 5, 'n'); INSERT INTO base_b VALUES (1, 1, 'l', 'u')");
    await refresh('public.through_views');
    expect(await marked('public.through_views')).toBe(false);
    await db.sql.query("UPDATE base_b SET unread = 'changed'");
    expect(await marked('public.through_views')).toBe(true);
  });

  it('marks the view on TRUNCATE', async () => {
    await refresh('public.through_views');
    await db.sql.query('TRUNCATE base_b');
    expect(await marked('public.through_views')).toBe(true);
  });

  it('covers the partitions of a partitioned table: a write addressed to a partition marks the view', async () => {
    const report = await watch('yearly');
    expect(report.tables.sort()).toEqual([
      'public.measurements',
      'public.measurements_2024',
      'public.measurements_2025',
    ]);
    await refresh('public.yearly');
    await db.sql.query("INSERT INTO measurements_2025 VALUES ('2025-03-01', 1)");
    expect(await marked('public.yearly')).toBe(true);
    await refresh('public.yearly');
    await db.sql.query("INSERT INTO measurements VALUES ('2024-03-01', 1)");
    expect(await marked('public.yearly')).toBe(true);
  });

  it('covers a partition created after watch once watch runs again', async () => {
    await db.sql.query(
      "CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    );
    const report = await watch('yearly');
    expect(report.tables).toContain('public.measurements_2026');
    await refresh('public.yearly');
    await db.sql.query("INSERT INTO measurements_2026 VALUES ('2026-03-01', 1)");
    expect(await marked('public.yearly')).toBe(true);
  });

  it("lets the application's migrations alter and drop the columns a watched view read (Lemmy's pattern), and keeps marking", async () => {
    const lemmy = lemmyPost('post_mview');
    await db.sql.query(lemmy.create);
    await watch('post_mview');
    await db.sql.query(lemmy.migrate);
    await refresh('public.post_mview');
    expect(await marked('public.post_mview')).toBe(false);
    await db.sql.query("UPDATE post SET name = 'b'");
    expect(await marked('public.post_mview')).toBe(true);
    expect(await triggered()).toContain('post');
  });

  it('refuses a view that reads an unwatched materialized view, and watches it too with --with-dependencies', async () => {
    await db.sql.query(`CREATE TABLE up_src (k int PRIMARY KEY);
      CREATE MATERIALIZED VIEW upstream AS SELECT k FROM up_src; CREATE UNIQUE INDEX ON upstream (k);
      CREATE MATERIALIZED VIEW downstream AS SELECT count(*) AS n, 1 AS one FROM upstream; CREATE UNIQUE INDEX ON downstream (one);`);
    const err = await watchError('downstream');
    expect(err.code).toBe('55000');
    expect(err.message).toContain('upstream');
    expect(err.hint).toContain('--with-dependencies');
    const report = await watch('downstream', { withDependencies: true });
    expect(report.dependencies).toEqual(['public.upstream']);
    expect(report.tables).toEqual([]);
    const { rows } = await db.sql.query<{ view: string; depth: number; depends_on: string[] }>(
      "SELECT view, depth, depends_on FROM mvrefresh.status WHERE view IN ('public.upstream', 'public.downstream') ORDER BY depth",
    );
    expect(rows).toEqual([
      { view: 'public.upstream', depth: 0, depends_on: [] },
      { view: 'public.downstream', depth: 1, depends_on: ['public.upstream'] },
    ]);
  });

  it('warns about a function reading a table it cannot trigger on and accepts a refresh interval for it', async () => {
    await db.sql.query('CREATE TABLE ext_source (v int)');
    await db.sql
      .query(`CREATE FUNCTION ext_value() RETURNS int LANGUAGE sql STABLE AS 'SELECT count(*)::int FROM public.ext_source';
      CREATE MATERIALIZED VIEW uses_function AS SELECT 1 AS one, ext_value() AS v; CREATE UNIQUE INDEX ON uses_function (one);`);
    const report = await watch('uses_function', { interval: 60_000 });
    expect(report.warnings.join(' ')).toMatch(
      /calls function public\.ext_value\(\) .*names public\.ext_source/,
    );
    const { rows } = await db.sql.query(
      "SELECT reason FROM mvrefresh.due_views() WHERE view_id = $1 AND reason = 'interval'",
      [report.id],
    );
    expect(rows).toHaveLength(1);
  });

  it('is idempotent, and brings triggers in line after the view is redefined', async () => {
    const first = await watch('through_views');
    const again = await watch('through_views');
    expect(again.id).toBe(first.id);
    expect(again.created).toBe(false);
    await db.sql.query(`CREATE TABLE base_c (id int PRIMARY KEY, x int);
      DROP MATERIALIZED VIEW through_views;
      CREATE MATERIALIZED VIEW through_views AS SELECT id, x AS amount2, 'c' AS label FROM base_c;
      CREATE UNIQUE INDEX ON through_views (id);`);
    const redefined = await watch('through_views');
    expect(redefined.id).toBe(first.id);
    expect(redefined.tables).toEqual(['public.base_c']);
    const tables = await triggered();
    expect(tables).toContain('base_c');
    expect(tables).not.toContain('base_a');
    expect(tables).not.toContain('base_b');
  });
});

describe('watch under writers', () => {
  it('retries its trigger change behind a long writer, never holding the other writers up for long', async () => {
    await db.sql.query(`CREATE TABLE busy_src (id int PRIMARY KEY);
      CREATE MATERIALIZED VIEW busy_view AS SELECT id FROM busy_src; CREATE UNIQUE INDEX ON busy_view (id);`);
    const long = new pg.Client({ connectionString: db.url });
    const watcher = new pg.Client({ connectionString: db.url });
    await Promise.all([long.connect(), watcher.connect()]);
    try {
      await long.query('BEGIN; INSERT INTO busy_src VALUES (0)');
      let watched = false;
      const watching = watchView(watcher, 'busy_view', {}).then((r) => {
        watched = true;
        return r;
      });
      // CREATE TRIGGER waits behind the long writer; new writers would queue behind it, but only for
      // the routine's short lock_timeout before it backs off
      for (let i = 1; i <= 8; i += 1)
        await db.exec(`SET statement_timeout = '1s'; INSERT INTO busy_src VALUES (${i})`);
      expect(watched).toBe(false);
      await long.query('COMMIT');
      expect((await watching).tables).toEqual(['public.busy_src']);
      expect(await triggered()).toContain('busy_src');
    } finally {
      await Promise.all([long.end(), watcher.end()]);
    }
  });
});

describe('names', () => {
  const names = [
    ['"MixedCase"', 'public."MixedCase"'],
    ['"ventes_été"', 'public."ventes_été"'],
    ['"売上"', 'public."売上"'],
    ['"x""; DROP TABLE base_a; --"', 'public."x""; DROP TABLE base_a; --"'],
    ['other."Sales View"', 'other."Sales View"'],
  ] as const;

  it.each(names)(
    'watches and unwatches %s through the catalog, injecting nothing',
    async (given, qualified) => {
      await db.sql.query('CREATE SCHEMA IF NOT EXISTS other');
      await db.sql.query(`CREATE TABLE IF NOT EXISTS name_src (id int PRIMARY KEY);
      CREATE MATERIALIZED VIEW ${qualified} AS SELECT id FROM name_src;
      CREATE UNIQUE INDEX ON ${qualified} (id);`);
      const report = await watch(given);
      expect(report.tables).toEqual(['public.name_src']);
      const { rows } = await db.sql.query<{ view: string }>(
        'SELECT view FROM mvrefresh.status WHERE id = $1',
        [report.id],
      );
      expect(rows[0]!.view).toBe(qualified);
      await db.sql.query('SELECT mvrefresh.unwatch($1)', [given]);
      expect(await triggered()).not.toContain('name_src');
      expect(
        (await db.sql.query('SELECT 1 FROM mvrefresh.view_state WHERE id = $1', [report.id])).rows,
      ).toEqual([]);
      expect((await db.sql.query("SELECT to_regclass('base_a') IS NOT NULL AS ok")).rows[0]).toEqual({
        ok: true,
      });
    },
  );
});

describe('hostile source names', () => {
  it('quotes table names in the triggers it creates', async () => {
    await db.sql
      .query(`CREATE TABLE "t""; DROP TABLE base_a; --" ("Amount €" int, "id"")--" int PRIMARY KEY, other int);
      CREATE MATERIALIZED VIEW hostile_src AS SELECT "id"")--" AS id, "Amount €" AS amount FROM "t""; DROP TABLE base_a; --";
      CREATE UNIQUE INDEX ON hostile_src (id);`);
    const report = await watch('hostile_src');
    expect(report.tables).toEqual(['public."t""; DROP TABLE base_a; --"']);
    expect(await triggered()).toContain('"t""; DROP TABLE base_a; --"');
    await refresh('public.hostile_src');
    await db.sql.query('INSERT INTO "t""; DROP TABLE base_a; --" VALUES (1, 1, 1)');
    expect(await marked('public.hostile_src')).toBe(true);
    await db.sql.query('SELECT mvrefresh.unwatch($1)', ['hostile_src']);
    expect(await triggered()).not.toContain('"t""; DROP TABLE base_a; --"');
    expect((await db.sql.query("SELECT to_regclass('base_a') IS NOT NULL AS ok")).rows[0]).toEqual({
      ok: true,
    });
  });
});

describe('refusals', () => {
  it.each([
    ['base_a', '42809', /not a materialized view \(it is a table\)/],
    ['v1', '42809', /not a materialized view \(it is a view\)/],
    ['no_such_view', '42P01', /does not exist/],
    // a malformed name: a syntax error up to PostgreSQL 15, no such relation from 16 on
    ['"unterminated', '42602|42P01', /./],
  ])('refuses %s with SQLSTATE %s', async (name, code, message) => {
    const err = await watchError(name);
    expect(err.code).toMatch(new RegExp(`^(${code})$`));
    expect(err.message).toMatch(message);
  });

  it('refuses a view without a unique index, with a hint that names the index to create', async () => {
    await db.sql.query('CREATE MATERIALIZED VIEW no_index AS SELECT id, amount FROM base_a');
    const err = await watchError('no_index');
    expect(err.code).toBe('55000');
    expect(err.hint).toMatch(/CREATE UNIQUE INDEX ON public\.no_index \(id, amount\)/);
    const report = await watch('no_index', { allowBlocking: true });
    expect(report.created).toBe(true);
  });

  it('refuses a role that does not own the view', async () => {
    const role = `mvr_stranger_${process.pid}`;
    await db.sql.query(`CREATE ROLE ${role}; GRANT USAGE ON SCHEMA mvrefresh TO ${role}`);
    try {
      await db.sql.query(`SET ROLE ${role}`);
      const err = await watchError('yearly');
      expect(err.code).toBe('42501');
      expect(err.message).toMatch(/cannot refresh/);
    } finally {
      await db.sql.query('RESET ROLE');
      await db.sql.query(`REVOKE ALL ON SCHEMA mvrefresh FROM ${role}; DROP ROLE ${role}`);
    }
  });
});

describe('unwatch', () => {
  it('keeps the triggers another watched view needs on a shared table, and removes the rest', async () => {
    await db.sql.query(`CREATE TABLE shared (id int PRIMARY KEY, v int);
      CREATE MATERIALIZED VIEW s1 AS SELECT id, v FROM shared; CREATE UNIQUE INDEX ON s1 (id);
      CREATE MATERIALIZED VIEW s2 AS SELECT id FROM shared; CREATE UNIQUE INDEX ON s2 (id);`);
    const one = await watch('s1');
    await watch('s2');
    const removed = await db.sql.query<{ r: { tables: string[] } }>("SELECT mvrefresh.unwatch('s1') AS r");
    expect(removed.rows[0]!.r.tables).toEqual([]);
    expect((await triggered()).filter((t) => t === 'shared')).toHaveLength(1);
    const { rows } = await db.sql.query('SELECT 1 FROM mvrefresh.view_state WHERE id = $1', [one.id]);
    expect(rows).toEqual([]);
    const last = await db.sql.query<{ r: { tables: string[] } }>("SELECT mvrefresh.unwatch('s2') AS r");
    expect(last.rows[0]!.r.tables).toEqual(['public.shared']);
    expect(await triggered()).not.toContain('shared');
  });

  it('refuses while a watched view reads the view, naming it, and removes nothing', async () => {
    const before = await triggers();
    await expect(db.sql.query("SELECT mvrefresh.unwatch('upstream')")).rejects.toMatchObject({
      code: '2BP01',
      message: 'public.upstream is read by watched view(s) public.downstream',
    });
    expect(await triggers()).toEqual(before);
    expect(
      (await db.sql.query("SELECT 1 FROM mvrefresh.status WHERE view = 'public.upstream'")).rows,
    ).toHaveLength(1);
  });

  it('refuses a name that is not watched (42704)', async () => {
    await expect(db.sql.query("SELECT mvrefresh.unwatch('base_a')")).rejects.toMatchObject({
      code: '42704',
      message: 'materialized view "base_a" is not watched',
    });
  });

  it('unwatch_all leaves no trigger, no registration and no mark', async () => {
    await db.sql.query('SELECT mvrefresh.unwatch_all()');
    expect(await triggers()).toEqual([]);
    for (const table of ['view_state', 'marks', 'table_marks', 'view_deps'])
      expect((await db.sql.query(`SELECT count(*)::int AS n FROM mvrefresh.${table}`)).rows[0]).toEqual({
        n: 0,
      });
  });
});

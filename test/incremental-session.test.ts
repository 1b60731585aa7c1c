import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { testRoles } from './support/roles.js';

/**
 * The apply's temporary tables (mvrefresh_keys_<view id>, mvr_b_<source oid>) stay for the session that applies
 * (routines/apply_view.sql): one session applies views of different key columns and owners, a source's log
 * gains a column while the session holds its batch table, and the tables are empty after every apply.
 */
const db = useTestDatabase('incremental_session');
const { OTHER } = testRoles('incs', 'OTHER');

const VIEWS: Record<string, string> = {
  by_post: 'SELECT post_id, count(*) AS n, sum(score) AS total FROM comments GROUP BY post_id',
  // recomputed by key (a filtered count(DISTINCT) has no multiset): the keys table's view
  by_author:
    'SELECT author_id, count(DISTINCT post_id) FILTER (WHERE score > 10) AS posts FROM comments GROUP BY author_id',
  // count(DISTINCT) by its multiset, of the other owner: its part of the apply runs in that role
  author_posts: 'SELECT author_id, count(DISTINCT post_id) AS posts FROM comments GROUP BY author_id',
  by_day: `SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM comments GROUP BY 1`,
};
const KEYS: Record<string, string> = {
  by_post: 'post_id',
  by_author: 'author_id',
  author_posts: 'author_id',
  by_day: 'day',
};

async function count(sql: string): Promise<number> {
  return Number((await db.sql.query<{ n: string }>(sql)).rows[0]!.n);
}

async function differs(view: string, def: string): Promise<number> {
  return count(
    `SELECT count(*) AS n FROM ((TABLE ${view} EXCEPT ALL ${def}) UNION ALL (${def} EXCEPT ALL TABLE ${view})) d`,
  );
}

async function watch(view: string): Promise<void> {
  const p = runCli(['watch', view, '--incremental'], { DATABASE_URL: db.url });
  const { code } = await p.exit;
  expect(p.text(), view).toContain('is incremental');
  expect(code).toBe(0);
}

/** Rows in the session's temporary tables of the apply (0 when they do not exist). */
async function leftInTempTables(): Promise<number> {
  const { rows } = await db.sql.query<{ t: string }>(
    `SELECT c.relname AS t FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema()
        AND (c.relname LIKE 'mvrefresh\\_keys%' OR c.relname LIKE 'mvr\\_b\\_%') AND c.relkind = 'r'`,
  );
  let n = 0;
  for (const r of rows) n += await count(`SELECT count(*) AS n FROM pg_temp.${r.t}`);
  return n;
}

async function write(round: number, rows = 30): Promise<void> {
  await db.sql.query(
    `INSERT INTO comments (post_id, author_id, score, created_at)
     SELECT 1 + (g * 7 + $1) % 500, 1 + (g + $1) % 40, g % 100, timestamptz '2026-01-01' + ((g + $1) % 30) * interval '1 day'
       FROM generate_series(1, $2) g`,
    [round, rows],
  );
  await db.sql.query(
    `UPDATE comments SET score = score + 1, post_id = 1 + (post_id + 3) % 500 WHERE id % 97 = $1 % 97`,
    [round],
  );
  await db.sql.query(`DELETE FROM comments WHERE id % 89 = $1 % 89`, [round]);
}

describe('the temporary tables of applies kept for the session', () => {
  beforeAll(async () => {
    await db.sql.query(`
      CREATE ROLE ${OTHER};
      GRANT CREATE, USAGE ON SCHEMA public TO ${OTHER};
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id int NOT NULL, author_id int NOT NULL,
                             score int NOT NULL, created_at timestamptz NOT NULL);
      CREATE INDEX ON comments (post_id);
      INSERT INTO comments (post_id, author_id, score, created_at)
      SELECT 1 + g % 500, 1 + g % 40, g % 100, timestamptz '2026-01-01' + (g % 30) * interval '1 day'
        FROM generate_series(1, 5000) g;
      GRANT SELECT ON comments TO ${OTHER};`);
    for (const [name, sql] of Object.entries(VIEWS)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${sql}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (${KEYS[name]!})`);
    }
    // a view of another owner: the apply grants the kept tables to it too
    await db.sql.query(`ALTER MATERIALIZED VIEW by_author OWNER TO ${OTHER}`);
    await db.sql.query(`ALTER MATERIALIZED VIEW author_posts OWNER TO ${OTHER}`);
    await watch('by_post');
    await watch('by_author');
    await watch('author_posts');
  });

  afterAll(async () => {
    // the grants of this session's temporary tables to the role go with DROP OWNED BY
    await db.sql.query(`DROP OWNED BY ${OTHER}`);
    await db.sql.query(`DROP ROLE ${OTHER}`);
  });

  it('applies views of different keys and owners in one session, leaving the tables empty', async () => {
    // each view's keys table is created once for the session, however the applies of views of other
    // keys interleave with its own
    const keysTables = async () =>
      (
        await db.sql.query<{ t: string }>(
          `SELECT c.relname || ':' || c.oid AS t FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema()
              AND c.relname LIKE 'mvrefresh\\_keys\\_%' ORDER BY 1`,
        )
      ).rows.map((r) => r.t);
    let first: string[] = [];
    for (let round = 1; round <= 4; round += 1) {
      await write(round);
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      for (const [name, sql] of Object.entries(VIEWS).filter(([n]) => n !== 'by_day'))
        expect([name, round, await differs(name, sql)]).toEqual([name, round, 0]);
      expect(await leftInTempTables()).toBe(0);
      if (round === 1) first = await keysTables();
      else expect(await keysTables()).toEqual(first);
    }
    expect(first).toHaveLength(3);
    const kinds = await db.sql.query<{ view_name: string; last_apply_kind: string }>(
      `SELECT v.view_name, i.last_apply_kind FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id ORDER BY 1`,
    );
    expect(kinds.rows.map((r) => [r.view_name, r.last_apply_kind])).toEqual([
      ['author_posts', 'delta'],
      ['by_author', 'keys'],
      ['by_post', 'delta'],
    ]);
  });

  it('recreates a batch table whose log gained a column (a view reading another column watched meanwhile)', async () => {
    await write(5);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await watch('by_day');
    for (let round = 6; round <= 7; round += 1) {
      await write(round);
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      for (const [name, sql] of Object.entries(VIEWS))
        expect([name, round, await differs(name, sql)]).toEqual([name, round, 0]);
    }
    expect(await leftInTempTables()).toBe(0);
  });

  it('analyzes the keys table for a batch of another size, not for one of about the last size', async () => {
    const analyzed = async () =>
      Number(
        (
          await db.sql.query<{ r: number }>(
            `SELECT reltuples AS r FROM pg_class WHERE oid = to_regclass('pg_temp.mvrefresh_keys_' ||
               (SELECT v.id FROM mvrefresh.view_state v WHERE v.view_name = 'by_author'))`,
          )
        ).rows[0]!.r,
      );
    // by_author's apply alone, in this session: one key per author whose comments changed
    const applyAuthors = async (authors: number) => {
      await db.sql.query(`UPDATE comments SET score = score + 1 WHERE author_id <= $1`, [authors]);
      await db.sql.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const { rows } = await db.sql.query<{ kind: string; keys: number }>(
        `SELECT a.* FROM mvrefresh.view_state v, pg_class c, mvrefresh.apply_view(v.id, c.oid, c.relowner) a
          WHERE v.view_name = 'by_author' AND c.oid = 'by_author'::regclass`,
      );
      await db.sql.query('COMMIT');
      expect(rows[0]).toEqual({ kind: 'keys', keys: authors });
    };
    // the view's own keys table keeps the statistics of its earlier applies (40 keys): 3 is another size
    await applyAuthors(3);
    expect(await analyzed()).toBe(3);
    // 5 keys: within a factor of 2 of the statistics, which stay
    await applyAuthors(5);
    expect(await analyzed()).toBe(3);
    await applyAuthors(30);
    expect(await analyzed()).toBe(30);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    for (const [name, sql] of Object.entries(VIEWS))
      expect([name, await differs(name, sql)]).toEqual([name, 0]);
  });
});

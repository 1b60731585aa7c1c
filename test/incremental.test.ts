import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';

const db = useTestDatabase('incremental');

/** Incremental views of every class the analyzer admits, over posts and comments. */
const VIEWS: Record<string, { sql: string; key: string }> = {
  post_stats: {
    sql: `SELECT post_id, count(*) AS n, max(created_at) AS last_at, min(score) AS low, sum(score) AS total
            FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  community_day: {
    sql: `SELECT p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC') AS day, count(*) AS n,
                 sum(c.score) AS total
            FROM comments c JOIN posts p ON p.id = c.post_id GROUP BY 1, 2`,
    key: 'community_id, day',
  },
  top_comments: { sql: `SELECT id, post_id, score FROM comments WHERE score > 100`, key: 'id' },
  post_commenters: {
    sql: `SELECT post_id, count(DISTINCT author_id) AS authors FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  // NULL group keys, HAVING
  author_totals: {
    sql: `SELECT author_id, count(*) AS n, sum(score) AS total FROM comments GROUP BY author_id HAVING count(*) > 2`,
    key: 'author_id',
  },
  // an outer join keyed on the preserved side, groups that vanish to zero
  post_counts: {
    sql: `SELECT p.id, p.community_id, count(c.id) AS comments
            FROM posts p LEFT JOIN comments c ON c.post_id = p.id GROUP BY p.id, p.community_id`,
    key: 'id',
  },
  distinct_pairs: { sql: `SELECT DISTINCT post_id, author_id FROM comments`, key: 'post_id, author_id' },
  // delta views: the NULL group is recomputed, the others get deltas; count(x) of a nullable column
  author_counts: {
    sql: `SELECT author_id, count(*) AS n, sum(score) AS total FROM comments GROUP BY author_id`,
    key: 'author_id',
  },
  post_scores: {
    sql: `SELECT c.post_id, count(*) AS n, count(c.author_id) AS with_author, sum(c.score) AS total
            FROM comments c GROUP BY c.post_id`,
    key: 'post_id',
  },
  // avg beside sum and a count of the same column: set from them; avg alone: recomputed
  post_means: {
    sql: `SELECT post_id, count(*) AS n, sum(score) AS total, avg(score) AS mean FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  author_means: {
    sql: `SELECT author_id, count(score) AS scored, avg(score) AS mean, sum(score) AS total, count(*) AS n
            FROM comments GROUP BY author_id`,
    key: 'author_id',
  },
  post_mean_only: {
    sql: `SELECT post_id, count(*) AS n, avg(score) AS mean FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  // count(DISTINCT) by its multiset: of a nullable column beside count(*), and of a NOT NULL one alone
  post_authors: {
    sql: `SELECT post_id, count(*) AS n, count(DISTINCT author_id) AS authors, sum(score) AS total
            FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  post_scorers: {
    sql: `SELECT c.post_id, count(DISTINCT c.score) AS scores FROM comments c WHERE c.score > 20 GROUP BY c.post_id`,
    key: 'post_id',
  },
  // count(DISTINCT) by probes of an index leading with its columns (comments (created_at, post_id)): beside
  // count(*) and sum, and of a NOT NULL column alone under a WHERE
  post_days: {
    sql: `SELECT post_id, count(*) AS n, count(DISTINCT created_at) AS days, sum(score) AS total
            FROM comments GROUP BY post_id`,
    key: 'post_id',
  },
  busy_days: {
    sql: `SELECT c.post_id, count(DISTINCT c.created_at) AS days FROM comments c WHERE c.score > 20 GROUP BY c.post_id`,
    key: 'post_id',
  },
  // columns named like the aliases of the apply's statements (x, f, n, p, k, e)
  aliases: {
    sql: `SELECT c.id AS x, c.post_id AS f, c.score AS n, c.author_id AS p, c.score + 1 AS k, 1 AS e
            FROM comments c WHERE c.score < 20`,
    key: 'x',
  },
  // a view reading a plain view
  hot_posts: {
    sql: `SELECT post_id, count(*) AS n FROM hot_comments GROUP BY post_id`,
    key: 'post_id',
  },
};

async function count(sql: string, values: unknown[] = []): Promise<number> {
  return Number((await db.sql.query<{ n: string }>(sql, values)).rows[0]!.n);
}

/** Rows of the view that its definition does not give, and the reverse (EXCEPT ALL both ways). */
async function difference(view: string): Promise<[number, number]> {
  const def = VIEWS[view]!.sql;
  return [
    await count(`SELECT count(*) AS n FROM (TABLE ${view} EXCEPT ALL SELECT * FROM (${def}) q) a`),
    await count(`SELECT count(*) AS n FROM (SELECT * FROM (${def}) q EXCEPT ALL TABLE ${view}) b`),
  ];
}

/** The count(DISTINCT) views' multisets (mvrefresh.distinct_<view id>) as their definitions give them. */
const MULTISETS: Record<string, string> = {
  post_authors: `SELECT post_id, author_id, count(*) FROM comments WHERE author_id IS NOT NULL GROUP BY 1, 2`,
  post_scorers: `SELECT post_id, score, count(*) FROM comments WHERE score > 20 GROUP BY 1, 2`,
};

/** Entries of a view's multiset that its definition does not give, and the reverse. */
async function multisetDifference(view: string): Promise<[number, number]> {
  const { rows } = await db.sql.query<{ t: string }>(
    `SELECT format('mvrefresh.%I', 'distinct_' || id) AS t FROM mvrefresh.view_state WHERE view_name = $1`,
    [view],
  );
  const [t, def] = [rows[0]!.t, MULTISETS[view]!];
  return [
    await count(`SELECT count(*) AS n FROM (TABLE ${t} EXCEPT ALL SELECT * FROM (${def}) q) a`),
    await count(`SELECT count(*) AS n FROM (SELECT * FROM (${def}) q EXCEPT ALL TABLE ${t}) b`),
  ];
}

async function applyAll(): Promise<void> {
  await db.sql.query('CALL mvrefresh.refresh_dirty()');
}

async function cli(args: string[]) {
  const p = runCli(args, { DATABASE_URL: db.url });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

/** One round of writes of every kind the capture must see, with a seeded generator. */
async function writeRound(round: number): Promise<void> {
  const s = db.sql;
  await s.query(
    `INSERT INTO comments (post_id, author_id, score, created_at)
     SELECT 1 + (g * 37 + $1) % 60, CASE WHEN g % 5 = 0 THEN NULL ELSE (g + $1) % 9 END, (g * 13 + $1) % 200,
            timestamptz '2026-01-01' + ((g + $1) % 20) * interval '1 day'
       FROM generate_series(1, 40) g`,
    [round],
  );
  await s.query(`UPDATE comments SET score = score + 60 WHERE id % 17 = $1 % 17`, [round]);
  // rows that move between groups, and into and out of the NULL group
  await s.query(`UPDATE comments SET post_id = 1 + (post_id + 7) % 60 WHERE id % 23 = $1 % 23`, [round]);
  await s.query(`UPDATE comments SET author_id = NULLIF((author_id + 1) % 9, 0) WHERE id % 19 = $1 % 19`, [
    round,
  ]);
  await s.query(`DELETE FROM comments WHERE id % 29 = $1 % 29`, [round]);
  // a group that vanishes
  await s.query(`DELETE FROM comments WHERE post_id = 1 + $1 % 60`, [round]);
  await s.query(`UPDATE posts SET community_id = (community_id + 1) % 5 WHERE id % 11 = $1 % 11`, [round]);
  // a column no view reads
  await s.query(`UPDATE comments SET body = 'b' || $1 WHERE id % 3 = 0`, [round]);
  // savepoints: the rolled-back part leaves neither rows nor log rows
  await s.query('BEGIN');
  await s.query(`INSERT INTO comments (post_id, author_id, score) VALUES (2, 1, 150)`);
  await s.query('SAVEPOINT a');
  await s.query(`INSERT INTO comments (post_id, author_id, score) VALUES (3, 2, 150)`);
  await s.query('ROLLBACK TO SAVEPOINT a');
  await s.query('COMMIT');
  // REPEATABLE READ and SERIALIZABLE writers
  for (const level of ['REPEATABLE READ', 'SERIALIZABLE']) {
    await s.query(`BEGIN ISOLATION LEVEL ${level}`);
    await s.query(`UPDATE comments SET score = score - 1 WHERE id % 31 = $1 % 31`, [round]);
    await s.query('COMMIT');
  }
  // a rolled-back transaction
  await s.query('BEGIN');
  await s.query(`DELETE FROM comments WHERE post_id = 4`);
  await s.query('ROLLBACK');
}

/** post_stats's storage parameters, which it keeps as an incremental view and back. */
const STORAGE = ['fillfactor=70', 'autovacuum_vacuum_scale_factor=0.02'];

async function storage(name: string): Promise<string[]> {
  const { rows } = await db.sql.query<{ options: string[] }>(
    `SELECT COALESCE(c.reloptions, '{}') AS options FROM pg_class c WHERE c.oid = $1::regclass`,
    [name],
  );
  return rows[0]!.options;
}

describe('incremental views', () => {
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE posts (id bigint PRIMARY KEY, community_id int NOT NULL, title text);
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id bigint NOT NULL, author_id int, score int NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT timestamptz '2026-01-05', body text);
      CREATE INDEX ON comments (post_id);
      CREATE INDEX ON comments (created_at, post_id);
      INSERT INTO posts SELECT g, g % 5, 't' FROM generate_series(1, 60) g;
      INSERT INTO comments (post_id, author_id, score, created_at)
      SELECT 1 + g % 60, NULLIF(g % 9, 0), g % 200, timestamptz '2026-01-01' + (g % 20) * interval '1 day'
        FROM generate_series(1, 2000) g;
      CREATE VIEW hot_comments AS SELECT id, post_id, score FROM comments WHERE score > 50;`);
    for (const [name, v] of Object.entries(VIEWS)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${v.sql}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (${v.key})`);
    }
    await db.sql.query('CREATE VIEW busy_posts AS SELECT post_id, n FROM post_stats WHERE n > 30');
    await db.sql.query(`ALTER MATERIALIZED VIEW post_stats SET (${STORAGE.join(', ')})`);
    for (const name of Object.keys(VIEWS)) {
      const r = await cli(['watch', name, '--incremental']);
      expect(r.text, name).toContain('is incremental');
      expect(r.code).toBe(0);
    }
  });

  it('keeps every view equal to its query after each round of inserts, updates, moves, deletes and rollbacks', async () => {
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname ~ '^distinct_[0-9]+$'`)).toBe(2);
    const probed = await db.sql.query<{ view_name: string }>(
      `SELECT v.view_name FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
        WHERE i.statements -> 'delta' ? 'probe' ORDER BY 1`,
    );
    expect(probed.rows.map((r) => r.view_name)).toEqual(['busy_days', 'post_days']);
    for (let round = 1; round <= 6; round += 1) {
      await writeRound(round);
      await applyAll();
      for (const view of Object.keys(VIEWS))
        expect([view, ...(await difference(view))]).toEqual([view, 0, 0]);
      for (const view of Object.keys(MULTISETS))
        expect([view, ...(await multisetDifference(view))]).toEqual([view, 0, 0]);
    }
    const kinds = await db.sql.query<{ view_name: string; last_apply_kind: string }>(
      `SELECT v.view_name, i.last_apply_kind FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
        ORDER BY 1`,
    );
    const delta = new Set([
      'author_counts',
      'author_means',
      'post_means',
      'community_day',
      'post_authors',
      'post_scorers',
      'post_scores',
      'post_stats',
      'post_days',
      'busy_days',
    ]);
    for (const r of kinds.rows)
      expect([r.view_name, r.last_apply_kind]).toEqual([
        r.view_name,
        delta.has(r.view_name) ? 'delta' : 'keys',
      ]);
  });

  it('leaves no log row once every view reading a table has applied it, in whichever order they apply', async () => {
    const logs = (
      await db.sql.query<{ t: string }>(
        `SELECT format('mvrefresh.%I', 'log_' || c.oid) AS t FROM pg_class c WHERE c.relname IN ('comments', 'posts')`,
      )
    ).rows.map((r) => r.t);
    const logRows = async () => {
      let n = 0;
      for (const t of logs) n += await count(`SELECT count(*) AS n FROM ${t}`);
      return n;
    };
    const ids = (
      await db.sql.query<{ id: number }>('SELECT view_id AS id FROM mvrefresh.incremental ORDER BY view_id')
    ).rows.map((r) => r.id);
    for (const order of [ids, [...ids].reverse(), [...ids.slice(3), ...ids.slice(0, 3)]]) {
      await writeRound(order.length + (order[0] ?? 0));
      for (const [i, id] of order.entries()) {
        await db.sql.query(
          'CALL mvrefresh.refresh_view($1, false, 2000, 5000, 1000, 300000, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)',
          [id],
        );
        if (i < order.length - 1) expect(await logRows()).toBeGreaterThan(0);
      }
      expect(await logRows()).toBe(0);
    }
    for (const view of Object.keys(VIEWS)) expect([view, ...(await difference(view))]).toEqual([view, 0, 0]);
  });

  it('keeps min and max by deltas, recomputing only the groups whose extreme row went (deleted, updated, or added and removed in one batch)', async () => {
    await applyAll();
    const s = db.sql;
    // post 10: a new extreme added and removed again before the apply
    await s.query(
      `INSERT INTO comments (id, post_id, author_id, score, created_at) VALUES (900001, 10, 1, -5, '2027-01-01')`,
    );
    await s.query('DELETE FROM comments WHERE id = 900001');
    // post 11: its latest rows deleted; post 13: its latest row's score changed (old and new image alike)
    await s.query(
      `DELETE FROM comments WHERE post_id = 11 AND created_at = (SELECT max(created_at) FROM comments WHERE post_id = 11)`,
    );
    await s.query(
      `UPDATE comments SET score = score + 1 WHERE id = (SELECT id FROM comments WHERE post_id = 13 ORDER BY created_at DESC, id LIMIT 1)`,
    );
    // post 12: a row inside its range added, one that is no extreme removed
    await s.query(
      `INSERT INTO comments (post_id, author_id, score, created_at) VALUES (12, 1, 100, '2026-01-02 12:00')`,
    );
    await s.query(
      `DELETE FROM comments WHERE id = (SELECT id FROM comments c WHERE post_id = 12
         AND created_at > (SELECT min(created_at) FROM comments WHERE post_id = 12)
         AND created_at < (SELECT max(created_at) FROM comments WHERE post_id = 12)
         AND score > (SELECT min(score) FROM comments WHERE post_id = 12) ORDER BY id LIMIT 1)`,
    );
    await applyAll();
    expect(await difference('post_stats')).toEqual([0, 0]);
    const { rows } = await s.query<{ last_apply_kind: string; last_apply_keys: number }>(
      `SELECT i.last_apply_kind, i.last_apply_keys FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = 'post_stats'`,
    );
    // groups 10, 11 and 13 recomputed, 12 by its delta
    expect(rows[0]).toEqual({ last_apply_kind: 'delta', last_apply_keys: 4 });
  });

  it('applies a delta view registered by an earlier version (separate update, insert and deleteEmpty statements, one keys table for all views)', async () => {
    const s = db.sql;
    await applyAll();
    const { rows } = await s.query<{ view_id: number; x: string }>(
      `SELECT i.view_id, format('%I.%I', v.view_schema, v.view_name) AS x FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = 'author_counts'`,
    );
    const { view_id: id, x } = rows[0]!;
    const earlier = {
      update: `UPDATE ${x} x SET "n" = x."n" + COALESCE(d."n", 0), "total" = x."total" + COALESCE(d."total", 0) FROM pg_temp.mvrefresh_delta d WHERE x."author_id" = d."author_id"`,
      insert: `INSERT INTO ${x} ("author_id", "n", "total") SELECT d."author_id", COALESCE(d."n", 0), COALESCE(d."total", 0) FROM pg_temp.mvrefresh_delta d WHERE d."n" > 0 AND NOT EXISTS (SELECT FROM ${x} x WHERE x."author_id" = d."author_id")`,
      deleteEmpty: `DELETE FROM ${x} x USING pg_temp.mvrefresh_delta d WHERE x."author_id" = d."author_id" AND x."n" = 0`,
    };
    await s.query(
      `UPDATE mvrefresh.incremental SET statements = jsonb_set(statements, '{delta}', (statements -> 'delta') - 'upsert' || $2::jsonb)
        WHERE view_id = $1`,
      [id, JSON.stringify(earlier)],
    );
    // and the keys table all views shared (pg_temp.mvrefresh_keys), without keysName
    await s.query(
      `UPDATE mvrefresh.incremental
          SET statements = replace(statements::text, 'mvrefresh_keys_' || $1 || '\\"', 'mvrefresh_keys\\"')::jsonb - 'keysName'
        WHERE view_id = $1`,
      [id],
    );
    const shared = await s.query<{ text: string }>(
      'SELECT statements::text AS text FROM mvrefresh.incremental WHERE view_id = $1',
      [id],
    );
    expect(shared.rows[0]!.text).not.toContain(`mvrefresh_keys_${id}`);
    expect(shared.rows[0]!.text).toContain('mvrefresh_keys');
    // a new group, groups that grow and shrink, and one that vanishes
    await s.query(`INSERT INTO comments (post_id, author_id, score) VALUES (5, 777, 3), (6, 777, 4)`);
    await s.query(`DELETE FROM comments WHERE author_id = 3`);
    await s.query(`UPDATE comments SET author_id = 4 WHERE author_id = 5 AND id % 2 = 0`);
    await applyAll();
    expect(await difference('author_counts')).toEqual([0, 0]);
    const after = await s.query<{ kind: string; upsert: boolean }>(
      `SELECT last_apply_kind AS kind, statements -> 'delta' ? 'upsert' AS upsert FROM mvrefresh.incremental WHERE view_id = $1`,
      [id],
    );
    expect(after.rows[0]).toEqual({ kind: 'delta', upsert: false });
  });

  it('stands under the name as a table with its indexes, storage parameters and dependants, which readers query unchanged', async () => {
    const rel = await db.sql.query<{ relkind: string }>(
      `SELECT relkind FROM pg_class WHERE oid = 'post_stats'::regclass`,
    );
    expect(rel.rows[0]!.relkind).toBe('r');
    expect(await storage('post_stats')).toEqual(STORAGE);
    expect(await count(`SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'post_stats'`)).toBe(1);
    expect(await count('SELECT count(*) AS n FROM busy_posts')).toBe(
      await count(`SELECT count(*) AS n FROM (${VIEWS['post_stats']!.sql}) q WHERE n > 30`),
    );
  });

  it('refuses a write by anyone but mvrefresh, and a REFRESH of the name, naming mvrefresh', async () => {
    for (const stmt of [
      'INSERT INTO post_stats (post_id, n) VALUES (-1, 1)',
      'DELETE FROM post_stats',
      'TRUNCATE post_stats',
      `SET mvrefresh.apply = 'forged'; UPDATE post_stats SET n = 0`,
    ])
      await expect(db.sql.query(stmt), stmt).rejects.toThrow(/incremental view kept by mvrefresh/);
    await db.sql.query('RESET mvrefresh.apply');
    // the event trigger mvrefresh_refresh (migrations/ddl-watch) names mvrefresh; a materialized view of
    // the same name elsewhere, or any other REFRESH, is PostgreSQL's to judge
    for (const name of [
      'post_stats',
      'public.post_stats',
      '"public"."post_stats"',
      'CONCURRENTLY post_stats',
    ])
      await expect(db.sql.query(`REFRESH MATERIALIZED VIEW ${name}`), name).rejects.toThrow(
        /public\.post_stats is an incremental view kept by mvrefresh, not a materialized view/,
      );
    await db.sql.query(
      'CREATE MATERIALIZED VIEW plain_mv AS SELECT 1 AS x; REFRESH MATERIALIZED VIEW plain_mv',
    );
    await db.sql.query('DROP MATERIALIZED VIEW plain_mv');
    await db.sql.query('ALTER EVENT TRIGGER mvrefresh_refresh DISABLE');
    try {
      await expect(db.sql.query('REFRESH MATERIALIZED VIEW post_stats')).rejects.toThrow(
        /not a materialized view/,
      );
    } finally {
      await db.sql.query('ALTER EVENT TRIGGER mvrefresh_refresh ENABLE');
    }
  });

  it('costs a view no key for an update of a column only other incremental views read', async () => {
    await applyAll();
    // score: read by post_stats and community_day, not by distinct_pairs nor post_counts (a join)
    await db.sql.query(
      'UPDATE comments SET score = score + 1 WHERE id IN (SELECT id FROM comments ORDER BY id LIMIT 5)',
    );
    await applyAll();
    const { rows } = await db.sql.query<{ view_name: string; last_apply_keys: number }>(
      `SELECT v.view_name, i.last_apply_keys FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id
        WHERE v.view_name IN ('distinct_pairs', 'post_counts', 'post_stats') ORDER BY v.view_name`,
    );
    expect(rows.map((r) => [r.view_name, r.last_apply_keys > 0])).toEqual([
      ['distinct_pairs', false],
      ['post_counts', false],
      ['post_stats', true],
    ]);
    for (const view of Object.keys(VIEWS)) expect([view, await difference(view)]).toEqual([view, [0, 0]]);
  });

  it('rewrites only the recomputed rows that changed, unless another unique index forbids it', async () => {
    await applyAll();
    const ctid = async () =>
      (await db.sql.query<{ c: string }>(`SELECT ctid::text AS c FROM author_totals WHERE author_id = 1`))
        .rows[0]!.c;
    // author 1: two comments replaced by two of other scores and the same sum; the group is recomputed
    // (author_totals reads author_id and score) and comes out the same
    const sameTotals = () =>
      db.sql
        .query(`WITH d AS (DELETE FROM comments WHERE id IN (SELECT id FROM comments WHERE author_id = 1 ORDER BY id LIMIT 2)
                               RETURNING score)
                    INSERT INTO comments (post_id, author_id, score)
                    SELECT 1, 1, v FROM (SELECT sum(score) - 1000 AS v FROM d UNION ALL SELECT 1000) x`);
    const before = await ctid();
    await sameTotals();
    await db.sql.query(`INSERT INTO comments (post_id, author_id, score) VALUES (2, 2, 5)`);
    await applyAll();
    expect(await difference('author_totals')).toEqual([0, 0]);
    expect(await ctid()).toBe(before);
    // a unique index on a column that is not the key's: delete, then insert (the recomputed row moves)
    await db.sql.query('CREATE UNIQUE INDEX author_totals_other ON author_totals (author_id, n)');
    try {
      await sameTotals();
      await applyAll();
      expect(await difference('author_totals')).toEqual([0, 0]);
      expect(await ctid()).not.toBe(before);
    } finally {
      await db.sql.query('DROP INDEX author_totals_other');
    }
  });

  it('logs nothing for an update of a column no incremental view reads', async () => {
    const log = `mvrefresh.log_${(await db.sql.query<{ oid: string }>(`SELECT 'comments'::regclass::oid AS oid`)).rows[0]!.oid}`;
    await applyAll();
    const before = await count(`SELECT count(*) AS n FROM ${log}`);
    await db.sql.query(`UPDATE comments SET body = 'unread' WHERE id % 2 = 0`);
    expect(await count(`SELECT count(*) AS n FROM ${log}`)).toBe(before);
  });

  it('recomputes in full after a TRUNCATE of a source, and prunes the applied log', async () => {
    await db.sql.query('CREATE TABLE comments_saved AS TABLE comments');
    await db.sql.query('TRUNCATE comments');
    await db.sql.query('INSERT INTO comments SELECT * FROM comments_saved WHERE id % 2 = 0');
    await applyAll();
    for (const view of Object.keys(VIEWS)) expect([view, ...(await difference(view))]).toEqual([view, 0, 0]);
    for (const view of Object.keys(MULTISETS))
      expect([view, ...(await multisetDifference(view))]).toEqual([view, 0, 0]);
    const kinds = await db.sql.query<{ last_apply_kind: string }>(
      `SELECT i.last_apply_kind FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
        WHERE v.view_name = 'post_stats'`,
    );
    expect(kinds.rows[0]!.last_apply_kind).toBe('full: truncate');
    const oid = (await db.sql.query<{ oid: string }>(`SELECT 'comments'::regclass::oid AS oid`)).rows[0]!.oid;
    expect(await count(`SELECT count(*) AS n FROM mvrefresh.log_${oid}`)).toBe(0);
  });

  it('verify finds a write that bypassed the capture, and repairs it', async () => {
    await db.sql.query('ALTER TABLE comments DISABLE TRIGGER mvrefresh_cap_ins');
    await db.sql.query(`INSERT INTO comments (post_id, author_id, score) VALUES (9, 1, 170)`);
    await db.sql.query('ALTER TABLE comments ENABLE ALWAYS TRIGGER mvrefresh_cap_ins');
    const found = await cli(['verify', 'top_comments', '--no-repair']);
    expect(found.text).toContain('0 extra, 1 missing');
    expect(found.code).toBe(1);
    const fixed = await cli(['verify', 'top_comments']);
    expect(fixed.text).toContain('repaired');
    expect(await difference('top_comments')).toEqual([0, 0]);
    // a count(DISTINCT) view: its multiset is rebuilt with it
    expect((await cli(['verify', 'post_authors'])).text).toContain('repaired');
    expect(await difference('post_authors')).toEqual([0, 0]);
    expect(await multisetDifference('post_authors')).toEqual([0, 0]);
  });

  it("verify finds an entry of a count(DISTINCT) view's hidden multiset that differs, and rebuilds it", async () => {
    const { rows } = await db.sql.query<{ t: string }>(
      `SELECT format('mvrefresh.%I', 'distinct_' || id) AS t FROM mvrefresh.view_state WHERE view_name = 'post_authors'`,
    );
    const multiset = rows[0]!.t;
    await applyAll();
    // the view is right; a count of the multiset is not, and would make a later apply wrong
    await db.sql.query(
      `UPDATE ${multiset} m SET mvr_n = m.mvr_n + 1 WHERE (m.post_id, m.mvr_value) = (SELECT post_id, mvr_value FROM ${multiset} LIMIT 1)`,
    );
    expect(await difference('post_authors')).toEqual([0, 0]);
    const found = await cli(['verify', 'post_authors', '--no-repair']);
    expect(found.text).toContain('1 extra, 1 missing');
    expect(found.code).toBe(1);
    expect((await cli(['verify', 'post_authors'])).text).toContain('repaired');
    expect(await multisetDifference('post_authors')).toEqual([0, 0]);
    expect((await cli(['verify', 'post_authors', '--no-repair'])).code).toBe(0);
  });

  it('check_drift finds a disabled capture trigger, enables it again, and the next apply recomputes in full', async () => {
    await db.sql.query('ALTER TABLE comments DISABLE TRIGGER mvrefresh_cap_del');
    await db.sql.query('DELETE FROM comments WHERE score > 150');
    const found = await db.sql.query<{ view: string; changes: string[] }>(
      'SELECT * FROM mvrefresh.check_drift(2000)',
    );
    const changes = found.rows.flatMap((r) => r.changes);
    expect(changes).toContain('capture trigger mvrefresh_cap_del disabled on public.comments');
    expect(
      await count(
        `SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'comments'::regclass AND tgname = 'mvrefresh_cap_del' AND tgenabled = 'A'`,
      ),
    ).toBe(1);
    await applyAll();
    const kinds = await db.sql.query<{ last_apply_kind: string }>(
      `SELECT i.last_apply_kind FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
        WHERE v.view_name = 'top_comments'`,
    );
    expect(kinds.rows[0]!.last_apply_kind).toMatch(/^full: (drift|rewrite)$/);
    for (const view of Object.keys(VIEWS)) expect([view, ...(await difference(view))]).toEqual([view, 0, 0]);
  });

  it('refuses, naming the clause, a definition that needs a full refresh, and leaves it watched', async () => {
    const cases: [string, string, RegExp][] = [
      ['inc_window', 'SELECT id, rank() OVER (ORDER BY score) AS r FROM comments', /window function/],
      ['inc_limit', 'SELECT id, score FROM comments ORDER BY score DESC LIMIT 10', /LIMIT/],
      ['inc_clock', `SELECT id FROM comments WHERE created_at > now() - interval '1 day'`, /clock/],
      ['inc_union', 'SELECT id FROM comments UNION SELECT id FROM posts', /UNION/],
      [
        'inc_self',
        'SELECT a.id, b.id AS other FROM comments a JOIN comments b ON b.id = a.id + 1',
        /self-join/,
      ],
      [
        'inc_sub',
        'SELECT id FROM posts p WHERE EXISTS (SELECT FROM comments c WHERE c.post_id = p.id)',
        /subquery/,
      ],
      ['inc_random', 'SELECT id FROM comments WHERE random() < 0.5', /volatile/],
    ];
    for (const [name, sql, clause] of cases) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${sql}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (id)`);
      const r = await cli(['watch', name, '--incremental']);
      expect(r.code, name).toBe(1);
      expect(r.text, name).toMatch(clause);
      const state = await db.sql.query<{ relkind: string; mode_reason: string }>(
        `SELECT c.relkind, v.mode_reason FROM pg_class c, mvrefresh.view_state v
          WHERE c.oid = $1::text::regclass AND v.view_name = $1::text`,
        [name],
      );
      expect(state.rows[0]!.relkind).toBe('m');
      expect(state.rows[0]!.mode_reason).toMatch(clause);
    }
  });

  it('unwatch turns it back into a materialized view, with its indexes, storage parameters and dependants, and removes its capture', async () => {
    const r = await cli(['unwatch', 'post_stats']);
    expect(r.code, r.text).toBe(0);
    const rel = await db.sql.query<{ relkind: string }>(
      `SELECT relkind FROM pg_class WHERE oid = 'post_stats'::regclass`,
    );
    expect(rel.rows[0]!.relkind).toBe('m');
    expect(await storage('post_stats')).toEqual(STORAGE);
    expect(await count(`SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'post_stats'`)).toBe(1);
    expect(await count(`SELECT count(*) AS n FROM busy_posts`)).toBe(
      await count(`SELECT count(*) AS n FROM post_stats WHERE n > 30`),
    );
    expect(await count(`SELECT count(*) AS n FROM mvrefresh.view_state WHERE view_name = 'post_stats'`)).toBe(
      0,
    );
    // comments is still read by other incremental views: its capture stays; posts by community_day and post_counts
    expect(
      await count(
        `SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'comments'::regclass AND tgname LIKE 'mvrefresh_cap_%'`,
      ),
    ).toBe(4);
    for (const v of Object.keys(VIEWS).filter((v) => v !== 'post_stats'))
      expect((await cli(['unwatch', v])).code).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'mvrefresh_cap_%'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname ~ '^log_[0-9]+$'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname ~ '^distinct_[0-9]+$'`)).toBe(0);
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { inRepeatableRead, useTestDatabase } from './support/db.js';
import { viewMatches } from './support/shop.js';

/**
 * An apply by key reads a batch's share of the sources through their indexes (routines/apply_view.sql prices
 * a page read as a cached one for it): at the default random_page_cost the planner hashed all the posts to
 * join a batch of a thousand comments to them (bench:incremental's community_day: 59-180 ms per apply
 * against 21 ms by key). Counted by the scans the apply made (pg_stat_xact_user_tables after it, less
 * before it, in its transaction: since PostgreSQL 15 those counters also hold what earlier transactions of
 * the session did until the backend reports them, at most once a second).
 */
const db = useTestDatabase('incremental_plans');

/** Applies an incremental view's batch in the caller's REPEATABLE READ transaction; returns how. */
async function applyKind(view: string): Promise<string | undefined> {
  const { rows } = await db.sql.query<{ kind: string }>(
    `SELECT a.kind FROM mvrefresh.view_state v, pg_class c, mvrefresh.apply_view(v.id, c.oid, c.relowner) a
      WHERE v.view_name = $1 AND c.oid = $1::regclass`,
    [view],
  );
  return rows[0]?.kind;
}

/** The scans of an index so far in this transaction. */
async function indexScans(index: string): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>('SELECT pg_stat_get_xact_numscans($1::regclass) AS n', [
    index,
  ]);
  return Number(rows[0]!.n);
}

const VIEW = `SELECT p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC') AS day,
       count(*) AS comments, sum(c.score) AS score
  FROM comments c JOIN posts p ON p.id = c.post_id
 GROUP BY p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC')`;

describe('the plans of an apply by key', () => {
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE posts (id bigint PRIMARY KEY, community_id int NOT NULL);
      INSERT INTO posts SELECT g, g % 20 FROM generate_series(1, 50000) g;
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id bigint NOT NULL REFERENCES posts,
                             score int NOT NULL, created_at timestamptz NOT NULL);
      INSERT INTO comments (post_id, score, created_at)
      SELECT 1 + g % 50000, g % 100, timestamptz '2026-01-01' + (g % 30) * interval '1 day'
        FROM generate_series(1, 5000) g;
      ANALYZE posts, comments;
      CREATE MATERIALIZED VIEW community_day AS ${VIEW};
      CREATE UNIQUE INDEX ON community_day (community_id, day);`);
    const p = runCli(['watch', 'community_day', '--incremental'], { DATABASE_URL: db.url });
    const { code } = await p.exit;
    expect(p.text()).toContain('is incremental');
    expect(code).toBe(0);
  });

  it("probes a dimension by its key for a batch's facts instead of reading it whole, at the default random_page_cost", async () => {
    await db.sql.query(
      `INSERT INTO comments (post_id, score, created_at)
       SELECT 1 + (g * 7919) % 50000, g % 7, timestamptz '2026-01-01' + (g % 30) * interval '1 day'
         FROM generate_series(1, 1000) g`,
    );
    const postScans = async () =>
      (
        await db.sql.query<{ seq_scan: string; idx_scan: string }>(
          `SELECT s.seq_scan, s.idx_scan FROM pg_stat_xact_user_tables s WHERE s.relid = 'posts'::regclass`,
        )
      ).rows[0]!;
    await inRepeatableRead(db.sql, async () => {
      await db.sql.query('SET LOCAL random_page_cost = 4');
      const before = await postScans();
      expect(await applyKind('community_day')).toBe('delta');
      const after = await postScans();
      const rpc = await db.sql.query<{ rpc: string }>(`SELECT current_setting('random_page_cost') AS rpc`);
      expect({
        seqScans: Number(after.seq_scan) - Number(before.seq_scan),
        rpc: rpc.rows[0]!.rpc,
      }).toEqual({ seqScans: 0, rpc: '4' });
      expect(Number(after.idx_scan) - Number(before.idx_scan)).toBeGreaterThan(0);
    });
    expect(await viewMatches(db.sql, 'community_day', VIEW)).toBe(true);
  });
});

/**
 * A delta view drops from its delta the groups it recomputes by key (a NULL key, a removed extreme): by
 * equality, hashed, not by IS NOT DISTINCT FROM, which the planner compares pair by pair (a batch of 3 000
 * groups against 500 recomputed keys: 1.5 million comparisons).
 */
describe('the plan that drops recomputed groups from a delta', () => {
  const LAST = `SELECT c.post_id, max(c.created_at) AS last_at, count(*) AS n FROM comments c GROUP BY c.post_id`;
  beforeAll(async () => {
    await db.sql.query(`CREATE MATERIALIZED VIEW post_last AS ${LAST};
                        CREATE UNIQUE INDEX ON post_last (post_id);`);
    const p = runCli(['watch', 'post_last', '--incremental'], { DATABASE_URL: db.url });
    expect(await p.exit).toMatchObject({ code: 0 });
  });

  it('hashes the recomputed keys instead of comparing every group with every key', async () => {
    // new comments on 2 000 posts, and the latest comment of 400 others deleted (their max is recomputed)
    await db.sql.query(`
      INSERT INTO comments (post_id, score, created_at)
      SELECT 1 + g, 1, timestamptz '2026-03-01' FROM generate_series(1, 2000) g;
      DELETE FROM comments c WHERE c.id IN (
        SELECT DISTINCT ON (post_id) id FROM comments WHERE post_id BETWEEN 2001 AND 2400
         ORDER BY post_id, created_at DESC)`);
    await inRepeatableRead(db.sql, async () => {
      const { rows } = await db.sql.query<{ kind: string; keys: number; drop: string }>(
        `SELECT a.kind, a.keys, i.statements #>> '{delta,dropRecomputed}' AS drop
           FROM mvrefresh.view_state v JOIN mvrefresh.incremental i ON i.view_id = v.id, pg_class c,
                mvrefresh.apply_view(v.id, c.oid, c.relowner) a
          WHERE v.view_name = 'post_last' AND c.oid = 'post_last'::regclass`,
      );
      expect(rows[0]).toMatchObject({ kind: 'delta' });
      // the apply's own delta and keys tables, as they were when it ran the statement
      const plan = await db.sql.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${rows[0]!.drop}`);
      const text = JSON.stringify(plan.rows[0]!['QUERY PLAN']);
      expect(text).not.toContain('Nested Loop');
      expect(text).toContain('(hashed SubPlan');
    });
    expect(await viewMatches(db.sql, 'post_last', LAST)).toBe(true);
  });
});

/**
 * A batch whose groups alone pass the threshold (a bulk load) is recomputed in full without first running
 * the work that grows with it: a count(DISTINCT) view kept by probes counted each group and value of the
 * batch through the index (a million index scans after a COPY of a million rows) before finding that a full
 * recompute was cheaper. Counted by the index's scans in the apply's transaction.
 */
describe('a bulk batch of a view kept by probes', () => {
  const COMMENTERS = `SELECT r.post_id, count(DISTINCT r.author_id) AS commenters FROM replies r GROUP BY r.post_id`;
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE replies (id bigserial PRIMARY KEY, post_id bigint NOT NULL, author_id int NOT NULL);
      CREATE INDEX replies_post_author ON replies (post_id, author_id);
      INSERT INTO replies (post_id, author_id) SELECT 1 + g % 1500, g FROM generate_series(1, 3000) g;
      ANALYZE replies;
      CREATE MATERIALIZED VIEW reply_commenters AS ${COMMENTERS};
      CREATE UNIQUE INDEX ON reply_commenters (post_id);`);
    const p = runCli(['watch', 'reply_commenters', '--incremental'], { DATABASE_URL: db.url });
    expect(await p.exit).toMatchObject({ code: 0 });
    const { rows } = await db.sql.query<{ probed: boolean }>(
      `SELECT i.statements -> 'delta' ? 'probe' AS probed FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = 'reply_commenters'`,
    );
    expect(rows[0]?.probed).toBe(true);
  });

  it('probes the index once per group and value of the batch', async () => {
    await db.sql.query(
      `INSERT INTO replies (post_id, author_id) SELECT g, 200000 + g FROM generate_series(1, 20) g`,
    );
    await inRepeatableRead(db.sql, async () => {
      const before = await indexScans('replies_post_author');
      expect(await applyKind('reply_commenters')).toBe('delta');
      // pulled up into the CASE that reads it, the probe ran twice per group and value: 40 times
      expect((await indexScans('replies_post_author')) - before).toBe(20);
    });
    expect(await viewMatches(db.sql, 'reply_commenters', COMMENTERS)).toBe(true);
  });

  it('recomputes in full without probing each group and value of the batch', async () => {
    // a new author on each of 1 200 of the 1 500 posts: more than 1 000 groups and half the view
    await db.sql.query(
      `INSERT INTO replies (post_id, author_id) SELECT g, 100000 + g FROM generate_series(1, 1200) g`,
    );
    await inRepeatableRead(db.sql, async () => {
      const before = await indexScans('replies_post_author');
      expect(await applyKind('reply_commenters')).toBe('full: threshold');
      // the probes scanned it once per group and value: 1 200 times
      expect(await indexScans('replies_post_author')).toBeLessThan(before + 100);
    });
    expect(await viewMatches(db.sql, 'reply_commenters', COMMENTERS)).toBe(true);
  });
});

describe('a group whose extreme row changes in another column', () => {
  const NOTES_LAST = `SELECT n.post_id, count(*) AS notes, max(n.created_at) AS last_at, sum(n.score) AS score
    FROM notes n GROUP BY n.post_id`;
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE notes (id bigserial PRIMARY KEY, post_id bigint NOT NULL, score int NOT NULL,
                          created_at timestamptz NOT NULL, flag int NOT NULL DEFAULT 0);
      CREATE INDEX notes_post_id ON notes (post_id);
      INSERT INTO notes (post_id, score, created_at)
      SELECT 1 + g % 200, g % 50, timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(1, 4000) g;
      ANALYZE notes;
      CREATE MATERIALIZED VIEW note_last AS ${NOTES_LAST};
      CREATE UNIQUE INDEX ON note_last (post_id);
      CREATE MATERIALIZED VIEW flagged_notes AS SELECT n.id, n.flag FROM notes n WHERE n.flag > 0;
      CREATE UNIQUE INDEX ON flagged_notes (id);`);
    for (const view of ['note_last', 'flagged_notes']) {
      const p = runCli(['watch', view, '--incremental'], { DATABASE_URL: db.url });
      expect(await p.exit).toMatchObject({ code: 0 });
    }
  });

  /**
   * Applies the batch; returns how, how often it read notes by post (a group recomputed by key) and how
   * many of the view's rows it updated.
   */
  const apply = () =>
    inRepeatableRead(db.sql, async () => {
      const updated = async () =>
        Number(
          (
            await db.sql.query<{ n: string }>(
              `SELECT pg_stat_get_xact_tuples_updated('note_last'::regclass) AS n`,
            )
          ).rows[0]!.n,
        );
      const scansBefore = await indexScans('notes_post_id');
      const updatedBefore = await updated();
      const kind = await applyKind('note_last');
      return {
        kind,
        scans: (await indexScans('notes_post_id')) - scansBefore,
        updated: (await updated()) - updatedBefore,
      };
    });
  const latest = `(SELECT DISTINCT ON (post_id) id FROM notes WHERE post_id <= 50 ORDER BY post_id, created_at DESC, id)`;

  it('keeps it by its delta when the update leaves the extreme column alone (the old and new images net out)', async () => {
    await db.sql.query(`UPDATE notes SET score = score + 7 WHERE id IN ${latest}`);
    // before: the 50 groups recomputed, each read by post_id
    expect(await apply()).toEqual({ kind: 'delta', scans: 0, updated: 50 });
    expect(await viewMatches(db.sql, 'note_last', NOTES_LAST)).toBe(true);
  });

  it('keeps it by its delta when a new extreme is added and removed again in one batch', async () => {
    await db.sql.query(`INSERT INTO notes (post_id, score, created_at) VALUES (3, 1, '2030-01-01')`);
    await db.sql.query(`DELETE FROM notes WHERE created_at = '2030-01-01'`);
    expect(await apply()).toMatchObject({ kind: 'delta', scans: 0 });
    expect(await viewMatches(db.sql, 'note_last', NOTES_LAST)).toBe(true);
  });

  it('leaves a group whose delta changes nothing as it is, instead of writing the same row again', async () => {
    // a column only another incremental view reads: logged, and nothing for this view
    await db.sql.query(`UPDATE notes SET flag = 1 WHERE post_id <= 50`);
    // before: the 50 groups' rows written again, unchanged
    expect(await apply()).toEqual({ kind: 'delta', scans: 0, updated: 0 });
    expect(await viewMatches(db.sql, 'note_last', NOTES_LAST)).toBe(true);
  });

  it('recomputes the groups whose extreme value itself went', async () => {
    await db.sql.query(`UPDATE notes SET created_at = created_at - interval '1 year' WHERE id IN ${latest}`);
    const { kind, scans } = await apply();
    expect(kind).toBe('delta');
    expect(scans).toBeGreaterThan(0);
    expect(await viewMatches(db.sql, 'note_last', NOTES_LAST)).toBe(true);
  });
});

describe('a delta view joined with USING', () => {
  const TEAMS = `SELECT a.team, count(*) AS edits, max(e.at) AS last_at FROM edits e JOIN authors a USING (author_id) GROUP BY a.team`;
  it('recomputes the group a row leaves with its extreme, though the old and new images hold the same value', async () => {
    await db.sql.query(`
      CREATE TABLE authors (author_id int PRIMARY KEY, team int NOT NULL);
      INSERT INTO authors VALUES (1, 1), (2, 2);
      CREATE TABLE edits (id int PRIMARY KEY, author_id int NOT NULL, at timestamptz NOT NULL);
      INSERT INTO edits VALUES (1, 1, '2026-01-01'), (2, 1, '2026-02-01'), (3, 2, '2026-01-15');
      CREATE MATERIALIZED VIEW team_edits AS ${TEAMS};
      CREATE UNIQUE INDEX ON team_edits (team);`);
    const p = runCli(['watch', 'team_edits', '--incremental'], { DATABASE_URL: db.url });
    expect(await p.exit).toMatchObject({ code: 0 });
    // team 1's latest edit moves to team 2: the same "at" leaves one group and joins another
    await db.sql.query('UPDATE edits SET author_id = 2 WHERE id = 2');
    await inRepeatableRead(db.sql, () => applyKind('team_edits'));
    expect(await viewMatches(db.sql, 'team_edits', TEAMS)).toBe(true);
  });
});

describe('a view made incremental before version 16', () => {
  it("gets this version's statement for dropping its recomputed groups from migration 16", async () => {
    const stored = async () =>
      (
        await db.sql.query<{ s: string }>(
          `SELECT i.statements #>> '{delta,dropRecomputed}' AS s FROM mvrefresh.incremental i
             JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = 'post_last'`,
        )
      ).rows[0]!.s;
    const current = await stored();
    const keys = /FROM (pg_temp\.\S+) k\)$/.exec(current)?.[1];
    expect(keys).toBeDefined();
    // as version 15 wrote it
    await db.sql.query(
      `UPDATE mvrefresh.incremental i SET statements = jsonb_set(i.statements, '{delta,dropRecomputed}', to_jsonb($1::text))
         FROM mvrefresh.view_state v WHERE v.id = i.view_id AND v.view_name = 'post_last'`,
      [
        `DELETE FROM pg_temp.mvrefresh_delta d WHERE EXISTS (SELECT FROM ${keys} k WHERE k."post_id" IS NOT DISTINCT FROM d."post_id")`,
      ],
    );
    await db.sql.query('DELETE FROM mvrefresh.migrations WHERE version = 16');
    const p = runCli(['migrate'], { DATABASE_URL: db.url });
    expect(await p.exit).toMatchObject({ code: 0 });
    expect(await stored()).toBe(current);
  });
});

describe('views made incremental before version 17', () => {
  it("get this version's upsert and probe from migration 17", async () => {
    const s = db.sql;
    await s.query(`CREATE MATERIALIZED VIEW note_means AS
        SELECT n.post_id, count(*) AS notes, sum(n.score) AS score, avg(n.score) AS mean FROM notes n GROUP BY n.post_id;
      CREATE UNIQUE INDEX ON note_means (post_id);`);
    const p = runCli(['watch', 'note_means', '--incremental'], { DATABASE_URL: db.url });
    expect(await p.exit).toMatchObject({ code: 0 });
    const stored = async (view: string, path: string) =>
      (
        await s.query<{ s: string }>(
          `SELECT i.statements #>> $2 AS s FROM mvrefresh.incremental i
             JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = $1`,
          [view, path],
        )
      ).rows[0]!.s;
    const store = (view: string, path: string, text: string) =>
      s.query(
        `UPDATE mvrefresh.incremental i SET statements = jsonb_set(i.statements, $2, to_jsonb($3::text))
           FROM mvrefresh.view_state v WHERE v.id = i.view_id AND v.view_name = $1`,
        [view, path, text],
      );
    const cases: [string, string, (t: string) => string][] = [
      // as version 16 wrote them
      ['note_last', '{delta,upsert}', (t) => t.replace(/ AND \([^)]*\) RETURNING /, ' RETURNING ')],
      ['note_means', '{delta,upsert}', (t) => t.replace(/ AND \([^)]*\) RETURNING /, ' RETURNING ')],
      [
        'reply_commenters',
        '{delta,probe,probe}',
        (t) => t.replace(' OFFSET 0) p GROUP BY ', ') p GROUP BY '),
      ],
    ];
    const current: string[] = [];
    for (const [view, path, older] of cases) {
      const now = await stored(view, path);
      current.push(now);
      expect(older(now)).not.toBe(now);
      await store(view, path, older(now));
    }
    await s.query('DELETE FROM mvrefresh.migrations WHERE version = 17');
    const m = runCli(['migrate'], { DATABASE_URL: db.url });
    expect(await m.exit).toMatchObject({ code: 0 });
    for (const [i, [view, path]] of cases.entries()) expect(await stored(view, path)).toBe(current[i]);
  });
});

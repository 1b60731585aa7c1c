import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

/**
 * An incremental view's tx2 runs at REPEATABLE READ (routines/refresh_view.sql): a daemon that counts a
 * target miss of the view (record_target_miss), or the drift check, updates the view's row while the apply
 * runs, after the apply's snapshot, and the apply's own update of that row failed ("could not serialize
 * access"), losing the apply and failing the caller (refresh_dirty() with it). The apply is kept and the
 * cycle left unfinished instead, for the next one to finish.
 */
const db = useTestDatabase('incremental_cycle_race');
const DEF =
  'SELECT c.post_id, count(*) AS n, sum(c.score) AS total FROM comments c JOIN posts p ON p.id = c.post_id GROUP BY c.post_id';
const REFRESH = `CALL mvrefresh.refresh_view($1, false, 2000, 30000, 100, 500, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`;

async function connect(name: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url, application_name: name });
  await c.connect();
  return c;
}

describe("an apply while another session updates its view's row", () => {
  let viewId = 0;
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE posts (id int PRIMARY KEY);
      INSERT INTO posts SELECT g FROM generate_series(0, 100) g;
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id int NOT NULL, score int NOT NULL);
      INSERT INTO comments (post_id, score) SELECT g % 10, g FROM generate_series(1, 100) g;
      CREATE MATERIALIZED VIEW by_post AS ${DEF};
      CREATE UNIQUE INDEX ON by_post (post_id);`);
    const p = runCli(['watch', 'by_post', '--incremental'], { DATABASE_URL: db.url });
    expect((await p.exit).code).toBe(0);
    viewId = Number(
      (await db.sql.query<{ id: number }>(`SELECT id FROM mvrefresh.view_state WHERE view_name = 'by_post'`))
        .rows[0]!.id,
    );
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
  });

  it('keeps the apply and leaves the cycle unfinished for the next one, which finishes it', async () => {
    await db.sql.query('INSERT INTO comments (post_id, score) VALUES (1, 1000), (42, 7)');
    const holder = await connect('test:holder');
    const applier = await connect('test:applier');
    const other = await connect('test:other');
    try {
      // the apply's LOCK of a source waits here, after its snapshot was taken (writers of comments do not)
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE posts IN ACCESS EXCLUSIVE MODE');
      const applied = applier.query<{ outcome: string; retry_in_ms: number | null }>(REFRESH, [viewId]);
      await waitFor('the apply waiting for the source', async () => {
        const { rows } = await db.sql.query(
          `SELECT FROM pg_stat_activity WHERE application_name = 'test:applier' AND wait_event_type = 'Lock'`,
        );
        return rows.length > 0;
      });
      // a daemon counts a target miss of the view; then a write the apply's snapshot does not show
      await other.query('SELECT mvrefresh.record_target_miss($1, 1500)', [viewId]);
      await db.sql.query('INSERT INTO comments (post_id, score) VALUES (2, 5)');
      await holder.query('ROLLBACK');
      const { rows } = await applied;
      expect(rows[0]).toMatchObject({ outcome: 'refreshed' });
      expect(rows[0]!.retry_in_ms).toBeGreaterThan(0);
    } finally {
      await holder.end();
      await applier.end();
      await other.end();
    }
    // the apply stayed: its rows are there; the cycle did not finish
    const post42 = await db.sql.query<{ n: string }>('SELECT n FROM by_post WHERE post_id = 42');
    expect(post42.rows.map((r) => Number(r.n))).toEqual([1]);
    const state = await db.sql.query<{ started: string; done: string }>(
      'SELECT started_gen AS started, done_gen AS done FROM mvrefresh.view_state WHERE id = $1',
      [viewId],
    );
    expect(BigInt(state.rows[0]!.started)).toBeGreaterThan(BigInt(state.rows[0]!.done));
    // the next cycle applies what came since (post 2's new row) and finishes
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const after = await db.sql.query<{ started: string; done: string }>(
      'SELECT started_gen AS started, done_gen AS done FROM mvrefresh.view_state WHERE id = $1',
      [viewId],
    );
    expect(after.rows[0]!.done).toBe(after.rows[0]!.started);
    const diff = await db.sql.query<{ n: string }>(
      `SELECT count(*) AS n FROM ((TABLE by_post EXCEPT ALL ${DEF}) UNION ALL (${DEF} EXCEPT ALL TABLE by_post)) d`,
    );
    expect(Number(diff.rows[0]!.n)).toBe(0);
  });
});

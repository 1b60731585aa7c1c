import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { inRepeatableRead, useTestDatabase } from './support/db.js';
import { viewMatches } from './support/shop.js';

/**
 * The log of a source is pruned by the apply of the view furthest behind (routines/apply_view.sql): a row
 * goes once every view reading the source shows its transaction in its applied snapshot. Below the smallest
 * xmin of those snapshots a row goes without a check per view, at or above their smallest xmax it stays,
 * and between the two each view's snapshot decides: a writer still running when one view applied is in that
 * window, and its rows must stay until that view applied them too.
 */
const db = useTestDatabase('incremental_prune');
const VIEWS = {
  by_post: 'SELECT c.post_id, count(*) AS n, sum(c.score) AS total FROM comments c GROUP BY c.post_id',
  high: 'SELECT c.id, c.post_id, c.score FROM comments c WHERE c.score > 10',
};
const KEYS = { by_post: 'post_id', high: 'id' };

async function connect(name: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url, application_name: name });
  await c.connect();
  return c;
}

/** One apply of `view` in its own REPEATABLE READ transaction on `c`, as tx2 of a cycle runs it. */
async function apply(c: pg.ClientBase, view: keyof typeof VIEWS): Promise<string> {
  return inRepeatableRead(c, async () => {
    const { rows } = await c.query<{ kind: string }>(
      `SELECT a.kind FROM mvrefresh.view_state v, pg_class c, mvrefresh.apply_view(v.id, c.oid, c.relowner) a
        WHERE v.view_name = $1 AND c.oid = $1::regclass`,
      [view],
    );
    return rows[0]!.kind;
  });
}

describe('pruning the log of a source read by two incremental views', () => {
  let log = '';
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id int NOT NULL, score int NOT NULL);
      INSERT INTO comments (post_id, score) SELECT g % 10, g % 30 FROM generate_series(1, 200) g;`);
    for (const [name, def] of Object.entries(VIEWS)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${def}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (${KEYS[name as keyof typeof VIEWS]})`);
      const p = runCli(['watch', name, '--incremental'], { DATABASE_URL: db.url });
      expect((await p.exit).code).toBe(0);
    }
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    log = (
      await db.sql.query<{ t: string }>(
        `SELECT format('mvrefresh.%I', 'log_' || 'comments'::regclass::oid) AS t`,
      )
    ).rows[0]!.t;
  });

  it("keeps a writer's rows that one view's applied snapshot does not show, and prunes them once it does", async () => {
    const writer = await connect('test:writer');
    const applier = await connect('test:applier');
    try {
      await writer.query('BEGIN');
      await writer.query('INSERT INTO comments (post_id, score) VALUES (3, 50), (4, 60)');
      const { rows } = await writer.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
      const xid = rows[0]!.xid;
      const rowsOf = async () =>
        Number(
          (
            await db.sql.query<{ n: string }>(`SELECT count(*) AS n FROM ${log} WHERE mvr_xid = $1::xid8`, [
              xid,
            ])
          ).rows[0]!.n,
        );
      await db.sql.query('INSERT INTO comments (post_id, score) VALUES (5, 70)');
      // high applies while the writer runs: its snapshot does not show it
      expect(await apply(applier, 'high')).toBe('keys');
      await writer.query('COMMIT');
      await db.sql.query('INSERT INTO comments (post_id, score) VALUES (6, 80)');
      // by_post is the furthest behind and prunes: the writer's rows are between the smallest xmin and the
      // smallest xmax of the two snapshots, and high's does not show them
      expect(await apply(applier, 'by_post')).toBe('delta');
      expect(await rowsOf()).toBe(2);
      expect(await apply(applier, 'high')).toBe('keys');
      expect(await rowsOf()).toBe(0);
      expect(Number((await db.sql.query<{ n: string }>(`SELECT count(*) AS n FROM ${log}`)).rows[0]!.n)).toBe(
        0,
      );
      for (const [name, def] of Object.entries(VIEWS))
        expect(await viewMatches(db.sql, name, def)).toBe(true);
    } finally {
      await writer.end();
      await applier.end();
    }
  });
});

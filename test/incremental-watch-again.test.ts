import { describe, expect, it, beforeAll } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon } from './support/daemon.js';
import { delay, waitFor } from './support/wait.js';

/**
 * The commands that name a watched view accept an incremental view, whose name a table stands under:
 * `watch` again sets its settings and keeps it incremental (routines/set_settings.sql), `pause` and
 * `resume` act on it (routines/resolve_watched.sql).
 */
const db = useTestDatabase('inc_watch_again');
const DEF = 'SELECT g, count(*) AS n FROM t GROUP BY g';
const TOKEN = 'watch-again-admin-token';

async function cli(...args: string[]) {
  const p = runCli(args, { DATABASE_URL: db.url });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

async function settings() {
  const { rows } = await db.sql.query<{
    max_staleness_ms: number | null;
    refresh_budget: number | null;
    refresh_interval_ms: number | null;
    paused: boolean;
    kind: string;
    incremental: boolean;
  }>(
    `SELECT v.max_staleness_ms, v.refresh_budget, v.refresh_interval_ms, v.paused,
            (SELECT relkind FROM pg_class WHERE oid = 'public.inc'::regclass) AS kind,
            EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = v.id AND i.state = 'active') AS incremental
       FROM mvrefresh.view_state v WHERE v.view_schema = 'public' AND v.view_name = 'inc'`,
  );
  return rows[0]!;
}

async function differs(): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM (TABLE inc EXCEPT ALL ${DEF}) a)
          + (SELECT count(*) FROM (${DEF} EXCEPT ALL TABLE inc) b) AS n`,
  );
  return Number(rows[0]!.n);
}

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE t (id serial PRIMARY KEY, g int NOT NULL);
    INSERT INTO t (g) SELECT g % 4 FROM generate_series(1, 40) g;
    CREATE MATERIALIZED VIEW inc AS ${DEF};
    CREATE UNIQUE INDEX ON inc (g);`);
  const r = await cli('watch', 'inc', '--incremental', '--max-staleness', '5s');
  expect(r.code, r.text).toBe(0);
});

describe('watch of a view that is already incremental', () => {
  it('sets the settings given and keeps it incremental, with --incremental or without', async () => {
    expect(await settings()).toMatchObject({ max_staleness_ms: 5000, refresh_budget: null, kind: 'r' });
    const again = await cli(
      'watch',
      'inc',
      '--incremental',
      '--max-staleness',
      '2s',
      '--refresh-budget',
      '30%',
    );
    expect(again.code, again.text).toBe(0);
    expect(again.text).toContain('updated public.inc');
    expect(again.text).toContain('it stays incremental');
    expect(again.text).toContain('staleness target: 2 s; refresh budget: 30%');
    expect(await settings()).toMatchObject({
      max_staleness_ms: 2000,
      refresh_budget: 0.3,
      kind: 'r',
      incremental: true,
    });
    // as a re-watch of a materialized view: what is left out is the daemon's default again
    const plain = await cli('watch', 'inc', '--refresh-interval-ms', '60000');
    expect(plain.code, plain.text).toBe(0);
    expect(await settings()).toMatchObject({
      max_staleness_ms: null,
      refresh_budget: null,
      refresh_interval_ms: 60000,
      kind: 'r',
      incremental: true,
    });
    const json = await cli('watch', 'inc', '--max-staleness', '3s', '--json');
    expect(json.code, json.text).toBe(0);
    expect(JSON.parse(json.text)).toMatchObject({ view: 'public.inc', max_staleness_ms: 3000 });
    expect(await differs()).toBe(0);
  });

  it('refuses --with-dependencies and bad settings with a clear error, changing nothing', async () => {
    const before = await settings();
    const deps = await cli('watch', 'inc', '--with-dependencies');
    expect(deps.code).toBe(1);
    expect(deps.text).toContain('inc is an incremental view: --with-dependencies does not apply');
    const budget = await cli('watch', 'inc', '--refresh-budget', '150%');
    expect(budget.code).not.toBe(0);
    expect(budget.text).toMatch(/budget/);
    expect(await settings()).toEqual(before);
  });
});

describe('pause and resume of an incremental view', () => {
  it('stop and restart its applies: a paused view is neither due nor applied, and resuming notifies', async () => {
    expect((await cli('pause', 'inc')).code).toBe(0);
    expect((await settings()).paused).toBe(true);
    await db.sql.query('INSERT INTO t (g) VALUES (1), (9)');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs()).toBeGreaterThan(0);
    const { rows: due } = await db.sql.query(
      `SELECT FROM mvrefresh.due_views() d JOIN mvrefresh.view_state v ON v.id = d.view_id WHERE v.view_name = 'inc'`,
    );
    expect(due).toEqual([]);
    const notes: string[] = [];
    db.sql.on('notification', (n) => notes.push(n.payload ?? ''));
    await db.sql.query('LISTEN mvrefresh');
    const resumed = await cli('resume', 'inc');
    expect(resumed.code, resumed.text).toBe(0);
    expect(resumed.text).toContain('a refresh follows');
    await db.sql.query('SELECT 1');
    expect(notes.length).toBeGreaterThan(0);
    await db.sql.query('UNLISTEN mvrefresh');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs()).toBe(0);
  });

  it('over HTTP too: POST /views/<id>/pause holds its applies, /resume lets the daemon apply what was written', async () => {
    const d = await startDaemon(db.url, { 'http.adminToken': TOKEN });
    try {
      const id = (
        await db.sql.query<{ id: number }>(
          "SELECT id FROM mvrefresh.view_state WHERE view_schema = 'public' AND view_name = 'inc'",
        )
      ).rows[0]!.id;
      const post = (action: string) =>
        fetch(`http://127.0.0.1:${d.running.port}/views/${id}/${action}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}` },
        });
      await waitFor('the view applied', async () => (await differs()) === 0);
      const paused = await post('pause');
      expect(paused.status).toBe(200);
      expect(await paused.json()).toMatchObject({ paused: true, changed: true });
      await db.sql.query('INSERT INTO t (g) VALUES (2), (11)');
      // ten of the daemon's looks at the logs later, nothing was applied
      await delay(1000);
      expect(await differs()).toBeGreaterThan(0);
      const resumed = await post('resume');
      expect(await resumed.json()).toMatchObject({ paused: false, changed: true, dirty: true });
      await waitFor('the writes made while paused applied', async () => (await differs()) === 0);
    } finally {
      await d.stop();
    }
  });

  it('names the object when the name is a table that is not an incremental view', async () => {
    const r = await cli('pause', 't');
    expect(r.code).toBe(1);
    expect(r.text).toContain('public.t is not a materialized view (it is a table)');
  });
});

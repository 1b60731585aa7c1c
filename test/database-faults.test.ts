import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches, SHOP_VIEW, watchShop } from './support/shop.js';
import { reportRecovery } from './support/recovery.js';
import { delay, waitFor } from './support/wait.js';

const db = useTestDatabase('faults_database');
const VIEW = SHOP_VIEW;
let d: TestDaemon;
const DAEMON_SETTINGS = {
  maxStalenessMs: 300,
  writerWaitMs: 300,
  lockTimeoutMs: 300,
  backoffBaseMs: 200,
  backoffMaxMs: 1000,
};

interface Status {
  dirty: boolean;
  consecutive_failures: number;
  last_sqlstate: string | null;
  last_error: string | null;
}

async function status(view: string): Promise<Status | undefined> {
  const { rows } = await db.sql.query<Status>(
    'SELECT dirty, consecutive_failures, last_sqlstate, last_error FROM mvrefresh.status WHERE view = $1',
    [view],
  );
  return rows[0];
}

async function fresh(view: string, query: string) {
  await waitFor(`${view} to equal its query`, () => viewMatches(db.sql, view, query));
  await waitFor(`${view} clean`, async () => (await status(`public.${view}`))?.dirty === false);
  expect(await viewMatches(db.sql, view, query)).toBe(true);
}

async function failingWith(view: string, sqlstate: string) {
  return waitFor(`${view} to record ${sqlstate}`, async () => {
    const s = await status(`public.${view}`);
    return s && s.last_sqlstate === sqlstate && s.consecutive_failures > 0 ? s : undefined;
  });
}

async function openClient() {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  return c;
}

beforeAll(async () => {
  await watchShop(db.sql);
  d = await startDaemon(db.url, DAEMON_SETTINGS);
  await fresh(VIEW, SHOP_QUERY);
});

afterAll(async () => {
  await d?.stop();
});

describe('the read-first race of design.md', () => {
  it('reflects a write whose trigger saw the view dirty and that commits after the refresh took its snapshot', async () => {
    const before = d.reports.length;
    await db.exec(INSERT_ORDER); // the view turns dirty; the daemon waits for its time
    const a = await openClient();
    try {
      await a.query('BEGIN');
      await a.query(INSERT_ORDER); // its trigger sees dirty = true and skips
      await waitFor('a refresh while the writer is open', () =>
        d.reports.slice(before).find((r) => r.outcome === 'refreshed'),
      );
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await fresh(VIEW, SHOP_QUERY);
  });

  it('keeps refreshing new writes while a long writer outlives the wait, and reflects it when it commits', async () => {
    const long = await openClient();
    try {
      await long.query('BEGIN');
      await long.query(INSERT_ORDER);
      for (let i = 0; i < 3; i += 1) {
        const mark = d.reports.length;
        await db.exec(INSERT_ORDER);
        await waitFor('a refresh of the new write', () =>
          d.reports.slice(mark).find((r) => r.outcome === 'refreshed'),
        );
      }
      // the long writer's rows are not visible yet, and the view is still due for them
      expect((await status(`public.${VIEW}`))?.dirty).toBe(true);
      await long.query('COMMIT');
    } finally {
      await long.end();
    }
    await fresh(VIEW, SHOP_QUERY);
  });
});

describe('locks and timeouts', () => {
  it('records lock timeouts behind an EXCLUSIVE lock, backs off, never blocks readers, and recovers', async () => {
    const holder = await openClient();
    const start = d.reports.length;
    try {
      // a refresh by someone else, left open: it holds the view's ExclusiveLock (LOCK TABLE refuses views)
      await holder.query('BEGIN');
      await holder.query(`REFRESH MATERIALIZED VIEW CONCURRENTLY ${VIEW}`);
      await db.exec(INSERT_ORDER);
      await failingWith(VIEW, '55P03');
      const reader = await openClient();
      try {
        await reader.query("SET statement_timeout = '1s'");
        await reader.query(`SELECT count(*) FROM ${VIEW}`);
      } finally {
        await reader.end();
      }
      await delay(3000);
      const attempts = d.reports
        .slice(start)
        .filter((r) => r.view === `public.${VIEW}` && r.outcome === 'failed');
      // 3 s of a 200 ms base backoff capped at 1 s: a handful of attempts, not a tight loop
      expect(attempts.length).toBeGreaterThan(0);
      expect(attempts.length).toBeLessThanOrEqual(10);
      expect((await status(`public.${VIEW}`))?.dirty).toBe(true);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    const released = Date.now();
    await fresh(VIEW, SHOP_QUERY);
    reportRecovery('view held in EXCLUSIVE mode (backoff capped at 1 s), from the release', released);
    expect((await status(`public.${VIEW}`))?.consecutive_failures).toBe(0);
  });

  it('records a refresh cut by statement_timeout and keeps the view dirty', async () => {
    await db.sql.query(`CREATE TABLE slow_src (k int PRIMARY KEY); INSERT INTO slow_src VALUES (1);
      CREATE MATERIALIZED VIEW slow_view AS SELECT k, (SELECT 1 FROM pg_sleep(1)) AS s FROM slow_src WITH NO DATA;
      CREATE UNIQUE INDEX ON slow_view (k);`);
    await d.stop();
    const tight = await startDaemon(db.url, {
      refreshTimeoutMs: 200,
      backoffBaseMs: 300,
      backoffMaxMs: 1000,
    });
    try {
      await db.sql.query("SELECT mvrefresh.watch('slow_view')");
      const s = await failingWith('slow_view', '57014');
      expect(s.dirty).toBe(true);
      await delay(2000);
      const failures = (await status('public.slow_view'))!.consecutive_failures;
      expect(failures).toBeLessThanOrEqual(8);
    } finally {
      await tight.stop();
      await db.sql.query("SELECT mvrefresh.unwatch('slow_view')");
      d = await startDaemon(db.url, DAEMON_SETTINGS);
    }
  });
});

describe('DDL under the daemon', () => {
  const DDL_QUERY = 'SELECT k, v FROM ddl_src';
  beforeAll(async () => {
    await db.sql
      .query(`CREATE TABLE ddl_src (k int PRIMARY KEY, v int); INSERT INTO ddl_src VALUES (1, 1), (2, 2);
      CREATE MATERIALIZED VIEW ddl_view AS SELECT k, v FROM ddl_src; CREATE UNIQUE INDEX ddl_view_k ON ddl_view (k);`);
    await db.sql.query("SELECT mvrefresh.watch('ddl_view')");
    await fresh('ddl_view', DDL_QUERY);
  });

  it('records a dropped view as gone, keeps other views fresh, and picks the view up again after it is re-created and watched', async () => {
    await db.sql.query('DROP MATERIALIZED VIEW ddl_view');
    await db.exec('INSERT INTO ddl_src VALUES (3, 3)');
    const s = await failingWith('ddl_view', '42P01');
    expect(s.last_error).toMatch(/dropped|gone/);
    await db.exec(INSERT_ORDER);
    await fresh(VIEW, SHOP_QUERY);
    await db.sql.query('CREATE MATERIALIZED VIEW ddl_view AS SELECT k, v FROM ddl_src WITH NO DATA');
    await db.sql.query('CREATE UNIQUE INDEX ddl_view_k ON ddl_view (k)');
    const watched = Date.now();
    await db.sql.query("SELECT mvrefresh.watch('ddl_view')");
    await fresh('ddl_view', DDL_QUERY);
    reportRecovery('view dropped and re-created WITH NO DATA, from watch', watched);
  });

  it.each([
    {
      title: 'a view that lost its unique index (55000) and recovers when the index is back',
      breakSql: 'DROP INDEX ddl_view_k',
      sqlstate: '55000',
      fix: () => db.sql.query('CREATE UNIQUE INDEX ddl_view_k ON ddl_view (k)'),
      recovery: 'unique index dropped (55000), from the index re-created',
    },
    {
      // the row (4, 4) the case above inserted is now a duplicate
      title: 'duplicate rows that make CONCURRENTLY fail (21000) and recovers when they are gone',
      breakSql: 'ALTER TABLE ddl_src DROP CONSTRAINT ddl_src_pkey',
      sqlstate: '21000',
      fix: () => db.exec('DELETE FROM ddl_src WHERE ctid = (SELECT max(ctid) FROM ddl_src WHERE k = 4)'),
      recovery: 'duplicate rows (21000), from the duplicate deleted',
    },
  ])('records $title', async ({ breakSql, sqlstate, fix, recovery }) => {
    await db.sql.query(breakSql);
    await db.exec('INSERT INTO ddl_src VALUES (4, 4)');
    await failingWith('ddl_view', sqlstate);
    await fix();
    const fixed = Date.now();
    await fresh('ddl_view', DDL_QUERY);
    reportRecovery(recovery, fixed);
  });
});

describe('hostile notifications', () => {
  it('survives 100 000 notifications in one burst with bounded memory and one refresh per view', async () => {
    const { rows } = await db.sql.query<{ id: number }>(
      "SELECT id FROM mvrefresh.view_state WHERE view_name = 'monthly_product_sales'",
    );
    const id = rows[0]!.id;
    await fresh(VIEW, SHOP_QUERY);
    const rssBefore = process.memoryUsage().rss;
    const mark = d.reports.length;
    const logMark = d.logs.length;
    await db.sql.query(
      `SELECT pg_notify('mvrefresh', CASE g % 4 WHEN 0 THEN (1000000 + g)::text WHEN 1 THEN 'x' || g
                                              WHEN 2 THEN '"; DROP TABLE orders; --' || g ELSE $1::text || g END)
         FROM generate_series(1, 100000) g`,
      [id],
    );
    for (let i = 0; i < 50; i += 1) await db.sql.query('SELECT pg_notify($1, $2)', ['mvrefresh', String(id)]);
    // the burst takes a while to drain on a loaded machine; then the rest of it must add no refresh
    await waitFor(
      'a refresh of the view after the burst',
      () => d.reports.slice(mark).some((r) => r.view === `public.${VIEW}`),
      { timeoutMs: 30_000 },
    );
    await delay(1500);
    expect(d.running.listener.connected).toBe(true);
    // a connection busy delivering the burst is alive: dropping it would lose the rest of the burst
    expect(d.logs.slice(logMark).filter((l) => l['event'] === 'listener_disconnected')).toEqual([]);
    const refreshes = d.reports.slice(mark).filter((r) => r.view === `public.${VIEW}`);
    expect(refreshes.length).toBeGreaterThanOrEqual(1);
    expect(refreshes.length).toBeLessThanOrEqual(3);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(150 * 1024 * 1024);
    expect((await db.sql.query('SELECT count(*) FROM orders')).rows).toHaveLength(1);
    await fresh(VIEW, SHOP_QUERY);
  });
});

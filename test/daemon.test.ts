import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';
import { refreshLockHolders } from './support/locks.js';
import { delay, waitFor } from './support/wait.js';
import { isSuccess } from '../src/db/protocol.js';

const db = useTestDatabase('daemon');
let d: TestDaemon;

const refreshed = (r: { outcome: string }) => isSuccess(r.outcome);

async function quiet(view: string) {
  await waitFor(`${view} fresh and clean`, async () => {
    const { rows } = await db.sql.query<{ dirty: boolean }>(
      'SELECT dirty FROM mvrefresh.status WHERE view = $1',
      [view],
    );
    // a reconnect (an earlier test kills LISTEN) runs a sweep and a drift check that may mark views
    return (
      d.running.listener.connected &&
      !d.running.driftChecker.checking &&
      rows[0] &&
      !rows[0].dirty &&
      d.running.scheduler.waitingCount === 0 &&
      d.running.refresher.active === 0 &&
      d.running.refresher.queued === 0
    );
  });
}

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  d = await startDaemon(db.url);
});

afterAll(async () => {
  await d?.stop();
});

describe('the refresh daemon', () => {
  it('refreshes a view after a committed write so that it equals its query', async () => {
    await quiet('public.monthly_product_sales');
    await db.exec(INSERT_ORDER);
    await waitFor('the view to reflect the write', () =>
      viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY),
    );
    await quiet('public.monthly_product_sales');
  });

  it('coalesces a storm of 2000 write transactions into a bounded number of refreshes', async () => {
    await quiet('public.monthly_product_sales');
    const before = d.reports.length;
    const started = Date.now();
    const writers = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(
        writers.map(async (c) => {
          for (let i = 0; i < 500; i += 1) await c.query(INSERT_ORDER);
        }),
      );
    } finally {
      await Promise.all(writers.map((c) => c.end()));
    }
    const writing = Date.now() - started;
    await waitFor('the view to reflect the storm', () =>
      viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY),
    );
    await quiet('public.monthly_product_sales');
    const refreshes = d.reports.slice(before).filter(refreshed).length;
    // under a stream, the next refresh starts at the earliest 0.85 x target - expected after the previous
    // start (the first write after its clear), and after its end (one at a time): max(170 - e, e) >= 85 ms
    // apart whatever the refresh takes (e), plus the tail
    const bound = Math.ceil(writing / 80) + 2;
    expect(refreshes).toBeGreaterThan(0);
    expect(refreshes).toBeLessThanOrEqual(bound);
    expect(refreshes).toBeLessThan(2000 / 10);
  });

  it('does not refresh for a rolled-back transaction', async () => {
    await quiet('public.monthly_product_sales');
    const before = d.reports.length;
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(INSERT_ORDER);
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
    await delay(1000);
    expect(d.reports.slice(before)).toEqual([]);
  });

  it('refreshes a three-level chain of materialized views upstream first', async () => {
    await db.sql.query(`
      CREATE TABLE chain_src (k int PRIMARY KEY, v int);
      INSERT INTO chain_src VALUES (1, 1), (2, 2);
      CREATE MATERIALIZED VIEW chain1 AS SELECT k, v * 10 AS v FROM chain_src;
      CREATE UNIQUE INDEX ON chain1 (k);
      CREATE MATERIALIZED VIEW chain2 AS SELECT k, v + 1 AS v FROM chain1;
      CREATE UNIQUE INDEX ON chain2 (k);
      CREATE MATERIALIZED VIEW chain3 AS SELECT sum(v) AS total, 1 AS one FROM chain2;
      CREATE UNIQUE INDEX ON chain3 (one);`);
    await db.sql.query("SELECT mvrefresh.watch('chain3', p_with_dependencies => true)");
    await waitFor('the chain to be refreshed once', () =>
      viewMatches(db.sql, 'chain3', 'SELECT 32::bigint AS total, 1 AS one'),
    );
    await quiet('public.chain3');
    const before = d.reports.length;
    await db.exec('INSERT INTO chain_src VALUES (3, 3)');
    await waitFor('the chain to reflect the write', () =>
      viewMatches(db.sql, 'chain3', 'SELECT (11 + 21 + 31)::bigint AS total, 1 AS one'),
    );
    await quiet('public.chain3');
    const order = d.reports
      .slice(before)
      .filter(refreshed)
      .map((r) => r.view);
    expect(order.indexOf('public.chain1')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('public.chain1')).toBeLessThan(order.indexOf('public.chain2'));
    expect(order.indexOf('public.chain2')).toBeLessThan(order.indexOf('public.chain3'));
  });

  it('records a failing refresh, keeps the view dirty, backs off, and recovers when the data is fixed', async () => {
    await db.sql.query(`
      CREATE TABLE dup_src (k int, v int);
      INSERT INTO dup_src VALUES (1, 1);
      CREATE MATERIALIZED VIEW dup_view AS SELECT k, v FROM dup_src;
      CREATE UNIQUE INDEX ON dup_view (k);`);
    await db.sql.query("SELECT mvrefresh.watch('dup_view')");
    await quiet('public.dup_view');
    await db.exec('INSERT INTO dup_src VALUES (1, 2)');
    const failing = await waitFor('the failure to be recorded', async () => {
      const { rows } = await db.sql.query<{
        dirty: boolean;
        consecutive_failures: number;
        last_sqlstate: string;
        next_attempt_at: Date;
      }>(
        "SELECT dirty, consecutive_failures, last_sqlstate, next_attempt_at FROM mvrefresh.status WHERE view = 'public.dup_view'",
      );
      return rows[0] && rows[0].consecutive_failures >= 2 ? rows[0] : undefined;
    });
    expect(failing.dirty).toBe(true);
    expect(failing.last_sqlstate).toBe('23505');
    // other views keep refreshing meanwhile
    await db.exec(INSERT_ORDER);
    await waitFor('an unrelated view to refresh', () =>
      viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY),
    );
    // backoff: attempts are spaced out, not a tight loop
    const attempts = d.reports
      .filter((r) => r.view === 'public.dup_view' && r.outcome === 'failed')
      .map((r) => r.at);
    for (let i = 1; i < attempts.length; i += 1)
      expect(attempts[i]! - attempts[i - 1]!).toBeGreaterThanOrEqual(100);
    await db.exec('DELETE FROM dup_src WHERE v = 2');
    await waitFor(
      'recovery',
      async () => {
        const { rows } = await db.sql.query<{ consecutive_failures: number; dirty: boolean }>(
          "SELECT consecutive_failures, dirty FROM mvrefresh.status WHERE view = 'public.dup_view'",
        );
        return rows[0]?.consecutive_failures === 0 && !rows[0].dirty;
      },
      { timeoutMs: 30_000 },
    );
  });

  it('populates a view created WITH NO DATA with one plain refresh', async () => {
    await db.sql.query(`
      CREATE TABLE nodata_src (k int PRIMARY KEY);
      INSERT INTO nodata_src VALUES (1), (2);
      CREATE MATERIALIZED VIEW nodata AS SELECT k FROM nodata_src WITH NO DATA;
      CREATE UNIQUE INDEX ON nodata (k);`);
    await db.sql.query("SELECT mvrefresh.watch('nodata')");
    await waitFor('the view to be populated', () =>
      d.reports.find((r) => r.view === 'public.nodata' && r.outcome === 'populated'),
    );
    expect(await viewMatches(db.sql, 'nodata', 'SELECT k FROM nodata_src')).toBe(true);
  });

  it('reflects writes made while its LISTEN backend was terminated', async () => {
    await quiet('public.monthly_product_sales');
    const reconnects = d.running.listener.reconnectCount;
    await db.sql.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mvrefresh:listen' AND datname = current_database()",
    );
    await db.exec(INSERT_ORDER);
    await db.exec(INSERT_ORDER);
    await waitFor('the listener to reconnect', () => d.running.listener.reconnectCount > reconnects);
    await waitFor('the view to reflect writes made while disconnected', () =>
      viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY),
    );
  });

  it('ignores malformed and unknown notifications on its channel, counting them by kind', async () => {
    await quiet('public.monthly_product_sales');
    const before = d.reports.length;
    const counted = async () =>
      Object.fromEntries(
        (await d.running.metrics.notifications.get()).values.map((v) => [String(v.labels.kind), v.value]),
      );
    const countedBefore = await counted();
    for (const payload of [
      '',
      'not json',
      '{"view":1}',
      '1; DROP TABLE orders',
      '99999',
      '-1',
      'x'.repeat(7999),
    ])
      await db.sql.query('SELECT pg_notify($1, $2)', ['mvrefresh', payload]);
    await waitFor('the notifications counted', async () => {
      const now = await counted();
      return (
        (now['invalid'] ?? 0) - (countedBefore['invalid'] ?? 0) === 6 &&
        (now['unknown'] ?? 0) - (countedBefore['unknown'] ?? 0) === 1
      );
    });
    await delay(1500);
    expect(d.reports.slice(before).filter(refreshed)).toEqual([]);
    expect(d.running.listener.connected).toBe(true);
    const { rows } = await db.sql.query<{ n: string }>('SELECT count(*) AS n FROM orders');
    expect(Number(rows[0]!.n)).toBeGreaterThan(0);
  });
});

describe('two daemons on one database', () => {
  it('never refresh one view at the same time, and together keep it fresh', async () => {
    const other = await startDaemon(db.url);
    const samples: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        while (sampling) {
          samples.push((await refreshLockHolders(c, 'monthly_product_sales')).length);
          await delay(5);
        }
      } finally {
        await c.end();
      }
    })();
    try {
      const writer = new pg.Client({ connectionString: db.url });
      await writer.connect();
      try {
        for (let i = 0; i < 400; i += 1) {
          await writer.query(INSERT_ORDER);
          if (i % 40 === 0) await delay(150);
        }
      } finally {
        await writer.end();
      }
      await waitFor('the view to converge', () => viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY));
    } finally {
      sampling = false;
      await sampler;
      await other.stop();
    }
    expect(samples.length).toBeGreaterThan(10);
    expect(Math.max(...samples)).toBeLessThanOrEqual(1);
    expect(other.reports.length + d.reports.length).toBeGreaterThan(0);
  });
});

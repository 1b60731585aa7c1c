import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgbouncerBinary, startPgBouncer, type PgBouncer } from '../dev/pgbouncer.js';
import { main } from '../src/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';
import { waitFor } from './support/wait.js';
import { isSuccess } from '../src/db/protocol.js';

/**
 * The daemon behind a real PgBouncer (Debian's package), started by this file on a free port: transaction
 * pooling with and without a direct LISTEN URL, and session pooling. CI installs pgbouncer; without it the
 * file is skipped, saying so.
 */
const binary = pgbouncerBinary();
// CI installs pgbouncer and sets this: there a missing binary is a failure, not a skip
if (!binary && process.env['MVREFRESH_TEST_REQUIRE_PGBOUNCER'])
  throw new Error('MVREFRESH_TEST_REQUIRE_PGBOUNCER is set, but no pgbouncer binary was found');
if (!binary)
  process.stderr.write(
    'test/pooler.test.ts skipped: no pgbouncer binary (Debian: apt-get install pgbouncer)\n',
  );

const db = useTestDatabase('pooler');
let transactionPool: PgBouncer | undefined;
let sessionPool: PgBouncer | undefined;

const WRITERS = 8;
const WRITES_PER_WRITER = 40;

/** Three watched views over the shop's tables, each with the unique index CONCURRENTLY needs. */
const VIEWS: { name: string; query: string; key: string }[] = [
  { name: 'monthly_product_sales', query: SHOP_QUERY, key: 'sales_month, product_id' },
  {
    name: 'orders_per_customer',
    query: 'SELECT customer_id, count(*) AS orders FROM orders GROUP BY customer_id',
    key: 'customer_id',
  },
  {
    name: 'quantity_per_product',
    query: 'SELECT product_id, sum(quantity) AS quantity FROM order_items GROUP BY product_id',
    key: 'product_id',
  },
];

const succeeded = (r: { outcome: string }) => isSuccess(r.outcome);

/** WRITERS clients, each committing WRITES_PER_WRITER orders through `url`, all at once. */
async function write(url: string): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  try {
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < WRITES_PER_WRITER; i += 1) await c.query(INSERT_ORDER);
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

async function allViewsMatch(): Promise<boolean> {
  for (const v of VIEWS) if (!(await viewMatches(db.sql, v.name, v.query))) return false;
  return true;
}

async function get(d: TestDaemon, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${d.running.port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Runs fn with a daemon, stopped afterwards whatever happens. */
async function withDaemon(
  url: string,
  overrides: Record<string, unknown>,
  fn: (d: TestDaemon) => Promise<void>,
): Promise<void> {
  const d = await startDaemon(url, overrides);
  try {
    await fn(d);
  } finally {
    await d.stop();
  }
}

describe.skipIf(!binary)('behind PgBouncer', () => {
  beforeAll(async () => {
    await db.sql.query(SHOP_SQL);
    for (const v of VIEWS.slice(1)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${v.name} AS ${v.query}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${v.name} (${v.key})`);
    }
    for (const v of VIEWS) await db.sql.query('SELECT mvrefresh.watch($1)', [v.name]);
    // PgBouncer's defaults: the `options` startup parameter (the daemon's timeouts) is refused
    transactionPool = await startPgBouncer({ serverUrl: db.url, mode: 'transaction' });
    // a session pool that accepts and drops `options`, as many setups configure it
    sessionPool = await startPgBouncer({
      serverUrl: db.url,
      mode: 'session',
      ignoreStartupParameters: ['options'],
    });
  });

  afterAll(async () => {
    await transactionPool?.stop();
    await sessionPool?.stop();
    // the pooled server connections end with PgBouncer, a moment later on the server's side
    await waitFor('the pooled server connections to end', async () => {
      const { rows } = await db.sql.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      );
      return rows[0]?.n === '0';
    });
  });

  it('in transaction mode with a direct LISTEN URL, refreshes follow notifications under 8 writers and none fails', async () => {
    await withDaemon(
      transactionPool!.url,
      // a sweep this rare cannot be what keeps the views fresh within the test
      { listenUrl: db.url, sweepIntervalMs: 600_000 },
      async (d) => {
        await waitFor('the first heartbeat', () => d.running.listener.delivering !== undefined);
        await write(transactionPool!.url);
        await waitFor('every view to equal its query', allViewsMatch);
        expect(d.reports.filter((r) => r.outcome === 'failed' || r.outcome === 'error')).toEqual([]);
        const byNotify = d.reports.filter((r) => r.cause === 'notify' && succeeded(r));
        expect(new Set(byNotify.map((r) => r.view)).size).toBe(VIEWS.length);
        expect(d.running.listener.delivering).toBe(true);
        expect(d.logs.filter((l) => l['event'] === 'listen_not_delivering')).toEqual([]);
        // PgBouncer refused the daemon's start-up settings; the daemon connected without them and said so
        expect(d.logs).toContainEqual(
          expect.objectContaining({
            event: 'startup_settings_unsupported',
            connection: 'database',
            support: 'refused',
          }),
        );
        expect(JSON.parse((await get(d, '/readyz')).body)).toEqual({ status: 'ready' });
      },
    );
  });

  it('in transaction mode without a LISTEN URL, says once that LISTEN goes through a transaction pooler and refreshes on the sweep', async () => {
    await withDaemon(transactionPool!.url, { sweepIntervalMs: 1500 }, async (d) => {
      await waitFor('the diagnosis', () => d.running.listener.delivering === false);
      await write(transactionPool!.url);
      await waitFor('every view to equal its query', allViewsMatch);
      // several more heartbeats find the same: still one error line, no reconnect
      const undelivered = async () =>
        Number(
          /^mvrefresh_listener_undelivered_total (\d+)$/m.exec((await get(d, '/metrics')).body)?.[1] ?? 0,
        );
      await waitFor('three undelivered heartbeats', async () => (await undelivered()) >= 3);
      const diagnoses = d.logs.filter((l) => l['event'] === 'listen_not_delivering');
      expect(diagnoses).toHaveLength(1);
      expect(diagnoses[0]).toMatchObject({
        level: 'error',
        setting: 'MVREFRESH_LISTEN_URL',
        sweepIntervalMs: 1500,
      });
      expect(String(diagnoses[0]!['msg'])).toMatch(
        /transaction pooler.*sweep, every 1500 ms.*MVREFRESH_LISTEN_URL/,
      );
      expect(d.logs.filter((l) => l['event'] === 'listener_disconnected')).toEqual([]);
      expect(d.reports.filter((r) => r.outcome === 'failed' || r.outcome === 'error')).toEqual([]);
      expect(d.reports.some((r) => r.cause === 'sweep' && succeeded(r))).toBe(true);
      const ready = await get(d, '/readyz');
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', mode: 'degraded' });
      expect(JSON.parse(ready.body).reason).toMatch(/MVREFRESH_LISTEN_URL/);
      expect((await get(d, '/metrics')).body).toMatch(/^mvrefresh_listener_delivering 0$/m);
    });
  });

  it('in session mode (start-up settings dropped), LISTEN through the pool delivers and refreshes follow notifications', async () => {
    await withDaemon(sessionPool!.url, { sweepIntervalMs: 600_000 }, async (d) => {
      await waitFor('the first heartbeat', () => d.running.listener.delivering !== undefined);
      await write(sessionPool!.url);
      await waitFor('every view to equal its query', allViewsMatch);
      expect(d.reports.filter((r) => r.outcome === 'failed' || r.outcome === 'error')).toEqual([]);
      const byNotify = d.reports.filter((r) => r.cause === 'notify' && succeeded(r));
      expect(new Set(byNotify.map((r) => r.view)).size).toBe(VIEWS.length);
      expect(d.running.listener.delivering).toBe(true);
      expect(d.logs).toContainEqual(
        expect.objectContaining({ event: 'startup_settings_unsupported', support: 'ignored' }),
      );
      expect((await get(d, '/metrics')).body).toMatch(/^mvrefresh_listener_delivering 1$/m);
    });
  });

  it('mvrefresh status says whether LISTEN through the URL the daemon would use receives notifications', async () => {
    const status = async (env: Record<string, string>) => {
      const out: string[] = [];
      const code = await main(['status'], { out: (l) => out.push(l), err: (l) => out.push(l), env });
      expect(code).toBe(0);
      return out.join('\n');
    };
    const pooled = await status({ DATABASE_URL: transactionPool!.url, MVREFRESH_SWEEP_INTERVAL_MS: '1500' });
    expect(pooled).toMatch(
      /notifications: DEGRADED: .*transaction pooler.*sweep, every 1500 ms.*MVREFRESH_LISTEN_URL/,
    );
    const direct = await status({ DATABASE_URL: transactionPool!.url, MVREFRESH_LISTEN_URL: db.url });
    expect(direct).toMatch(/notifications: LISTEN through .* receives them/);
    expect(await status({ DATABASE_URL: sessionPool!.url })).toMatch(
      /notifications: LISTEN through .* receives them/,
    );
  });
});

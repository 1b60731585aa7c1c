import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { isSuccess } from '../src/db/protocol.js';
import { watchView } from '../src/commands/admin.js';
import { INSERT_ORDER_WITH_ITEMS, SHOP_VIEW_QUERY, shopSchema } from './shop.js';
import { startLocalDaemon, type LocalDaemon } from '../dev/daemon.js';
import { startEmbeddedPostgres, type EmbeddedServer } from '../dev/embedded.js';

/**
 * `npm run demo`: embedded PostgreSQL in a temporary directory, the dirty-flag article's shop, the view
 * watched, the daemon and a small writer, and a running account of what happens. Ctrl-C (or --seconds N)
 * stops everything and removes the directory; a second Ctrl-C exits at once.
 */
const STATUS_EVERY_MS = 2000;
const WRITE_EVERY_MS = [100, 300] as const;
const SEED = { products: 20, customers: 50 } as const;

const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 23)}  ${line}\n`);

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' } }, strict: true });
  const seconds = Number(values.seconds ?? process.env['DEMO_SECONDS'] ?? 0);
  if (!Number.isFinite(seconds) || seconds < 0)
    throw new Error(`--seconds must be a number of seconds, got ${values.seconds}`);

  let server: EmbeddedServer | undefined;
  let daemon: LocalDaemon | undefined;
  let writing = true;
  let writer: Promise<number> | undefined;
  let statusTimer: NodeJS.Timeout | undefined;
  const cleanup = async () => {
    writing = false;
    clearInterval(statusTimer);
    await writer?.catch(() => 0);
    await daemon?.stop();
    await server?.stop();
    if (server) say(`stopped; removed ${server.dir}`);
  };

  let stopRequested: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  let signals = 0;
  const onSignal = () => {
    signals += 1;
    if (signals > 1) {
      void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
      return;
    }
    say('stopping (Ctrl-C again to exit at once)');
    stopRequested();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say('starting an embedded PostgreSQL ...');
    server = await startEmbeddedPostgres({ password: 'demo' });
    say(`temporary directory: ${server.dir}`);
    const url = server.url;
    const setup = new pg.Client({ connectionString: url });
    await setup.connect();
    try {
      await migrate(setup);
      await setup.query(shopSchema(SEED));
      const report = await watchView(setup, 'public.monthly_product_sales', {});
      say(`watching ${report.view}; triggers on ${report.tables.join(', ')}`);
    } finally {
      await setup.end();
    }

    daemon = await startLocalDaemon(url, { overrides: { maxStalenessMs: 1000 } });
    const { running } = daemon;
    say(
      `daemon up; try: curl -s localhost:${running.port}/views   curl -s localhost:${running.port}/metrics`,
    );
    let refreshes = 0;
    running.refresher.on('report', (r) => {
      if (r.outcome === 'clean' || r.outcome === 'busy') return;
      refreshes += isSuccess(r.outcome) ? 1 : 0;
      say(
        `refresh ${r.view}: ${r.outcome} (cause ${r.cause}, ${r.refreshMs ?? r.durationMs} ms)${r.error ? `: ${r.error}` : ''}`,
      );
    });

    let orders = 0;
    writer = (async () => {
      const c = new pg.Client({ connectionString: url, application_name: 'demo:writer' });
      await c.connect();
      try {
        while (writing) {
          await c.query(INSERT_ORDER_WITH_ITEMS, [3, SEED.products, SEED.customers]);
          orders += 1;
          const [lo, hi] = WRITE_EVERY_MS;
          await new Promise((r) => setTimeout(r, lo + Math.random() * (hi - lo)));
        }
      } finally {
        await c.end();
      }
      return orders;
    })();

    const probe = new pg.Client({ connectionString: url, application_name: 'demo:status' });
    await probe.connect();
    const status = async () => {
      const { rows } = await probe.query<{ rows: string; staleness: number; fresh: boolean }>(
        `SELECT (SELECT count(*) FROM monthly_product_sales) AS rows,
                (SELECT staleness_seconds FROM mvrefresh.status WHERE view = 'public.monthly_product_sales') AS staleness,
                NOT EXISTS ((TABLE monthly_product_sales EXCEPT ALL (${SHOP_VIEW_QUERY}))
                            UNION ALL ((${SHOP_VIEW_QUERY}) EXCEPT ALL TABLE monthly_product_sales)) AS fresh`,
      );
      const s = rows[0]!;
      say(
        `status: ${orders} orders written, ${s.rows} rows in the view, staleness ${s.staleness.toFixed(2)} s, ` +
          `${refreshes} refreshes, view ${s.fresh ? 'equals' : 'does not yet equal'} its query`,
      );
      return s.fresh;
    };
    statusTimer = setInterval(() => void status().catch(() => undefined), STATUS_EVERY_MS);
    if (seconds > 0) setTimeout(stopRequested, seconds * 1000).unref();
    await stopped;

    writing = false;
    clearInterval(statusTimer);
    await writer;
    // let the last writes reach the view, then say so
    const deadline = Date.now() + 10_000;
    while (!(await status()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    await probe.end();
    return 0;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);

/**
 * Freshness, coalescing and per-refresh overhead of the daemon, against the pg_cron design as the anchor.
 *
 * Writers insert orders at a fixed rate; two watched views report the newest order id: a fast one (a few
 * milliseconds to refresh) and a slow one (about 500 ms, through pg_sleep). A reader polls both every
 * few milliseconds; a write's latency is the time from its commit to the first poll that shows it.
 * Drivers: the mvrefresh daemon at its defaults (staleness target and refresh budget), the daemon with
 * no wait and no budget (target 1 ms, budget 100%: the limit of one refresh at a time, at 200 writes/s),
 * and `CALL mvrefresh.refresh_dirty()` every second (the pg_cron design). Then 10 000 writes in 10 s show how refreshes coalesce, and the daemon's
 * reports give its overhead per refresh beyond the REFRESH statement.
 *
 * With --pooler (npm run bench:pooler) it measures instead the daemon behind a private PgBouncer in
 * transaction mode (dev/pgbouncer.ts), with a direct LISTEN URL and without one, next to the daemon
 * without a pooler, in one run; writers and the reader connect directly in every row, so that the rows
 * differ only in the daemon's connections.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_FRESHNESS_SECONDS (10),
 * BENCH_OUT (docs/benchmarks.md).
 */
import { cpus, totalmem } from 'node:os';
import { loadConfig } from '../src/config.js';
import type { RefreshReport } from '../src/daemon/refresh/refresher.js';
import { migrate } from '../src/db/migrate.js';
import { shopSchema } from '../demo/shop.js';
import { startLocalDaemon } from '../dev/daemon.js';
import { pgbouncerBinary, startPgBouncer, type PgBouncer } from '../dev/pgbouncer.js';
import { ADMIN_URL, connect, recreateDatabase, dropDatabase } from './support/db.js';
import { numberEnv, percentile, writeSection } from './support/report.js';

const SECONDS = numberEnv('BENCH_FRESHNESS_SECONDS', 10);
const DB = 'mvrefresh_bench_freshness';
const POLL_MS = 5;
/** The freshness goal: p99 <= max(target, refresh p99 / budget + refresh p99) + this. */
const GOAL_MARGIN_MS = 100;
const DEFAULTS = loadConfig({ env: {}, overrides: { databaseUrl: ADMIN_URL } });
const WRITER_CONNECTIONS = 4;
const TICK_MS = 10;
const COALESCE_WRITES = 10_000;
const COALESCE_SECONDS = 10;
/** Single writes, each refreshed before the next: the cycle's fixed cost, with no writer to wait for. */
const OVERHEAD_WRITES = 40;
const OVERHEAD_GAP_MS = 400;
/** A write not visible this long after the writers stopped counts as lost. */
const LOST_AFTER_MS = 30_000;

const VIEWS = {
  fast: 'newest_order_fast',
  slow: 'newest_order_slow',
} as const;

async function setup(): Promise<string> {
  const url = await recreateDatabase(DB);
  const c = await connect(url);
  await c.query(shopSchema({ products: 1000, customers: 1000 }));
  await c.query(`
    CREATE MATERIALIZED VIEW ${VIEWS.fast} AS SELECT 1 AS one, max(order_id) AS newest FROM orders;
    CREATE UNIQUE INDEX ON ${VIEWS.fast} (one);
    CREATE MATERIALIZED VIEW ${VIEWS.slow} AS
      SELECT 1 AS one, max(order_id) AS newest, (SELECT 1 FROM pg_sleep(0.5)) AS slow FROM orders;
    CREATE UNIQUE INDEX ON ${VIEWS.slow} (one);`);
  await migrate(c);
  for (const v of Object.values(VIEWS)) await c.query('SELECT mvrefresh.watch($1)', [v]);
  await c.query('CALL mvrefresh.refresh_dirty()');
  await c.end();
  return url;
}

/**
 * 'daemon, no wait' refreshes a view as soon as a notification arrives and again as soon as the previous
 * refresh ends: no coalescing beyond what one refresh at a time gives, the freshness limit of the design.
 */
type Driver =
  | 'daemon'
  | 'daemon, no wait'
  | 'poll 1 s'
  | 'daemon behind PgBouncer, LISTEN direct'
  | 'daemon behind PgBouncer, no LISTEN URL';

/** The daemon's target and budget under a driver (the poll driver's rows are judged by the defaults). */
const timingOf = (driver: Driver): { maxStalenessMs: number; refreshBudget: number } =>
  driver === 'daemon, no wait'
    ? { maxStalenessMs: 1, refreshBudget: 1 }
    : { maxStalenessMs: DEFAULTS.maxStalenessMs, refreshBudget: DEFAULTS.refreshBudget };
const debounceOf = (driver: Driver): number => timingOf(driver).maxStalenessMs;

interface Running {
  /** The daemon's refresh reports (none for the poll driver). */
  reports: readonly RefreshReport[];
  stop(): Promise<void>;
}

async function startDriver(driver: Driver, url: string, pooler?: PgBouncer): Promise<Running> {
  if (driver !== 'poll 1 s') {
    const pooled = driver.includes('PgBouncer');
    if (pooled && !pooler) throw new Error(`${driver} needs a PgBouncer`);
    return startLocalDaemon(pooled ? pooler!.url : url, {
      overrides: {
        ...(driver === 'daemon behind PgBouncer, LISTEN direct' ? { listenUrl: url } : {}),
        ...timingOf(driver),
      },
    });
  }
  const c = await connect(url);
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await c.query('CALL mvrefresh.refresh_dirty()');
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return {
    reports: [],
    stop: async () => {
      stop = true;
      await loop;
      await c.end();
    },
  };
}

interface Latencies {
  fast: number[];
  slow: number[];
  writes: number;
}

/** Writes `rate` orders per second for `seconds`, polling both views; returns commit-to-visible latencies. */
async function measure(url: string, rate: number, seconds: number): Promise<Latencies> {
  const writers = await Promise.all(Array.from({ length: WRITER_CONNECTIONS }, () => connect(url)));
  const reader = await connect(url);
  const committed = new Map<number, number>();
  const seen = { fast: new Map<number, number>(), slow: new Map<number, number>() };
  let writing = true;
  const poller = (async () => {
    let newest = { fast: 0, slow: 0 };
    const pending = () => [...committed.keys()];
    let deadline = Infinity;
    while (writing || (pending().length > 0 && performance.now() < deadline)) {
      if (!writing && deadline === Infinity) deadline = performance.now() + LOST_AFTER_MS;
      const { rows } = await reader.query<{ fast: string | null; slow: string | null }>(
        `SELECT (SELECT newest FROM ${VIEWS.fast}) AS fast, (SELECT newest FROM ${VIEWS.slow}) AS slow`,
      );
      const now = performance.now();
      newest = { fast: Number(rows[0]?.fast ?? 0), slow: Number(rows[0]?.slow ?? 0) };
      for (const [id] of committed) {
        if (id <= newest.fast && !seen.fast.has(id)) seen.fast.set(id, now);
        if (id <= newest.slow && !seen.slow.has(id)) seen.slow.set(id, now);
      }
      for (const id of pending()) if (seen.fast.has(id) && seen.slow.has(id)) committed.delete(id);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();
  const latencies: Latencies = { fast: [], slow: [], writes: 0 };
  const commitTimes = new Map<number, number>();
  const perTick = (rate * TICK_MS) / 1000;
  let budget = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const tickStart = performance.now();
    budget += perTick;
    const due = Math.floor(budget);
    budget -= due;
    // each connection writes its share of the tick one statement after another
    await Promise.all(
      writers.map(async (w, i) => {
        for (let k = i; k < due; k += WRITER_CONNECTIONS) {
          const { rows } = await w.query<{ order_id: number }>(
            `INSERT INTO orders VALUES (nextval('order_ids'), 1 + (random() * 999)::int, current_date) RETURNING order_id`,
          );
          const id = rows[0]!.order_id;
          const t = performance.now();
          commitTimes.set(id, t);
          committed.set(id, t);
          latencies.writes += 1;
        }
      }),
    );
    const wait = TICK_MS - (performance.now() - tickStart);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  writing = false;
  await poller;
  // seen maps hold every id; committed was drained as ids became visible in both views
  for (const [id, t] of commitTimes) {
    latencies.fast.push((seen.fast.get(id) ?? Infinity) - t);
    latencies.slow.push((seen.slow.get(id) ?? Infinity) - t);
  }
  await Promise.all([...writers, reader].map((c) => c.end()));
  return latencies;
}

const ms = (x: number) => `${Math.round(x)}`;

async function main() {
  const url = await setup();
  const runs: { driver: Driver; rate: number; result: Latencies }[] = [];
  const refreshStats = new Map<string, number[]>();
  const plan: [rate: number, drivers: readonly Driver[]][] = [
    [200, ['daemon', 'daemon, no wait', 'poll 1 s']],
    [2000, ['daemon', 'poll 1 s']],
  ];
  for (const [rate, drivers] of plan) {
    for (const driver of drivers) {
      const { reports, stop } = await startDriver(driver, url);
      let result: Latencies;
      try {
        result = await measure(url, rate, SECONDS);
      } finally {
        await stop();
      }
      const key = (view: string) => `${debounceOf(driver)}:${view}`;
      for (const r of reports)
        if (r.outcome === 'refreshed' && r.refreshMs !== undefined)
          refreshStats.set(key(r.view), [...(refreshStats.get(key(r.view)) ?? []), r.refreshMs]);
      runs.push({ driver, rate, result });
      process.stderr.write(`freshness: ${driver} at ${rate}/s done\n`);
    }
  }
  // the poll driver reports no refreshes: its rows use the daemon's refresh times
  const refreshTimes = (view: string, debounce = DEFAULTS.maxStalenessMs) =>
    refreshStats.get(`${debounce}:public.${view}`) ?? [];
  const refreshP99 = (view: string, debounce?: number) => percentile(refreshTimes(view, debounce), 99);
  const refreshP50 = (view: string, debounce?: number) => percentile(refreshTimes(view, debounce), 50);
  const rows = runs.flatMap(({ driver, rate, result }) =>
    (['fast', 'slow'] as const).map((view) => {
      const l = result[view];
      const p99 = percentile(l, 99);
      const { maxStalenessMs: target, refreshBudget: budget } = timingOf(driver);
      const r99 = refreshP99(VIEWS[view], target);
      const goal = Math.max(target, r99 / budget + r99) + GOAL_MARGIN_MS;
      const floor = 2 * refreshP50(VIEWS[view], target);
      const verdict = driver === 'poll 1 s' ? '—' : p99 <= goal ? 'yes' : 'no';
      return (
        `| ${driver} | ${rate} | ${view} | ${result.writes} | ${ms(percentile(l, 50))} | ${ms(p99)} | ` +
        `${ms(l.reduce((m, x) => Math.max(m, x), 0))} | ${ms(goal)} | ${verdict} | ${ms(floor)} |`
      );
    }),
  );

  // coalescing: 10 000 writes in 10 s, daemon driving
  const { reports, stop } = await startDriver('daemon', url);
  let coalesce: Latencies;
  try {
    coalesce = await measure(url, COALESCE_WRITES / COALESCE_SECONDS, COALESCE_SECONDS);
  } finally {
    await stop();
  }
  const refreshed = (view: string) =>
    reports.filter((r) => r.view === `public.${view}` && r.outcome === 'refreshed');
  const coalesceRows = (['fast', 'slow'] as const).map((k) => {
    const view = VIEWS[k];
    const n = refreshed(view).length;
    const refreshMs = percentile(
      refreshed(view).map((r) => r.refreshMs ?? 0),
      50,
    );
    // under a stream the next start follows the last by max(0.85 x target - refresh, refresh / budget)
    const period = Math.max(
      0.85 * DEFAULTS.maxStalenessMs - refreshMs,
      refreshMs / DEFAULTS.refreshBudget,
      refreshMs,
    );
    const bound = Math.ceil((COALESCE_SECONDS * 1000) / period) + 1;
    const lost = coalesce[k].filter((x) => !Number.isFinite(x)).length;
    return `| ${k} | ${coalesce.writes} | ${n} | ${bound} | ${lost} |`;
  });
  const overheadOf = (rs: readonly RefreshReport[]) => {
    const done = rs.filter(
      (r) => r.outcome === 'refreshed' && r.refreshMs !== undefined && r.serverMs !== undefined,
    );
    return {
      n: done.length,
      total: done.map((r) => r.durationMs - r.refreshMs!),
      daemon: done.map((r) => r.durationMs - r.serverMs!),
      server: done.map((r) => r.serverMs! - r.refreshMs! - (r.waitMs ?? 0)),
      wait: done.map((r) => r.waitMs ?? 0),
    };
  };
  const overheadRow = (label: string, o: ReturnType<typeof overheadOf>) =>
    `| ${label} | ${o.n} | ${[o.total, o.daemon, o.server, o.wait]
      .map((xs) => `${percentile(xs, 50).toFixed(2)} / ${percentile(xs, 99).toFixed(2)}`)
      .join(' | ')} |`;
  const overhead = overheadOf(reports);

  const { reports: quietReports, stop: stopQuiet } = await startDriver('daemon', url);
  try {
    const writer = await connect(url);
    for (let i = 0; i < OVERHEAD_WRITES; i += 1) {
      await writer.query(`INSERT INTO orders VALUES (nextval('order_ids'), 1, current_date)`);
      await new Promise((r) => setTimeout(r, OVERHEAD_GAP_MS));
    }
    await writer.end();
  } finally {
    await stopQuiet();
  }
  const quietOverhead = overheadOf(quietReports.filter((r) => r.view === `public.${VIEWS.fast}`));

  const freshness = [
    '## Freshness',
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, by`,
    '`npm run bench:freshness` (bench/freshness.ts). Writers insert orders at a fixed rate for',
    `${SECONDS} s; two watched views show the newest order id: fast (REFRESH p99 ${ms(refreshP99(VIEWS.fast))} ms) and`,
    `slow (pg_sleep(0.5), REFRESH p99 ${ms(refreshP99(VIEWS.slow))} ms). Latency: commit to the first poll (every ${POLL_MS} ms)`,
    `that shows the write. Daemon: its defaults, staleness target ${DEFAULTS.maxStalenessMs} ms and refresh budget`,
    `${Math.round(DEFAULTS.refreshBudget * 100)}% per view. Goal: p99 <= max(target, refresh p99 / budget + refresh p99) +`,
    `${GOAL_MARGIN_MS} ms: the target where the budget allows it, else what the budget allows. Anchor:`,
    '`CALL mvrefresh.refresh_dirty()` every second (the pg_cron design).',
    '',
    '| driver | writes/s | view | writes | p50 ms | p99 ms | max ms | goal ms | p99 within goal | floor ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'Floor: 2 × refresh p50, what one refresh at a time allows (guarantee 2): a write that commits just after',
    'a refresh took its snapshot is visible when the next refresh ends. The no-wait row (target 1 ms, budget',
    '100%) runs there; the default rows trade freshness for the writers (the TPC-B section has the curve).',
  ].join('\n');
  const coalescing = [
    '## Coalescing',
    '',
    `${COALESCE_WRITES} writes in ${COALESCE_SECONDS} s with the daemon at its defaults; the bound is ceil(${COALESCE_SECONDS} s / period) + 1,`,
    "period = max(0.85 × target - refresh, refresh / budget) with the median refresh time (the scheduler's",
    'spacing under a stream); lost: writes never seen in the view.',
    '',
    '| view | writes | refreshes | bound | lost |',
    '| --- | --- | --- | --- | --- |',
    ...coalesceRows,
  ].join('\n');
  const perRefresh = [
    '## Per-refresh overhead',
    '',
    'Each refresh cycle is one round trip (`CALL mvrefresh.refresh_view(...)`, parse, bind and execute in one',
    'message batch on an idle pooled connection). Time per cycle beyond the REFRESH statement (the cycle as the daemon saw it minus the',
    'REFRESH), split into: daemon side (the cycle as the daemon saw it minus its time in the server: queue,',
    'pool, protocol, loopback), server bookkeeping (time in the server minus the REFRESH and the wait: three',
    'transactions, two asynchronous commits) and the wait for writers running at the clear. Median / p99, ms:',
    '',
    '| writes | refreshes | beyond REFRESH | daemon side | server bookkeeping | wait for writers |',
    '| --- | --- | --- | --- | --- | --- |',
    overheadRow(
      `none running (${OVERHEAD_WRITES} single writes, ${OVERHEAD_GAP_MS} ms apart; fast view)`,
      quietOverhead,
    ),
    overheadRow(`${COALESCE_WRITES / COALESCE_SECONDS}/s (the coalescing run)`, overhead),
    '',
  ].join('\n');
  // three sections of the results file, each in its place
  for (const text of [freshness, coalescing, perRefresh]) {
    console.log(`${text}\n`);
    await writeSection(text.slice(0, text.indexOf('\n')), text);
  }
  await dropDatabase(DB);
}

/**
 * The daemon behind PgBouncer in transaction mode, with and without a direct LISTEN URL, next to the daemon
 * without a pooler, at its defaults; the rows of one run go to their own section of the results file.
 */
async function poolerMain() {
  if (!pgbouncerBinary()) {
    process.stderr.write(
      'freshness --pooler skipped: no pgbouncer binary (Debian: apt-get install pgbouncer)\n',
    );
    return;
  }
  const url = await setup();
  const pooler = await startPgBouncer({ serverUrl: url, mode: 'transaction' });
  const plan: [rate: number, drivers: readonly Driver[]][] = [
    [200, ['daemon', 'daemon behind PgBouncer, LISTEN direct', 'daemon behind PgBouncer, no LISTEN URL']],
    [2000, ['daemon', 'daemon behind PgBouncer, LISTEN direct']],
  ];
  const rows: string[] = [];
  try {
    for (const [rate, drivers] of plan)
      for (const driver of drivers) {
        const { reports, stop } = await startDriver(driver, url, pooler);
        let result: Latencies;
        try {
          result = await measure(url, rate, SECONDS);
        } finally {
          await stop();
        }
        const failed = reports.filter((r) => r.outcome === 'failed' || r.outcome === 'error').length;
        const byCause = new Map<string, number>();
        for (const r of reports)
          if (r.outcome === 'refreshed') byCause.set(r.cause, (byCause.get(r.cause) ?? 0) + 1);
        const causes = [...byCause].map(([cause, n]) => `${cause} ${n}`).join(', ') || '—';
        for (const view of ['fast', 'slow'] as const) {
          const l = result[view];
          const lost = l.filter((x) => !Number.isFinite(x)).length;
          const seen = l.filter((x) => Number.isFinite(x));
          rows.push(
            `| ${driver} | ${rate} | ${view} | ${result.writes} | ${ms(percentile(seen, 50))} | ${ms(percentile(seen, 99))} | ` +
              `${ms(seen.reduce((m, x) => Math.max(m, x), 0))} | ${lost} | ${failed} | ${causes} |`,
          );
        }
        process.stderr.write(`freshness --pooler: ${driver} at ${rate}/s done\n`);
      }
  } finally {
    await pooler.stop();
  }
  const section = [
    '## Behind a connection pooler',
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, by`,
    '`npm run bench:pooler` (bench/freshness.ts --pooler): the runs of the Freshness section, with the daemon at its',
    `defaults (target ${DEFAULTS.maxStalenessMs} ms, budget ${Math.round(DEFAULTS.refreshBudget * 100)}%, sweep every ${DEFAULTS.sweepIntervalMs} ms) connected`,
    'directly, or through a private PgBouncer (Debian 12 package) in transaction mode with a direct',
    'MVREFRESH_LISTEN_URL, or through it without one (LISTEN through the pooler: no notification arrives,',
    'refreshes wait for the sweep). Writers and the reader connect directly in every row. Latency: commit to',
    `the first poll (every ${POLL_MS} ms) that shows the write; lost: never seen; refreshes by cause: of both views.`,
    '',
    '| daemon | writes/s | view | writes | p50 ms | p99 ms | max ms | lost | failed refreshes | refreshes by cause |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  console.log(section);
  await writeSection('## Behind a connection pooler', section);
  await dropDatabase(DB);
}

(process.argv.includes('--pooler') ? poolerMain() : main()).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

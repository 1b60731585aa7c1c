/**
 * Drift: time from a change of a watched view's sources (or a write that fired no trigger) to the view
 * equal to its query, with the DDL event triggers and without them (the daemon's periodic check every
 * BENCH_DRIFT_INTERVAL_MS, 10 000 by default), for the four cases of issue 14: a partition attached with
 * rows then written directly, a plain view redefined to read a second table then written, a write with
 * session_replication_role = replica, rows imported under DISABLE TRIGGER ALL. Then the cost of one
 * drift check with BENCH_DRIFT_VIEWS (1000) watched views over 100 tables through plain views.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_OUT (docs/benchmarks.md).
 */
import type pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { DaemonProcess } from './support/daemon.js';
import { median, numberEnv, writeSection } from './support/report.js';
import { connect, recreateDatabase, serverVersion } from './support/db.js';

const INTERVAL_MS = numberEnv('BENCH_DRIFT_INTERVAL_MS', 10_000);
const VIEWS = numberEnv('BENCH_DRIFT_VIEWS', 1000);
const DB = 'mvrefresh_bench_drift';
const POLL_MS = 20;
const CASE_TIMEOUT_MS = 120_000;
const QUERY = 'SELECT region, sum(amount) AS total, count(*) AS n FROM sales_v GROUP BY region';

async function matches(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM ((TABLE sales_by_region) EXCEPT ALL (${QUERY})) a)
          + (SELECT count(*) FROM ((${QUERY}) EXCEPT ALL (TABLE sales_by_region)) b) AS n`,
  );
  return rows[0]?.n === '0';
}

/** Runs change() on its own connection, then polls until the view equals its query: milliseconds. */
async function timeToFresh(c: pg.Client, url: string, change: string): Promise<number> {
  const w = await connect(url);
  await w.query(change);
  await w.end();
  const t0 = performance.now();
  while (!(await matches(c))) {
    if (performance.now() - t0 > CASE_TIMEOUT_MS) return Number.NaN;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return performance.now() - t0;
}

async function settle(c: pg.Client): Promise<void> {
  for (;;) {
    const { rows } = await c.query<{ dirty: boolean }>(
      'SELECT bool_or(dirty) AS dirty FROM mvrefresh.status',
    );
    if (!rows[0]?.dirty && (await matches(c))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function cases(eventTrigger: boolean): Promise<Record<string, number>> {
  const url = await recreateDatabase(DB);
  const c = await connect(url);
  await migrate(c);
  if (!eventTrigger)
    await c.query('ALTER EVENT TRIGGER mvrefresh_ddl DISABLE; ALTER EVENT TRIGGER mvrefresh_drop DISABLE');
  await c.query(`
    CREATE TABLE sales (region text NOT NULL, amount int NOT NULL) PARTITION BY LIST (region);
    CREATE TABLE sales_eu PARTITION OF sales FOR VALUES IN ('eu');
    CREATE TABLE refunds (region text NOT NULL, amount int NOT NULL);
    INSERT INTO sales SELECT 'eu', g FROM generate_series(1, 1000) g;
    CREATE VIEW sales_v AS SELECT region, amount FROM sales;
    CREATE MATERIALIZED VIEW sales_by_region AS ${QUERY};
    CREATE UNIQUE INDEX ON sales_by_region (region);
    SELECT mvrefresh.watch('sales_by_region');`);
  const daemon = new DaemonProcess(url, {
    settings: {
      MVREFRESH_LOG_LEVEL: 'warn',
      MVREFRESH_DRIFT_CHECK_INTERVAL_MS: String(eventTrigger ? 3_600_000 : INTERVAL_MS),
    },
  });
  try {
    await settle(c);
    const out: Record<string, number> = {};
    out['partition attached with rows'] = await timeToFresh(
      c,
      url,
      `CREATE TABLE sales_asia (region text NOT NULL, amount int NOT NULL);
       INSERT INTO sales_asia VALUES ('asia', 5);
       ALTER TABLE sales ATTACH PARTITION sales_asia FOR VALUES IN ('asia')`,
    );
    await settle(c);
    out['then a write into that partition'] = await timeToFresh(
      c,
      url,
      "INSERT INTO sales_asia VALUES ('asia', 7)",
    );
    // rows the redefined view starts to read: its result changes without a write to a watched table
    await c.query("INSERT INTO refunds VALUES ('eu', 2)");
    await settle(c);
    out['plain view redefined'] = await timeToFresh(
      c,
      url,
      `CREATE OR REPLACE VIEW sales_v AS
         SELECT region, amount FROM sales UNION ALL SELECT region, -amount FROM refunds`,
    );
    await settle(c);
    out['then a write to its new table'] = await timeToFresh(c, url, "INSERT INTO refunds VALUES ('eu', 3)");
    await settle(c);
    out['write with session_replication_role = replica'] = await timeToFresh(
      c,
      url,
      "SET session_replication_role = replica; INSERT INTO sales_eu VALUES ('eu', 11)",
    );
    await settle(c);
    out['import under DISABLE TRIGGER ALL'] = await timeToFresh(
      c,
      url,
      `ALTER TABLE sales_eu DISABLE TRIGGER ALL;
       INSERT INTO sales_eu SELECT 'eu', g FROM generate_series(1, 100) g;
       ALTER TABLE sales_eu ENABLE TRIGGER ALL`,
    );
    return out;
  } finally {
    await daemon.stop();
    await c.end();
  }
}

async function checkCost(): Promise<number[]> {
  const url = await recreateDatabase(DB);
  const c = await connect(url);
  await migrate(c);
  await c.query(`DO $$ BEGIN
    FOR i IN 1..100 LOOP EXECUTE format('CREATE TABLE t%s (k int PRIMARY KEY, v int)', i); END LOOP;
    FOR i IN 1..${VIEWS} LOOP
      EXECUTE format('CREATE VIEW pv%s AS SELECT k, v FROM t%s', i, 1 + i % 100);
      EXECUTE format('CREATE MATERIALIZED VIEW mv%s AS SELECT p.k, p.v, q.v AS w FROM pv%s p JOIN t%s q USING (k)',
                     i, i, 1 + (i * 7) % 100);
      EXECUTE format('CREATE UNIQUE INDEX ON mv%s (k)', i);
    END LOOP; END $$`);
  for (let i = 1; i <= VIEWS; i += 1) await c.query('SELECT mvrefresh.watch($1)', [`mv${i}`]);
  await c.query('SELECT count(*) FROM mvrefresh.check_drift(200)');
  const ms: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    const t0 = performance.now();
    await c.query('SELECT count(*) FROM mvrefresh.check_drift(200)');
    ms.push(performance.now() - t0);
  }
  await c.end();
  return ms;
}

async function main() {
  const withTrigger = await cases(true);
  const periodic = await cases(false);
  const cost = await checkCost();
  const version = await serverVersion();
  const fmt = (x: number | undefined) =>
    x === undefined || Number.isNaN(x) ? 'not fresh' : String(Math.round(x));
  const lines = [
    '## Drift: sources that change, writes that bypass the triggers',
    '',
    `${new Date().toISOString().slice(0, 10)}, PostgreSQL ${version}, \`npm run bench:drift\` (bench/drift.ts). Milliseconds from`,
    'the commit of the change (or of the bypassing write) to the view equal to its query, the daemon (built',
    `CLI) at its defaults otherwise; periodic check every ${INTERVAL_MS} ms in the second column.`,
    '',
    '| case | event triggers (ms) | periodic check only (ms) |',
    '| ---- | ------------------- | ------------------------ |',
    ...Object.keys(withTrigger).map((k) => `| ${k} | ${fmt(withTrigger[k])} | ${fmt(periodic[k])} |`),
    '',
    `One \`check_drift()\` with ${VIEWS} watched views over 100 tables through plain views: median ${Math.round(median(cost))} ms`,
    `(${cost.map((x) => Math.round(x)).join(', ')}).`,
  ];
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  await writeSection('## Drift:', text);
}

await main();

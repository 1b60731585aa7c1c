/**
 * Refresh time against the age of the connection (issue 18): `REFRESH ... CONCURRENTLY` creates, analyzes
 * and drops temporary tables, and a backend that repeats it keeps growing its catalog caches. One
 * long-lived connection runs BENCH_CYCLES (6000) forced refresh cycles (mvrefresh.refresh_view(), as the
 * daemon calls it) of a 7-row view; after every BENCH_BUCKET (500) of them, a brand-new connection runs
 * BENCH_FRESH (50) cycles of the same view, so that both are measured in the same database state, and the
 * catalogs and mvrefresh's tables are vacuumed (as autovacuum would: the shared server runs without it),
 * so that only the connection's age differs. Then the average cost of a cycle when the connection is
 * replaced every K uses (its cycles plus one connect), and a check through the daemon's own pool with
 * maxUses at its default.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_OUT (docs/benchmarks.md).
 */
import type pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { sql } from '../src/db/sql.js';
import { createPool } from '../src/db/connect.js';
import { schema } from '../src/config.js';
import { median, numberEnv, writeSection } from './support/report.js';
import { connect, recreateDatabase, dropDatabase, serverVersion } from './support/db.js';

const CYCLES = numberEnv('BENCH_CYCLES', 6000);
const BUCKET = numberEnv('BENCH_BUCKET', 500);
const FRESH = numberEnv('BENCH_FRESH', 50);
const DB = 'mvrefresh_bench_connection_age';
const TITLE = '## Refresh connections over their lifetime';
const RECYCLE_EVERY = [100, 250, 500, 1000, 2000, 4000];
/** The arguments of refresh_view() after the view id: forced, writer wait, lock timeout, backoff. */
const CYCLE_ARGS = [true, 2000, 10_000, 1000, 300_000];
const CATALOGS = ['pg_class', 'pg_attribute', 'pg_depend', 'pg_statistic', 'pg_type', 'pg_index'];
const MIB = 1024 * 1024;

async function setUp(): Promise<{ url: string; viewId: number }> {
  const url = await recreateDatabase(DB);
  const c = await connect(url);
  await migrate(c);
  await c.query(`
    CREATE TABLE sales (region text NOT NULL, amount int NOT NULL);
    INSERT INTO sales SELECT 'region ' || (g % 7), g FROM generate_series(1, 7000) g;
    CREATE MATERIALIZED VIEW sales_by_region AS
      SELECT region, sum(amount) AS total, count(*) AS n FROM sales GROUP BY region;
    CREATE UNIQUE INDEX ON sales_by_region (region)`);
  const { rows } = await c.query<{ id: number }>(
    "SELECT (mvrefresh.watch('sales_by_region')->>'id')::integer AS id",
  );
  await c.end();
  return { url, viewId: rows[0]!.id };
}

/** Milliseconds of one refresh cycle on this connection. */
async function cycle(c: pg.ClientBase, viewId: number): Promise<number> {
  const t0 = performance.now();
  await c.query({ name: 'cycle', text: sql.refreshView, values: [viewId, ...CYCLE_ARGS] });
  return performance.now() - t0;
}

/** The backend's own memory (pg_backend_memory_contexts, 14+): everything, and its catalog caches. */
async function memory(c: pg.ClientBase): Promise<{ total: number; cache: number }> {
  const { rows } = await c.query<{ total: string; cache: string }>(
    `SELECT sum(total_bytes) AS total,
            sum(total_bytes) FILTER (WHERE name = 'CacheMemoryContext' OR parent = 'CacheMemoryContext') AS cache
       FROM pg_backend_memory_contexts`,
  );
  return { total: Number(rows[0]?.total) / MIB, cache: Number(rows[0]?.cache) / MIB };
}

async function timedConnect(url: string): Promise<{ client: pg.Client; ms: number }> {
  const t0 = performance.now();
  const client = await connect(url);
  return { client, ms: performance.now() - t0 };
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

async function main(): Promise<void> {
  const { url, viewId } = await setUp();
  const vacuum = await connect(url);
  const old = await connect(url);
  const ages: number[] = [];
  const rows: string[] = [];
  const connects: number[] = [];
  const firsts: number[] = [];
  for (let done = 0; done < CYCLES; done += BUCKET) {
    const times: number[] = [];
    for (let i = 0; i < BUCKET; i += 1) times.push(await cycle(old, viewId));
    ages.push(...times);
    const oldMem = await memory(old);
    const fresh = await timedConnect(url);
    connects.push(fresh.ms);
    const freshTimes: number[] = [];
    for (let i = 0; i < FRESH; i += 1) freshTimes.push(await cycle(fresh.client, viewId));
    firsts.push(freshTimes[0]!);
    const freshMem = await memory(fresh.client);
    await fresh.client.end();
    await vacuum.query(`VACUUM ${[...CATALOGS, 'mvrefresh.view_state', 'mvrefresh.marks'].join(', ')}`);
    const row = `| ${done + BUCKET} | ${f1(median(times))} | ${f1(median(freshTimes.slice(1)))} | ${f1(oldMem.cache)} (${f1(oldMem.total)}) | ${f1(freshMem.cache)} (${f1(freshMem.total)}) |`;
    rows.push(row);
    console.log(row);
  }
  await old.end();

  // a connection replaced every K uses: its first K cycles plus one connect, per cycle
  const connectMs = median(connects);
  const byK = RECYCLE_EVERY.filter((k) => k <= ages.length).map((k) => {
    const per = (ages.slice(0, k).reduce((a, b) => a + b, 0) + connectMs) / k;
    return `| ${k} | ${f2(per)} |`;
  });
  const never = ages.reduce((a, b) => a + b, 0) / ages.length;

  // the daemon's pool at its defaults: the same cycles, the connection replaced by the pool
  const maxUses = schema.refreshConnectionMaxUses.default;
  const pool = createPool({
    connectionString: url,
    applicationName: 'mvrefresh:bench',
    max: 1,
    maxUses,
    maxLifetimeSeconds: Math.ceil(schema.refreshConnectionMaxAgeMs.default / 1000),
    onError: () => undefined,
  });
  const pooled: string[] = [];
  const poolPids = new Set<number>();
  for (let done = 0; done < CYCLES; done += BUCKET) {
    const times: number[] = [];
    for (let i = 0; i < BUCKET; i += 1) {
      const client = await pool.connect();
      poolPids.add((client as unknown as { processID: number }).processID);
      try {
        times.push(await cycle(client, viewId));
      } finally {
        client.release();
      }
    }
    await vacuum.query(`VACUUM ${[...CATALOGS, 'mvrefresh.view_state', 'mvrefresh.marks'].join(', ')}`);
    pooled.push(f1(median(times)));
  }
  await pool.end();
  await vacuum.end();
  const version = await serverVersion(url);

  const text = `${TITLE}

\`npm run bench:connection-age\` (${new Date().toISOString().slice(0, 10)}, PostgreSQL ${version}, 2 cores
shared with other work): forced refresh cycles (\`mvrefresh.refresh_view()\`, as the daemon calls it) of a
7-row view with a unique index, one after the other. After every ${BUCKET} cycles of the long-lived connection, a
new connection runs ${FRESH} cycles of the same view (its first one left out of its median), then the
catalogs and mvrefresh's tables are vacuumed, so that both connections see the same database and only their
age differs. Memory: the backend's \`CacheMemoryContext\` and its children (all contexts in brackets), MiB.

| cycles on the old connection | old: median ms | new connection: median ms | old: cache MiB (all) | new: cache MiB (all) |
| ---------------------------- | -------------- | ------------------------- | -------------------- | -------------------- |
${rows.join('\n')}

A new connection costs ${f1(connectMs)} ms to open (median of ${connects.length}) and its first cycle
${f1(median(firsts))} ms. Average cost of a cycle when the connection is replaced every K uses (the measured
cycles 1..K of the old connection plus one connect), against ${f2(never)} ms over all ${ages.length} cycles of
one connection:

| K (uses per connection) | ms per cycle |
| ----------------------- | ------------ |
${byK.join('\n')}

Through the daemon's refresh pool at its defaults (\`refreshConnectionMaxUses\` ${maxUses},
\`refreshConnectionMaxAgeMs\` ${schema.refreshConnectionMaxAgeMs.default / 60_000} min), the same ${CYCLES} cycles on
${poolPids.size} connections in turn, median ms per ${BUCKET}: ${pooled.join(', ')}.
`;
  console.log(text);
  await writeSection(TITLE, text);
  await dropDatabase(DB);
}

await main();

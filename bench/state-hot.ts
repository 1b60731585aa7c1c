/**
 * view_state's updates (issue 18): the share of HOT updates over BENCH_HOT_CYCLES (3000) refresh cycles
 * (a write to one of 5 watched tables, then the cycle of its view, as the daemon runs it), with the
 * partial index view_state_unfinished of versions 1-8 and without it (version 9), each in a new database;
 * view_state's size after the cycles (the shared server runs without autovacuum: only HOT pruning keeps it
 * small); and the cost of due_views() (the sweep) over 1 000 watched views with and without the index.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_OUT (docs/benchmarks.md).
 */
import { migrate } from '../src/db/migrate.js';
import { sql } from '../src/db/sql.js';
import { median, numberEnv, writeSection } from './support/report.js';
import { connect, withClient, recreateDatabase, dropDatabase, serverVersion } from './support/db.js';

const CYCLES = numberEnv('BENCH_HOT_CYCLES', 3000);
const SWEEP_CALLS = 300;
const SWEEP_VIEWS = 1000;
const VIEWS = 5;
const DB = 'mvrefresh_bench_state_hot';
const TITLE = '## view_state: HOT updates';
/** The index of versions 1-8, which version 9 drops. */
const OLD_INDEX =
  'CREATE INDEX view_state_unfinished ON mvrefresh.view_state (id) WHERE started_gen > done_gen';
/** refresh_view()'s arguments after the view id: not forced, writer wait, lock timeout, backoff. */
const CYCLE_ARGS = [false, 2000, 10_000, 1000, 300_000];

async function freshDatabase(): Promise<string> {
  const url = await recreateDatabase(DB);
  await withClient(url, (c) => migrate(c));
  return url;
}

interface Round {
  updates: number;
  hot: number;
  sizeKiB: number;
  indexKiB: number;
  cycleMs: number;
}

async function cycles(withIndex: boolean): Promise<Round> {
  const url = await freshDatabase();
  const ids: number[] = [];
  await withClient(url, async (c) => {
    if (withIndex) await c.query(OLD_INDEX);
    for (let i = 0; i < VIEWS; i += 1) {
      await c.query(`CREATE TABLE t${i} (k int NOT NULL, v int NOT NULL);
                     INSERT INTO t${i} SELECT g % 7, g FROM generate_series(1, 700) g;
                     CREATE MATERIALIZED VIEW m${i} AS SELECT k, sum(v) AS s FROM t${i} GROUP BY k;
                     CREATE UNIQUE INDEX ON m${i} (k)`);
      const { rows } = await c.query<{ id: number }>(
        `SELECT (mvrefresh.watch('m${i}')->>'id')::integer AS id`,
      );
      ids.push(rows[0]!.id);
    }
    await c.query('VACUUM mvrefresh.view_state');
    await c.query("SELECT pg_stat_reset_single_table_counters('mvrefresh.view_state'::regclass)");
  });
  const writer = await connect(url);
  const daemon = await connect(url);
  const times: number[] = [];
  for (let n = 0; n < CYCLES; n += 1) {
    const i = n % VIEWS;
    await writer.query(`INSERT INTO t${i} VALUES (${n % 7}, 1)`);
    const t0 = performance.now();
    await daemon.query({ name: 'cycle', text: sql.refreshView, values: [ids[i], ...CYCLE_ARGS] });
    times.push(performance.now() - t0);
  }
  // a session's statistics reach the shared counters at its end at the latest
  await writer.end();
  await daemon.end();
  return withClient(url, async (c) => {
    for (let tries = 0; tries < 50; tries += 1) {
      const { rows } = await c.query<{ upd: string; hot: string; size: string; idx: string }>(
        `SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot,
                pg_relation_size('mvrefresh.view_state') AS size,
                pg_indexes_size('mvrefresh.view_state') AS idx
           FROM pg_stat_user_tables WHERE relid = 'mvrefresh.view_state'::regclass`,
      );
      const r = rows[0]!;
      if (Number(r.upd) >= CYCLES * 2)
        return {
          updates: Number(r.upd),
          hot: Number(r.hot),
          sizeKiB: Number(r.size) / 1024,
          indexKiB: Number(r.idx) / 1024,
          cycleMs: median(times),
        };
      await new Promise((resolve) => setTimeout(resolve, 200));
      await c.query('SELECT pg_stat_clear_snapshot()');
    }
    throw new Error('the statistics of the cycles never arrived');
  });
}

/** Median ms of due_views() over 1 000 watched views (10 with an unfinished cycle, 10 marked). */
async function sweep(withIndex: boolean): Promise<number> {
  const url = await freshDatabase();
  return withClient(url, async (c) => {
    if (withIndex) await c.query(OLD_INDEX);
    await c.query(
      `INSERT INTO mvrefresh.view_state (view_schema, view_name, started_gen, source_relids)
       SELECT 'public', 'v' || g, CASE WHEN g % 100 = 0 THEN 1 ELSE 0 END, ARRAY[(100000 + g)::oid]
         FROM generate_series(1, ${SWEEP_VIEWS}) g;
       INSERT INTO mvrefresh.marks (view_id) SELECT id FROM mvrefresh.view_state WHERE id % 100 = 50;
       INSERT INTO mvrefresh.table_marks (relid) VALUES (100007), (100500)`,
    );
    await c.query('VACUUM ANALYZE mvrefresh.view_state, mvrefresh.marks, mvrefresh.table_marks');
    const times: number[] = [];
    for (let i = 0; i < SWEEP_CALLS; i += 1) {
      const t0 = performance.now();
      await c.query(sql.dueViews);
      times.push(performance.now() - t0);
    }
    return median(times.slice(10));
  });
}

const f1 = (n: number) => n.toFixed(1);

async function main(): Promise<void> {
  const before = await cycles(true);
  const after = await cycles(false);
  const sweepBefore = await sweep(true);
  const sweepAfter = await sweep(false);
  const version = await serverVersion();
  const row = (name: string, r: Round, sweepMs: number) =>
    `| ${name} | ${r.updates} | ${r.hot} | ${f1((100 * r.hot) / r.updates)}% | ${f1(r.sizeKiB)} | ${f1(r.indexKiB)} | ${f1(r.cycleMs)} | ${sweepMs.toFixed(2)} |`;
  const text = `${TITLE}

\`npm run bench:state-hot\` (${new Date().toISOString().slice(0, 10)}, PostgreSQL ${version}, autovacuum off, 2 cores
shared with other work): ${CYCLES} refresh cycles of ${VIEWS} watched views in turn, each after a write to its
table, as the daemon runs them (\`refresh_view()\`, not forced), in a new database per row; view_state's
counters (\`pg_stat_user_tables\`) and sizes after them. The sweep: \`due_views()\` over ${SWEEP_VIEWS} watched views
(10 with an unfinished cycle, 10 marked, 2 table marks), median of ${SWEEP_CALLS} calls.

| view_state                                | updates | HOT | HOT ratio | table KiB | indexes KiB | cycle ms (median) | due_views() ms |
| ----------------------------------------- | ------- | --- | --------- | --------- | ----------- | ----------------- | -------------- |
${row('with view_state_unfinished (versions 1-8)', before, sweepBefore)}
${row('without it (version 9)', after, sweepAfter)}
`;
  console.log(text);
  await writeSection(TITLE, text);
  await dropDatabase(DB);
}

await main();

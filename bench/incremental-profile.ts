/**
 * Where the applies of incremental views spend their time (`npm run bench:incremental-profile`): the data and
 * the four views of bench:incremental (incremental/workload.ts) on a private cluster with its settings and
 * pg_stat_statements (track = all: the statements inside apply_view() and refresh_view() too), the views
 * watched with --incremental, the built daemon, and the same writers at BENCH_PACED_RATE (1 000) writes/s for
 * BENCH_PACED_SECONDS (60) after BENCH_PACED_WARMUP_SECONDS (60). The statistics are reset when the measured
 * seconds start. Prints the daemon's CPU (process and backends, as bench:incremental measures it), each view's
 * applies and p99 staleness, the nested statements by total time (BENCH_PROFILE_TOP, 30), grouped by their
 * first 120 characters (a statement on a temporary table gets a new query id in each apply), and the
 * size of each source's log, sampled. Markdown on stdout only.
 */
import type pg from 'pg';
import { PRODUCTION_SETTINGS, withCluster } from './support/cluster.js';
import { DaemonProcess } from './support/daemon.js';
import { connect, serverVersion } from './support/db.js';
import { numberEnv, percentile } from './support/report.js';
import { startSampler } from './incremental/sampler.js';
import { PACED_RATE, SAMPLE_MS, WRITERS } from './incremental/settings.js';
import { waitClean, watchAll } from './incremental/views.js';
import { COMMENTS, POSTS, VIEWS, WriterLoad } from './incremental/workload.js';
import { createBenchDatabase, maxCommentId } from './incremental/database.js';

const DB = 'incremental_profile';
const SECONDS = numberEnv('BENCH_PACED_SECONDS', 60);
const WARMUP_S = numberEnv('BENCH_PACED_WARMUP_SECONDS', 60);
const TOP = numberEnv('BENCH_PROFILE_TOP', 30);
const CATCH_UP_MS = 300_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Statement {
  ms: number;
  planMs: number;
  plans: number;
  calls: number;
  rows: number;
  query: string;
}

async function statements(db: pg.ClientBase): Promise<Statement[]> {
  const { rows } = await db.query<Statement>(
    `SELECT sum(s.total_exec_time)::float8 AS ms, sum(s.total_plan_time)::float8 AS "planMs", sum(s.plans)::float8 AS plans, sum(s.calls)::float8 AS calls, sum(s.rows)::float8 AS rows,
            left(regexp_replace(s.query, '\\s+', ' ', 'g'), 120) AS query
       FROM pg_stat_statements s
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT s.toplevel
      GROUP BY 6 ORDER BY 1 DESC LIMIT $1`,
    [TOP],
  );
  return rows;
}

/** Each view's table: rows updated, of them HOT, and its size (pg_stat_user_tables: the backends' reports, at most a second old). */
async function viewUpdates(
  db: pg.ClientBase,
): Promise<Map<string, { upd: number; hot: number; bytes: number }>> {
  const { rows } = await db.query<{ name: string; upd: number; hot: number; bytes: number }>(
    `SELECT s.relname AS name, s.n_tup_upd::float8 AS upd, s.n_tup_hot_upd::float8 AS hot,
            pg_relation_size(s.relid)::float8 AS bytes
       FROM pg_stat_user_tables s WHERE s.schemaname = 'public' AND s.relname = ANY ($1)`,
    [VIEWS.map((v) => v.name)],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/** The pages and dead rows of each source's log, every SAMPLE_MS until stopped. */
function sampleLogs(db: pg.ClientBase): { stop: () => Promise<{ pages: number[]; dead: number[] }> } {
  const pages: number[] = [];
  const dead: number[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await db.query<{ pages: number; dead: number }>(
        `SELECT (pg_relation_size(s.relid) / current_setting('block_size')::int)::float8 AS pages,
                s.n_dead_tup::float8 AS dead
           FROM pg_stat_all_tables s WHERE s.schemaname = 'mvrefresh' AND s.relname ~ '^log_[0-9]+$'`,
      );
      pages.push(rows.reduce((a, r) => a + r.pages, 0));
      dead.push(rows.reduce((a, r) => a + r.dead, 0));
      await sleep(SAMPLE_MS * 5);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { pages, dead };
    },
  };
}

const cell = (s: string) => s.replace(/\|/g, '\\|');
/** pg_stat_statements counting the statements inside routines too. */
const PROFILE_SETTINGS = {
  ...PRODUCTION_SETTINGS,
  shared_preload_libraries: "'pg_stat_statements'",
  'pg_stat_statements.track': 'all',
  'pg_stat_statements.max': '10000',
  'pg_stat_statements.track_planning': 'on',
};

async function main(): Promise<void> {
  await withCluster(PROFILE_SETTINGS, async (cluster) => {
    const url = await createBenchDatabase(cluster, DB, ['CREATE EXTENSION pg_stat_statements']);
    const watched = await watchAll(url, VIEWS, true);
    if (!watched) throw new Error('watch --incremental is not available');
    const db = await connect(url);
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    const daemon = new DaemonProcess(url, { inheritEnv: true, settings: { MVREFRESH_LOG_LEVEL: 'info' } });
    try {
      await daemon.started();
      await waitClean(
        db,
        VIEWS.map((v) => v.name),
        CATCH_UP_MS,
      );
      const load = new WriterLoad(url, WRITERS, 'mixed', {
        firstMaxId: await maxCommentId(db),
        rate: PACED_RATE,
      });
      await load.start();
      await sleep(WARMUP_S * 1000);
      await db.query('SELECT pg_stat_statements_reset()');
      const updatesBefore = await viewUpdates(db);
      const from = Date.now();
      const logsDb = await connect(url);
      const logs = sampleLogs(logsDb);
      const sampler = startSampler(db, daemon.pid, SAMPLE_MS);
      load.count();
      await sleep(SECONDS * 1000);
      load.endCount();
      const samples = await sampler.stop();
      const sizes = await logs.stop();
      await logsDb.end();
      await load.stop();
      const to = Date.now();
      const top = await statements(db);
      const updatesAfter = await viewUpdates(db);
      const out = [
        `PostgreSQL ${await serverVersion(url)}, ${POSTS} posts, ${COMMENTS} comments, ${WRITERS} writers at ${PACED_RATE} writes/s ` +
          `(achieved ${load.tps.toFixed(0)}), ${SECONDS} s measured after ${WARMUP_S} s.`,
        '',
        `Daemon CPU: ${((100 * (samples.daemonCpu + samples.backendCpu)) / samples.seconds).toFixed(1)}% of one core ` +
          `(process ${((100 * samples.daemonCpu) / samples.seconds).toFixed(1)}%, backends ${((100 * samples.backendCpu) / samples.seconds).toFixed(1)}%).`,
        `Logs: ${percentile(sizes.pages, 50).toFixed(0)} pages at p50, ${Math.max(...sizes.pages).toFixed(0)} at most; ` +
          `dead rows ${percentile(sizes.dead, 50).toFixed(0)} at p50, ${Math.max(...sizes.dead).toFixed(0)} at most.`,
        '',
        '| view | applies | p50 ms | staleness p99 s | rows updated | of them HOT | table MB |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ...VIEWS.map((v) => {
          const mine = daemon.refreshes.filter(
            (r) => r.view === `public.${v.name}` && r.at >= from && r.at <= to,
          );
          const ms = mine.map((r) => r.refreshMs ?? r.durationMs ?? Number.NaN);
          const a = updatesAfter.get(v.name);
          const b = updatesBefore.get(v.name);
          const upd = a && b ? a.upd - b.upd : Number.NaN;
          const hot = a && b ? a.hot - b.hot : Number.NaN;
          return (
            `| ${v.name} | ${mine.length} | ${ms.length ? percentile(ms, 50).toFixed(1) : '-'} | ${percentile(samples.staleness.get(v.name) ?? [], 99).toFixed(2)} ` +
            `| ${upd} | ${upd > 0 ? `${((100 * hot) / upd).toFixed(0)}%` : '-'} | ${a ? (a.bytes / 2 ** 20).toFixed(0) : '-'} |`
          );
        }),
        '',
        `Planning of the ${top.length} nested statements below: ${top.reduce((a, s) => a + s.planMs, 0).toFixed(0)} ms.`,
        '',
        '| total ms | planning ms | plans | calls | ms per call | rows | statement (nested) |',
        '| ---: | ---: | ---: | ---: | ---: | ---: | --- |',
        ...top.map(
          (s) =>
            `| ${s.ms.toFixed(0)} | ${s.planMs.toFixed(0)} | ${s.plans} | ${s.calls} | ${(s.ms / s.calls).toFixed(2)} | ${s.rows} | \`${cell(s.query)}\` |`,
        ),
      ];
      console.log(out.join('\n'));
    } finally {
      const code = await daemon.stop();
      if (code !== 0) process.stderr.write(`incremental-profile: the daemon exited with ${code}\n`);
      await db.end();
    }
  });
}

await main();

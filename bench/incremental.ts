/**
 * Incremental views against full refresh and against no views (issue 27's Goals), side by side in one run
 * on a private PostgreSQL cluster with production settings (autovacuum on, fsync on; dev/cluster.ts).
 *
 * Data: BENCH_POSTS posts (500 000) of 200 communities and BENCH_COMMENTS comments (5 000 000), an index
 * on comments(post_id, author_id) (BENCH_COMMENTS_INDEX: its columns, workload.ts); four materialized views over comments with a unique index each (workload.ts).
 * BENCH_WRITERS (8) writers: 80% insert a comment, 15% update a score, 5% delete a comment, each statement
 * its own transaction. Rounds of three modes, alternating on the same data (BENCH_MODES, settings.ts), each
 * under the same load for BENCH_SECONDS (60) after BENCH_WARMUP_SECONDS (10):
 *   none         no view watched, no daemon (the writers' baseline, between the watched rounds);
 *   full         the four views watched (`mvrefresh watch`, the built CLI), the daemon (`mvrefresh run`);
 *   incremental  the same with `mvrefresh watch --incremental` ("not available" when the CLI refuses the
 *                flag; a view it refuses is watched in full, with the reason).
 * Per mode: writer TPS and its ratio to none; per view staleness p50/p99 (mvrefresh.status, sampled every
 * 200 ms, as bench/tpcb.ts), refreshes or applies; the daemon's CPU (process and backends); before that,
 * in the first round of each watched mode, BENCH_PACED_SECONDS (30) at BENCH_PACED_RATE (1 000) writes/s
 * (after BENCH_PACED_WARMUP_SECONDS, BENCH_WARMUP_SECONDS by default)
 * for the CPU goal; in the later rounds of the mode, the same writers at that rate for as long, unmeasured,
 * so that every round's no-pause phase starts as long after the views were watched. After the
 * writers stop and the daemon catches up: each view against its query, EXCEPT ALL both ways.
 * Then the write path (incremental/writes.ts): INSERT TPS with 1 and 20 views' triggers and COPY times,
 * each paired with the same on a trigger-free twin of comments.
 * Output: markdown on stdout and the section TITLE of docs/benchmarks.md (BENCH_OUT; `-`: stdout only).
 * Settings in incremental/settings.ts and writes.ts; the daemon's MVREFRESH_* from the environment apply.
 */
import { join } from 'node:path';
import type pg from 'pg';
import { SUCCESS_OUTCOMES } from '../src/db/protocol.js';
import type { PgCluster } from '../dev/cluster.js';
import { PRODUCTION_SETTINGS, withCluster } from './support/cluster.js';
import { DaemonProcess } from './support/daemon.js';
import { connect, serverVersion } from './support/db.js';
import { percentile, writeSection } from './support/report.js';
import { OtherWork } from './incremental/others.js';
import { report, type Mode, type ModeResult, type Paced } from './incremental/report.js';
import { startSampler, type Samples } from './incremental/sampler.js';
import {
  CATCH_UP_LIMIT_MS,
  MODES,
  PACED_RATE,
  PACED_SECONDS,
  PACED_WARMUP_S,
  SAMPLE_MS,
  SECONDS,
  TITLE,
  WARMUP_S,
  WRITERS,
} from './incremental/settings.js';
import {
  cliOk,
  difference,
  dropView,
  statusModes,
  waitClean,
  watchAll,
  type Watched,
} from './incremental/views.js';
import { COMMENTS, POSTS, VIEWS, WriterLoad, type LoadCounts } from './incremental/workload.js';
import { createBenchDatabase, maxCommentId } from './incremental/database.js';
import { measureWritePath } from './incremental/writes.js';

const DB = 'incremental_bench';
/** Outcomes of a cycle that changed a view's contents: a REFRESH, or (logged by the incremental engine) an apply. */
const CHANGED_OUTCOMES: readonly string[] = [...SUCCESS_OUTCOMES, 'applied', 'applied_full'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NO_COUNTS: LoadCounts = { insert: 0, update: 0, delete: 0, errors: 0 };

function notAvailable(mode: Mode): ModeResult {
  return { mode, available: false, tps: Number.NaN, counts: NO_COUNTS, seconds: 0, errors: [], views: [] };
}

/** The load alone, no daemon. */
async function runNone(url: string, db: pg.ClientBase, others: OtherWork): Promise<ModeResult> {
  await others.waitQuiet();
  const load = new WriterLoad(url, WRITERS, 'mixed', { firstMaxId: await maxCommentId(db) });
  await load.start();
  await sleep(WARMUP_S * 1000);
  const watch = others.watch();
  load.count();
  await sleep(SECONDS * 1000);
  await load.stop();
  return {
    mode: 'none',
    available: true,
    othersCpu: await watch.stop(),
    tps: load.tps,
    counts: load.counts,
    seconds: load.seconds,
    errors: load.errors,
    views: [],
  };
}

function howWatched(w: Watched, modes: Map<string, string>): string {
  if (w.refused !== undefined) return `full (refused: ${w.refused})`;
  return modes.get(w.view) ?? (w.incremental ? 'incremental' : 'full');
}

interface Phase {
  load: WriterLoad;
  samples: Samples;
  /** The measured seconds, as Date.now() (the daemon's refreshes are stamped so). */
  from: number;
  to: number;
  othersCpu: number;
}

/** Writers at `rate` statements/s (0: no pause): warm-up, then `seconds` measured and sampled; writers stopped. */
async function measuredPhase(
  url: string,
  db: pg.ClientBase,
  daemon: DaemonProcess,
  others: OtherWork,
  rate: number,
  seconds: number,
  warmupS: number,
): Promise<Phase> {
  await others.waitQuiet();
  const load = new WriterLoad(url, WRITERS, 'mixed', { firstMaxId: await maxCommentId(db), rate });
  await load.start();
  try {
    await sleep(warmupS * 1000);
    const from = Date.now();
    const watch = others.watch();
    const sampler = startSampler(db, daemon.pid, SAMPLE_MS);
    load.count();
    await sleep(seconds * 1000);
    load.endCount();
    const samples = await sampler.stop();
    return { load, samples, from, to: Date.now(), othersCpu: await watch.stop() };
  } finally {
    await load.stop();
  }
}

/** The writers at BENCH_PACED_RATE for `seconds`, not measured. */
async function settle(url: string, db: pg.ClientBase, seconds: number): Promise<void> {
  const load = new WriterLoad(url, WRITERS, 'mixed', {
    firstMaxId: await maxCommentId(db),
    rate: PACED_RATE,
  });
  await load.start();
  try {
    await sleep(seconds * 1000);
  } finally {
    await load.stop();
  }
}

const pacedOf = (p: Phase): Paced => ({
  tps: p.load.tps,
  cpu: (p.samples.daemonCpu + p.samples.backendCpu) / p.samples.seconds,
  worstP99: Math.max(...[...p.samples.staleness.values()].map((xs) => percentile(xs, 99))),
});

/**
 * The four views watched (in full, or incremental), the daemon running: the load with no pause, then (with
 * BENCH_PACED_RATE) at a fixed rate; then the catch-up and the checks.
 */
async function runWatched(
  url: string,
  db: pg.ClientBase,
  mode: 'full' | 'incremental',
  others: OtherWork,
  withPaced: boolean,
): Promise<ModeResult> {
  const watched = await watchAll(url, VIEWS, mode === 'incremental');
  if (!watched) return notAvailable(mode);
  const names = VIEWS.map((v) => v.name);
  const daemon = new DaemonProcess(url, { inheritEnv: true, settings: { MVREFRESH_LOG_LEVEL: 'info' } });
  let result: ModeResult;
  try {
    await daemon.started();
    // every mode starts from views that show every write
    await waitClean(db, names, CATCH_UP_LIMIT_MS);
    const modes = await statusModes(db);
    // the fixed rate first: its steady state, not the recovery from the no-pause load (a catch-up's large
    // applies space the next ones by the budget for a while)
    let paced: Paced | undefined;
    if (PACED_RATE > 0 && withPaced) {
      paced = pacedOf(
        await measuredPhase(url, db, daemon, others, PACED_RATE, PACED_SECONDS, PACED_WARMUP_S),
      );
      await waitClean(db, names, CATCH_UP_LIMIT_MS);
    } else if (PACED_RATE > 0) {
      // as long under the same load as the first round of the mode: tables just made incremental apply
      // slower for minutes (full pages, so no HOT updates; their first autovacuum), and a round that
      // measured that would compare a conversion's aftermath with a steady state
      await settle(url, db, PACED_WARMUP_S + PACED_SECONDS);
      await waitClean(db, names, CATCH_UP_LIMIT_MS);
    }
    const full = await measuredPhase(url, db, daemon, others, 0, SECONDS, WARMUP_S);
    const stopped = performance.now();
    const clean = await waitClean(db, names, CATCH_UP_LIMIT_MS);
    const catchUpS = clean.size === names.length ? (performance.now() - stopped) / 1000 : undefined;
    const inWindow = daemon.refreshes.filter(
      (r) => r.at >= full.from && r.at <= full.to && CHANGED_OUTCOMES.includes(r.outcome),
    );
    const { load, samples } = full;
    result = {
      mode,
      available: true,
      othersCpu: full.othersCpu,
      tps: load.tps,
      counts: load.counts,
      seconds: load.seconds,
      errors: load.errors,
      daemonCpu: samples.daemonCpu,
      backendCpu: samples.backendCpu,
      ...(paced ? { paced } : {}),
      ...(catchUpS === undefined ? {} : { catchUpS }),
      views: watched.map((w) => {
        const mine = inWindow.filter((r) => r.view === `public.${w.view}`);
        return {
          name: w.view,
          how: howWatched(w, modes),
          staleness: samples.staleness.get(w.view) ?? [],
          refreshes: mine.length,
          refreshMs: mine.map((r) => r.refreshMs ?? r.durationMs ?? Number.NaN),
        };
      }),
    };
  } finally {
    const code = await daemon.stop();
    if (code !== 0) process.stderr.write(`incremental: the daemon exited with ${code}\n`);
  }
  for (const v of result.views) {
    const spec = VIEWS.find((s) => s.name === v.name);
    if (spec) v.diff = await difference(db, spec);
  }
  await cliOk(url, 'unwatch', '--all');
  return result;
}

async function runMode(
  url: string,
  db: pg.ClientBase,
  mode: Mode,
  others: OtherWork,
  first: boolean,
): Promise<ModeResult> {
  await db.query('VACUUM ANALYZE public.comments, public.posts');
  await db.query('CHECKPOINT');
  const r = mode === 'none' ? await runNone(url, db, others) : await runWatched(url, db, mode, others, first);
  process.stderr.write(
    `incremental: mode ${mode}: ${r.available ? `${r.tps.toFixed(0)} TPS` : 'not available'}\n`,
  );
  return r;
}

async function setUp(cluster: PgCluster): Promise<string> {
  const t0 = performance.now();
  const url = await createBenchDatabase(cluster, DB);
  process.stderr.write(
    `incremental: loaded ${POSTS} posts, ${COMMENTS} comments and the views in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`,
  );
  return url;
}

async function main(): Promise<void> {
  const started = new Date();
  await withCluster(PRODUCTION_SETTINGS, async (cluster) => {
    const url = await setUp(cluster);
    const db = await connect(url);
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    const version = await serverVersion(url);
    const admin = await connect(cluster.url());
    admin.on('error', (err) => process.stderr.write(`bench admin connection: ${err.message}\n`));
    const others = await OtherWork.start(admin, [DB]);
    const modes: ModeResult[] = [];
    for (const mode of MODES)
      modes.push(await runMode(url, db, mode, others, !modes.some((m) => m.mode === mode)));
    for (const v of VIEWS) await dropView(db, v);
    const writePath = await measureWritePath({
      url,
      db,
      copyFile: join(cluster.dir, 'copy.csv'),
      writers: WRITERS,
      catchUpLimitMs: CATCH_UP_LIMIT_MS,
      others,
    });
    await db.end();
    await admin.end();
    const text = report({ modes, writePath, version, started, url });
    console.log(text);
    await writeSection(TITLE, text);
  });
}

await main();

/**
 * Incremental views against full refresh and against no views (issue 27's Goals), side by side in one run
 * on a private PostgreSQL cluster with production settings (autovacuum on, fsync on; dev/cluster.ts).
 *
 * Data: BENCH_POSTS posts (500 000) of 200 communities and BENCH_COMMENTS comments (5 000 000), an index
 * on comments(post_id); four materialized views over comments with a unique index each (workload.ts).
 * BENCH_WRITERS (8) writers: 80% insert a comment, 15% update a score, 5% delete a comment, each statement
 * its own transaction. Modes, in this order on the same data, each under the same load for BENCH_SECONDS
 * (60) after BENCH_WARMUP_SECONDS (10):
 *   none         no view watched, no daemon (the writers' baseline; run first and again last);
 *   full         the four views watched (`mvrefresh watch`, the built CLI), the daemon (`mvrefresh run`);
 *   incremental  the same with `mvrefresh watch --incremental` ("not available" when the CLI refuses the
 *                flag; a view it refuses is watched in full, with the reason).
 * Per mode: writer TPS and its ratio to none; per view staleness p50/p99 (mvrefresh.status, sampled every
 * 200 ms, as bench/tpcb.ts), refreshes or applies; the daemon's CPU (process and backends). After the
 * writers stop and the daemon catches up: each view against its query, EXCEPT ALL both ways.
 * Then the write path (incremental/writes.ts): INSERT TPS with 0, 1 and 20 views' triggers, COPY times.
 * Output: markdown on stdout and the section TITLE of docs/benchmarks.md (BENCH_OUT).
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { loadConfig } from '../src/config.js';
import { SUCCESS_OUTCOMES } from '../src/db/protocol.js';
import { PgCluster } from '../dev/cluster.js';
import { DaemonProcess } from './support/daemon.js';
import { connect, serverVersion, withClient } from './support/db.js';
import { numberEnv, percentile, writeSection } from './support/report.js';
import { OtherWork } from './incremental/others.js';
import { startSampler, type Samples } from './incremental/sampler.js';
import {
  cliOk,
  difference,
  dropView,
  statusModes,
  waitClean,
  watchAll,
  type Difference,
  type Watched,
} from './incremental/views.js';
import {
  COMMENTS,
  POSTS,
  VIEWS,
  WriterLoad,
  createViewSql,
  schemaSql,
  type LoadCounts,
} from './incremental/workload.js';
import {
  COPY_ROWS,
  INSERT_ROUNDS,
  INSERT_SECONDS,
  INSERT_WARMUP_S,
  insertRatio,
  measureWritePath,
  type Config,
  type WritePathResult,
} from './incremental/writes.js';

const SECONDS = numberEnv('BENCH_SECONDS', 60);
const WARMUP_S = numberEnv('BENCH_WARMUP_SECONDS', 10);
const WRITERS = numberEnv('BENCH_WRITERS', 8);
/** How long the daemon may take to make every view clean (before a mode, and after its writers stop). */
const CATCH_UP_LIMIT_MS = numberEnv('BENCH_CATCH_UP_SECONDS', 300) * 1000;
const SAMPLE_MS = 200;
/**
 * After the measured seconds with no pause, each watched mode runs BENCH_PACED_SECONDS at this total write
 * rate (the issue's CPU goal is stated at 1 000 writes/s); 0: no such phase.
 */
const PACED_RATE = numberEnv('BENCH_PACED_RATE', 1000);
const PACED_SECONDS = numberEnv('BENCH_PACED_SECONDS', 30);
const DB = 'incremental_bench';
const TITLE = '## Incremental views: `npm run bench:incremental`';
const CLUSTER_SETTINGS = {
  autovacuum: 'on',
  fsync: 'on',
  shared_buffers: "'2GB'",
  work_mem: "'16MB'",
  maintenance_work_mem: "'256MB'",
  max_wal_size: "'4GB'",
};
/** Outcomes of a cycle that changed a view's contents: a REFRESH, or (logged by the incremental engine) an apply. */
const CHANGED_OUTCOMES: readonly string[] = [...SUCCESS_OUTCOMES, 'applied', 'applied_full'];
/** The issue's goals, and the floors it must not go below. */
const GOAL = {
  stalenessP99S: 1,
  stalenessP99MustS: 2,
  tpsRatio: 0.85,
  tpsRatioMust: 0.75,
  cpuShareAt1000: 0.1,
  insertRatio: 0.85,
  copyRatio: 1.3,
} as const;

type Mode = 'none' | 'full' | 'incremental';

interface ViewResult {
  name: string;
  /** How it was watched: `full`, `incremental`, the status' mode, or `full (refused: ...)`. */
  how: string;
  staleness: number[];
  refreshes: number;
  refreshMs: number[];
  diff?: Difference;
}

/** The daemon's cost and the views' staleness at a fixed write rate. */
interface Paced {
  /** Statements per second the writers achieved. */
  tps: number;
  /** CPU of the daemon's process and backends, share of one core. */
  cpu: number;
  /** The worst view's p99 staleness, seconds. */
  worstP99: number;
}

interface ModeResult {
  mode: Mode;
  available: boolean;
  tps: number;
  counts: LoadCounts;
  seconds: number;
  errors: string[];
  /** Share of the machine's CPU other processes used during the measured seconds. */
  othersCpu?: number;
  /** CPU seconds of the daemon's process and of its backends during the measured seconds. */
  daemonCpu?: number;
  backendCpu?: number;
  /** Seconds after the writers stopped until every view was clean; undefined when some never were. */
  catchUpS?: number;
  /** The phase at BENCH_PACED_RATE, when there is one. */
  paced?: Paced;
  views: ViewResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NO_COUNTS: LoadCounts = { insert: 0, update: 0, delete: 0, errors: 0 };

function notAvailable(mode: Mode): ModeResult {
  return { mode, available: false, tps: Number.NaN, counts: NO_COUNTS, seconds: 0, errors: [], views: [] };
}

async function maxCommentId(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>('SELECT max(id) AS id FROM public.comments');
  return Number(rows[0]?.id ?? COMMENTS);
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
): Promise<Phase> {
  await others.waitQuiet();
  const load = new WriterLoad(url, WRITERS, 'mixed', { firstMaxId: await maxCommentId(db), rate });
  await load.start();
  try {
    await sleep(WARMUP_S * 1000);
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
    const full = await measuredPhase(url, db, daemon, others, 0, SECONDS);
    let paced: Paced | undefined;
    if (PACED_RATE > 0) {
      await waitClean(db, names, CATCH_UP_LIMIT_MS);
      paced = pacedOf(await measuredPhase(url, db, daemon, others, PACED_RATE, PACED_SECONDS));
    }
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

async function runMode(url: string, db: pg.ClientBase, mode: Mode, others: OtherWork): Promise<ModeResult> {
  await db.query('VACUUM ANALYZE public.comments, public.posts');
  await db.query('CHECKPOINT');
  const r = mode === 'none' ? await runNone(url, db, others) : await runWatched(url, db, mode, others);
  process.stderr.write(
    `incremental: mode ${mode}: ${r.available ? `${r.tps.toFixed(0)} TPS` : 'not available'}\n`,
  );
  return r;
}

async function setUp(cluster: PgCluster): Promise<string> {
  await withClient(cluster.url(), (c) => c.query(`CREATE DATABASE ${DB}`));
  const url = cluster.url(DB);
  const t0 = performance.now();
  await withClient(url, async (c) => {
    await c.query(schemaSql());
    for (const v of VIEWS) await c.query(createViewSql(v));
    await c.query('VACUUM ANALYZE');
  });
  await cliOk(url, 'migrate');
  process.stderr.write(
    `incremental: loaded ${POSTS} posts, ${COMMENTS} comments and the views in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`,
  );
  return url;
}

async function main(): Promise<void> {
  const started = new Date();
  const cluster = await PgCluster.create(CLUSTER_SETTINGS);
  try {
    await cluster.start();
    const url = await setUp(cluster);
    const db = await connect(url);
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    const version = await serverVersion(url);
    const admin = await connect(cluster.url());
    admin.on('error', (err) => process.stderr.write(`bench admin connection: ${err.message}\n`));
    const others = await OtherWork.start(admin, [DB]);
    const modes: ModeResult[] = [];
    for (const mode of ['none', 'full', 'incremental', 'none'] as const)
      modes.push(await runMode(url, db, mode, others));
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
  } catch (err) {
    process.stderr.write(`--- server log ---\n${await cluster.logTail()}\n`);
    throw err;
  } finally {
    await cluster.cleanup();
  }
}

const fmt = (n: number | undefined, digits = 2) =>
  n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits);
const pct = (share: number | undefined) => fmt(share === undefined ? undefined : share * 100, 0);
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The daemon's CPU (process and backends) as a share of one core over the measured seconds. */
const cpuShare = (m: ModeResult) =>
  m.daemonCpu === undefined || m.backendCpu === undefined
    ? Number.NaN
    : (m.daemonCpu + m.backendCpu) / m.seconds;
const allEqual = (m: ModeResult) =>
  m.views.length > 0 && m.views.every((v) => v.diff !== undefined && v.diff.extra + v.diff.missing === 0);
const worstP99 = (m: ModeResult) => Math.max(...m.views.map((v) => percentile(v.staleness, 99)));

function modesTable(modes: ModeResult[], baseline: number): string {
  const rows = modes.map((m, i) => {
    const label = `${i + 1}. ${m.mode}`;
    if (!m.available)
      return `| ${label} | not available: the built CLI refuses \`watch --incremental\` |${' — |'.repeat(7)}`;
    const share = cpuShare(m);
    const cpu =
      m.mode === 'none'
        ? '—'
        : `${fmt(share * 100, 1)} (${fmt(((m.daemonCpu ?? 0) / m.seconds) * 100, 1)} + ${fmt(((m.backendCpu ?? 0) / m.seconds) * 100, 1)})`;
    return (
      `| ${label} | ${fmt(m.tps, 0)} | ${fmt(m.tps / baseline)} | ${m.counts.insert} / ${m.counts.update} / ${m.counts.delete} | ` +
      `${m.counts.errors} | ${cpu} | ${m.mode === 'none' ? '—' : fmt((share * 1000 * 100) / m.tps, 1)} | ${m.mode === 'none' ? '—' : fmt(m.catchUpS, 1)} | ${pct(m.othersCpu)} |`
    );
  });
  return [
    '| mode | writer TPS | ratio to none | inserts / updates / deletes | writer errors | daemon CPU, % of one core (process + backends) | same, scaled to 1 000 writes/s | all views clean after the writers stopped, s | CPU used by other processes, % of the machine |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

function viewsTable(modes: ModeResult[]): string {
  const rows = modes
    .filter((m) => m.mode !== 'none' && m.available)
    .flatMap((m) =>
      m.views.map((v) => {
        const diff = v.diff
          ? `${v.diff.extra + v.diff.missing === 0 ? 'yes' : 'NO'} (${v.diff.extra} / ${v.diff.missing})`
          : '—';
        return (
          `| ${m.mode} | ${v.name} | ${v.how} | ${v.refreshes} | ${fmt(percentile(v.refreshMs, 50), 0)} | ` +
          `${fmt(percentile(v.staleness, 50))} | ${fmt(percentile(v.staleness, 99))} | ${fmt(Math.max(...v.staleness))} | ${diff} |`
        );
      }),
    );
  return [
    '| mode | view | watched as | refreshes / applies | their p50 ms | staleness p50 s | p99 s | max s | equals its query (extra / missing) |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ].join('\n');
}

function writePathTables(w: WritePathResult): string {
  const na = 'not available';
  const list = (xs: readonly number[], digits = 0) => xs.map((x) => fmt(x, digits)).join(', ');
  const worst = (xs: readonly number[]) => (xs.length === 0 ? undefined : Math.max(...xs));
  const inserts = w.inserts.map((p) =>
    p.withTriggers.length === 0
      ? `| ${p.config} | ${na} | — | — | — | — |`
      : `| ${p.config} | ${list(p.withTriggers)} | ${list(p.plain)} | ${fmt(insertRatio(p))} | ${p.errors} | ${pct(worst(p.othersCpu))} |`,
  );
  const copies = w.copies.map((p) =>
    p.withTriggers === undefined || p.plain === undefined
      ? `| ${p.config} | ${na} | — | — | — |`
      : `| ${p.config} | ${fmt(p.withTriggers)} | ${fmt(p.plain)} | ${fmt(p.withTriggers / p.plain)} | ${pct(worst(p.othersCpu))} |`,
  );
  const c = w.catchUp;
  const wrong = c ? [...c.differences].filter(([, d]) => d.extra + d.missing !== 0) : [];
  const catchUp = c
    ? `After the COPY with the 20 incremental views' triggers, the daemon (started then: it had not run during the
INSERT rounds and the COPY, whose changes it applied together) made every view clean in ${c.seconds === undefined ? `— (still dirty after the limit: ${c.dirty.join(', ')})` : `${fmt(c.seconds, 1)} s from its start`};
then ${wrong.length === 0 ? `each of the 20 views equalled its query (EXCEPT ALL both ways)` : `views differing from their query (extra / missing): ${wrong.map(([n, d]) => `${n} ${d.extra} / ${d.missing}`).join(', ')}`}.`
    : 'Incremental views not available: no catch-up to check.';
  const refused =
    w.refused.length > 0
      ? `\nViews the CLI refused to make incremental (watched in full): ${w.refused.map((r) => `${r.view} (${r.refused})`).join('; ')}.\n`
      : '';
  return [
    '| triggers on comments | INSERT TPS on comments, per round | on comments_plain (no trigger), same rounds | ratio (median of the pairs) | errors | CPU used by other processes, % of the machine (worst round) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...inserts,
    '',
    `| triggers on comments | COPY of ${COPY_ROWS.toLocaleString('en')} rows into comments, s | into comments_plain (no trigger) just before, s | ratio | CPU used by other processes, % of the machine (worst) |`,
    '| --- | ---: | ---: | ---: | ---: |',
    ...copies,
    '',
    catchUp,
    refused,
  ].join('\n');
}

/**
 * The daemon's CPU for the goal: measured at the paced rate when there was such a phase, else the
 * no-pause share scaled linearly to 1 000 writes/s.
 */
const cpuGoal = (m: ModeResult): string =>
  m.paced
    ? `${fmt(m.paced.cpu * 100, 1)}% at ${fmt(m.paced.tps, 0)} writes/s`
    : `${fmt((cpuShare(m) * 1000 * 100) / m.tps, 1)}% (scaled from ${fmt(cpuShare(m) * 100, 1)}% at ${fmt(m.tps, 0)} writes/s)`;

function pacedTable(modes: ModeResult[]): string {
  const rows = modes.flatMap((m) =>
    m.paced
      ? [`| ${m.mode} | ${fmt(m.paced.tps, 0)} | ${fmt(m.paced.cpu * 100, 1)} | ${fmt(m.paced.worstP99)} |`]
      : [],
  );
  return [
    `| mode | writes/s achieved (asked: ${PACED_RATE}) | daemon CPU, % of one core (process + backends) | worst view's staleness p99 s |`,
    '| --- | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

function goalsTable(modes: ModeResult[], baseline: number, w: WritePathResult): string {
  const full = modes.find((m) => m.mode === 'full');
  const inc = modes.find((m) => m.mode === 'incremental');
  const na = 'not available';
  const measured = (m: ModeResult | undefined, f: (m: ModeResult) => string) =>
    m === undefined || !m.available ? na : f(m);
  const insertGoal = (config: Config) => {
    const p = w.inserts.find((x) => x.config === config);
    return p === undefined || p.withTriggers.length === 0 ? na : fmt(insertRatio(p));
  };
  const copyGoal = (config: Config) => {
    const p = w.copies.find((x) => x.config === config);
    return p?.withTriggers === undefined || p.plain === undefined ? na : `${fmt(p.withTriggers / p.plain)} x`;
  };
  const c = w.catchUp;
  const viewsAfterCopy = !c
    ? na
    : c.seconds !== undefined && [...c.differences.values()].every((d) => d.extra + d.missing === 0)
      ? `equal, clean ${fmt(c.seconds, 1)} s after the daemon started`
      : 'NO';
  return [
    '| goal (issue 27) | must | incremental, measured | full refresh, same run |',
    '| --- | --- | --- | --- |',
    `| p99 staleness of every view <= ${GOAL.stalenessP99S} s | <= ${GOAL.stalenessP99MustS} s | ${measured(inc, (m) => `${fmt(worstP99(m))} s (worst view)`)} | ${measured(full, (m) => `${fmt(worstP99(m))} s`)} |`,
    `| writers keep >= ${GOAL.tpsRatio} of the no-view TPS | >= ${GOAL.tpsRatioMust} | ${measured(inc, (m) => fmt(m.tps / baseline))} | ${measured(full, (m) => fmt(m.tps / baseline))} |`,
    `| daemon's work <= ${GOAL.cpuShareAt1000 * 100}% of one core at 1 000 writes/s | | ${measured(inc, cpuGoal)} | ${measured(full, cpuGoal)} |`,
    `| after the writers stop, every view equals its query | | ${measured(inc, (m) => (allEqual(m) ? 'yes' : 'NO'))} | ${measured(full, (m) => (allEqual(m) ? 'yes' : 'NO'))} |`,
    `| single-row INSERTs, 1 view: >= ${GOAL.insertRatio} of no trigger | | ${insertGoal('1 incremental view')} | ${insertGoal('1 view, full (mark trigger)')} (mark trigger) |`,
    `| single-row INSERTs, 20 views: >= ${GOAL.insertRatio} of no trigger | | ${insertGoal('20 incremental views')} | ${insertGoal('20 views, full (mark trigger)')} (mark trigger) |`,
    `| COPY of ${COPY_ROWS.toLocaleString('en')} comments <= ${GOAL.copyRatio} x without triggers (20 views) | | ${copyGoal('20 incremental views')} | ${copyGoal('20 views, full (mark trigger)')} (mark trigger) |`,
    `| the views right after the COPY | | ${viewsAfterCopy} | |`,
  ].join('\n');
}

function report(r: {
  modes: ModeResult[];
  writePath: WritePathResult;
  version: string;
  started: Date;
  url: string;
}): string {
  const nones = r.modes.filter((m) => m.mode === 'none' && m.available);
  const baseline = mean(nones.map((m) => m.tps));
  const defaults = loadConfig({ env: process.env, overrides: { databaseUrl: r.url } });
  const minutes = (Date.now() - r.started.getTime()) / 60_000;
  const env = [
    `BENCH_POSTS=${POSTS}`,
    `BENCH_COMMENTS=${COMMENTS}`,
    `BENCH_WRITERS=${WRITERS}`,
    `BENCH_SECONDS=${SECONDS}`,
    `BENCH_WARMUP_SECONDS=${WARMUP_S}`,
    `BENCH_INSERT_SECONDS=${INSERT_SECONDS}`,
    `BENCH_INSERT_ROUNDS=${INSERT_ROUNDS}`,
    `BENCH_INSERT_WARMUP_SECONDS=${INSERT_WARMUP_S}`,
    `BENCH_COPY_ROWS=${COPY_ROWS}`,
    `BENCH_PACED_RATE=${PACED_RATE}`,
    `BENCH_PACED_SECONDS=${PACED_SECONDS}`,
  ].join(' ');
  const errors = r.modes.flatMap((m) => m.errors.map((e) => `- ${m.mode}: \`${e}\``));
  return `${TITLE}

\`${env} npm run bench:incremental\` (bench/incremental.ts), ${r.started.toISOString().slice(0, 16).replace('T', ' ')} UTC,
${minutes.toFixed(1)} min, on ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, PostgreSQL ${r.version} on a private cluster (dev/cluster.ts:
autovacuum on, fsync on, shared_buffers 2GB, work_mem 16MB). Data: ${POSTS.toLocaleString('en')} posts of 200 communities
and ${COMMENTS.toLocaleString('en')} comments (post_id, author_id, score, created_at) spread over half a year, an index on
comments(post_id). Four materialized views over comments, each with a unique index on its key:

\`\`\`sql
${VIEWS.map((v) => `-- ${v.name}, key (${v.key.join(', ')})\n${v.query};`).join('\n')}
\`\`\`

Load: ${WRITERS} writers, one statement after another with no pause, each statement its own transaction: 80% INSERT
of a comment on a random post, 15% UPDATE of a random comment's score, 5% DELETE of a random comment. Modes, in
this order on the same data: none (no view watched, no daemon), full (\`mvrefresh watch <view>\`), incremental
(\`mvrefresh watch <view> --incremental\`), none again; the built CLI, and the daemon (\`mvrefresh run\`, its JSON
log read for refreshes) at a staleness target of ${defaults.maxStalenessMs} ms, a refresh budget of ${Math.round(defaults.refreshBudget * 100)}% per view and ${defaults.concurrency}
refreshes at once for every view in both modes. Each mode: ${WARMUP_S} s of warm-up, then ${SECONDS} s measured; the
ratio is to the mean of the two none rounds (${nones.map((m) => fmt(m.tps, 0)).join(' and ')} TPS). Staleness:
\`mvrefresh.status.staleness_seconds\` (the age of the oldest write a view does not show yet, as bench/tpcb.ts
reads it), sampled every ${SAMPLE_MS} ms during the measured seconds. Daemon CPU: user + system time of the
daemon's process and of its backends (application_name \`mvrefresh:*\`, where REFRESH and the apply run) over
the measured seconds, as a share of one core. Then, with the daemon still running and the views clean again,
the same writers at ${PACED_RATE} writes/s in all for ${PACED_SECONDS} s (after the same warm-up): the daemon's CPU at the
rate of the issue's goal (without that phase, the no-pause share scaled linearly). After the
writers stop, the daemon makes every view clean, then each view is compared with its query, EXCEPT ALL both
ways (a materialized view with \`pg_get_viewdef\`, an incremental view's table with the definition above).
Every measured phase first waits up to 15 s for other processes to leave the CPU alone (bench/support/disturbance.ts)
and reports what they used during it.

### Goals

${goalsTable(r.modes, baseline, r.writePath)}

### Writers and the daemon

${modesTable(r.modes, baseline)}

### At a fixed rate

${PACED_RATE > 0 ? pacedTable(r.modes) : 'Not run (BENCH_PACED_RATE=0).'}

### Per view (the no-pause load)

${viewsTable(r.modes)}

### Write path: single-row INSERTs and COPY

${WRITERS} writers inserting one comment per transaction, no pause, with no daemon running (what the writers pay for
the triggers, not what applies take from them). Each configuration: ${INSERT_ROUNDS} paired rounds of ${INSERT_SECONDS} s (after ${INSERT_WARMUP_S} s of
warm-up), one on comments with the configuration's triggers, one on comments_plain, a twin of comments
(same columns, indexes and rows) that no view reads; which table goes first alternates. The 20 views are
small GROUP BY views over comments (4 key expressions x 5 aggregate lists: count, sum, avg, FILTER, min/max;
bench/incremental/workload.ts); 1 view is the first of them. COPY: one \`COPY ... FROM\` a server-side CSV
file of new comments, commit included, into comments_plain and then into comments; the rows copied
with the mark triggers are deleted (views unwatched) before the incremental views are watched.

${writePathTables(r.writePath)}
${errors.length > 0 ? `\nFirst writer errors:\n\n${errors.join('\n')}\n` : ''}`;
}

await main();

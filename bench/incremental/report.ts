/** bench:incremental's results: their shapes, and the markdown section written from them. */
import { cpus, totalmem } from 'node:os';
import { loadConfig } from '../../src/config.js';
import { percentile } from '../support/report.js';
import {
  MODES,
  PACED_RATE,
  PACED_SECONDS,
  PACED_WARMUP_S,
  SAMPLE_MS,
  SECONDS,
  TITLE,
  WARMUP_S,
  WRITERS,
} from './settings.js';
import type { Difference } from './views.js';
import { COMMENTS, COMMENTS_INDEX, POSTS, VIEWS, type LoadCounts } from './workload.js';
import {
  COPY_ROWS,
  INSERT_ROUNDS,
  INSERT_SECONDS,
  INSERT_WARMUP_S,
  insertRatio,
  type Config,
  type WritePathResult,
} from './writes.js';
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

export type Mode = 'none' | 'full' | 'incremental';

export interface ViewResult {
  name: string;
  /** How it was watched: `full`, `incremental`, the status' mode, or `full (refused: ...)`. */
  how: string;
  staleness: number[];
  refreshes: number;
  refreshMs: number[];
  diff?: Difference;
}

/** The daemon's cost and the views' staleness at a fixed write rate. */
export interface Paced {
  /** Statements per second the writers achieved. */
  tps: number;
  /** CPU of the daemon's process and backends, share of one core. */
  cpu: number;
  /** The worst view's p99 staleness, seconds. */
  worstP99: number;
}

export interface ModeResult {
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

/**
 * Each watched round's TPS over the mean of the no-view rounds right before and after it; a no-view
 * round's over the mean of all of them.
 */
function ratios(modes: readonly ModeResult[], baseline: number): Map<ModeResult, number> {
  const out = new Map<ModeResult, number>();
  const none = (m: ModeResult | undefined): m is ModeResult =>
    m !== undefined && m.mode === 'none' && m.available;
  modes.forEach((m, i) => {
    if (m.mode === 'none') {
      out.set(m, m.tps / baseline);
      return;
    }
    const next = [
      modes
        .slice(0, i)
        .reverse()
        .find((x) => x.mode === 'none'),
      modes.slice(i + 1).find((x) => x.mode === 'none'),
    ].filter(none);
    out.set(m, next.length === 0 ? m.tps / baseline : m.tps / mean(next.map((x) => x.tps)));
  });
  return out;
}

function modesTable(modes: ModeResult[], ratio: Map<ModeResult, number>): string {
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
      `| ${label} | ${fmt(m.tps, 0)} | ${fmt(ratio.get(m))} | ${m.counts.insert} / ${m.counts.update} / ${m.counts.delete} | ` +
      `${m.counts.errors} | ${cpu} | ${m.mode === 'none' ? '—' : fmt((share * 1000 * 100) / m.tps, 1)} | ${m.mode === 'none' ? '—' : fmt(m.catchUpS, 1)} | ${pct(m.othersCpu)} |`
    );
  });
  return [
    '| round | writer TPS | ratio to none (a watched round: to the none rounds next to it; none: to their mean) | inserts / updates / deletes | writer errors | daemon CPU, % of one core (process + backends) | same, scaled to 1 000 writes/s | all views clean after the writers stopped, s | CPU used by other processes, % of the machine |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

function viewsTable(modes: ModeResult[]): string {
  const rows = modes
    .map((m, i) => ({ m, label: `${i + 1}. ${m.mode}` }))
    .filter(({ m }) => m.mode !== 'none' && m.available)
    .flatMap(({ m, label }) =>
      m.views.map((v) => {
        const diff = v.diff
          ? `${v.diff.extra + v.diff.missing === 0 ? 'yes' : 'NO'} (${v.diff.extra} / ${v.diff.missing})`
          : '—';
        return (
          `| ${label} | ${v.name} | ${v.how} | ${v.refreshes} | ${fmt(percentile(v.refreshMs, 50), 0)} | ` +
          `${fmt(percentile(v.staleness, 50))} | ${fmt(percentile(v.staleness, 99))} | ${fmt(Math.max(...v.staleness))} | ${diff} |`
        );
      }),
    );
  return [
    '| round | view | watched as | refreshes / applies | their p50 ms | staleness p50 s | p99 s | max s | equals its query (extra / missing) |',
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
  const rows = modes.flatMap((m, i) =>
    m.paced
      ? [
          `| ${i + 1}. ${m.mode} | ${fmt(m.paced.tps, 0)} | ${fmt(m.paced.cpu * 100, 1)} | ${fmt(m.paced.worstP99)} |`,
        ]
      : [],
  );
  return [
    `| round | writes/s achieved (asked: ${PACED_RATE}) | daemon CPU, % of one core (process + backends) | worst view's staleness p99 s |`,
    '| --- | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

function goalsTable(modes: ModeResult[], ratio: Map<ModeResult, number>, w: WritePathResult): string {
  const full = modes.filter((m) => m.mode === 'full' && m.available);
  const inc = modes.filter((m) => m.mode === 'incremental' && m.available);
  const na = 'not available';
  const measured = (ms: ModeResult[], f: (ms: ModeResult[]) => string) => (ms.length === 0 ? na : f(ms));
  const p99 = (ms: ModeResult[]) =>
    `${fmt(Math.max(...ms.map(worstP99)))} s (worst view and round; rounds: ${ms.map((m) => fmt(worstP99(m))).join(', ')})`;
  const kept = (ms: ModeResult[]) => {
    const rs = ms.map((m) => ratio.get(m) ?? Number.NaN);
    return `${fmt(mean(rs))} (rounds: ${rs.map((r) => fmt(r)).join(', ')})`;
  };
  const cpu = (ms: ModeResult[]) => cpuGoal(ms.find((m) => m.paced) ?? ms[0]!);
  const equal = (ms: ModeResult[]) => (ms.every(allEqual) ? 'yes' : 'NO');
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
    `| p99 staleness of every view <= ${GOAL.stalenessP99S} s | <= ${GOAL.stalenessP99MustS} s | ${measured(inc, p99)} | ${measured(full, p99)} |`,
    `| writers keep >= ${GOAL.tpsRatio} of the no-view TPS | >= ${GOAL.tpsRatioMust} | ${measured(inc, kept)} | ${measured(full, kept)} |`,
    `| daemon's work <= ${GOAL.cpuShareAt1000 * 100}% of one core at 1 000 writes/s | | ${measured(inc, cpu)} | ${measured(full, cpu)} |`,
    `| after the writers stop, every view equals its query | | ${measured(inc, equal)} | ${measured(full, equal)} |`,
    `| single-row INSERTs, 1 view: >= ${GOAL.insertRatio} of no trigger | | ${insertGoal('1 incremental view')} | ${insertGoal('1 view, full (mark trigger)')} (mark trigger) |`,
    `| single-row INSERTs, 20 views: >= ${GOAL.insertRatio} of no trigger | | ${insertGoal('20 incremental views')} | ${insertGoal('20 views, full (mark trigger)')} (mark trigger) |`,
    `| COPY of ${COPY_ROWS.toLocaleString('en')} comments <= ${GOAL.copyRatio} x without triggers (20 views) | | ${copyGoal('20 incremental views')} | ${copyGoal('20 views, full (mark trigger)')} (mark trigger) |`,
    `| the views right after the COPY | | ${viewsAfterCopy} | |`,
  ].join('\n');
}

export function report(r: {
  modes: ModeResult[];
  writePath: WritePathResult;
  version: string;
  started: Date;
  url: string;
}): string {
  const nones = r.modes.filter((m) => m.mode === 'none' && m.available);
  const baseline = mean(nones.map((m) => m.tps));
  const ratio = ratios(r.modes, baseline);
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
    ...(PACED_WARMUP_S !== WARMUP_S ? [`BENCH_PACED_WARMUP_SECONDS=${PACED_WARMUP_S}`] : []),
    `BENCH_COMMENTS_INDEX=${COMMENTS_INDEX.join(',')}`,
    `BENCH_MODES=${MODES.join(',')}`,
  ].join(' ');
  const errors = r.modes.flatMap((m) => m.errors.map((e) => `- ${m.mode}: \`${e}\``));
  return `${TITLE}

\`${env} npm run bench:incremental\` (bench/incremental.ts), ${r.started.toISOString().slice(0, 16).replace('T', ' ')} UTC,
${minutes.toFixed(1)} min, on ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, PostgreSQL ${r.version} on a private cluster (dev/cluster.ts:
autovacuum on, fsync on, shared_buffers 2GB, work_mem 16MB). Data: ${POSTS.toLocaleString('en')} posts of 200 communities
and ${COMMENTS.toLocaleString('en')} comments (post_id, author_id, score, created_at) spread over half a year, an index on
comments(${COMMENTS_INDEX.join(', ')}). Four materialized views over comments, each with a unique index on its key:

\`\`\`sql
${VIEWS.map((v) => `-- ${v.name}, key (${v.key.join(', ')})\n${v.query};`).join('\n')}
\`\`\`

Load: ${WRITERS} writers, one statement after another with no pause, each statement its own transaction: 80% INSERT
of a comment on a random post, 15% UPDATE of a random comment's score, 5% DELETE of a random comment. Rounds, in
this order on the same data: ${MODES.join(', ')}; none: no view watched, no daemon; full: \`mvrefresh watch <view>\`;
incremental: \`mvrefresh watch <view> --incremental\`; the built CLI, and the daemon (\`mvrefresh run\`, its JSON
log read for refreshes) at a staleness target of ${defaults.maxStalenessMs} ms, a refresh budget of ${Math.round(defaults.refreshBudget * 100)}% per view and ${defaults.concurrency}
refreshes at once for every view in both modes. Each round: ${WARMUP_S} s of warm-up, then ${SECONDS} s measured; a
watched round's ratio is to the mean of the none rounds right before and after it (none rounds: ${nones.map((m) => fmt(m.tps, 0)).join(', ')} TPS). Staleness:
\`mvrefresh.status.staleness_seconds\` (the age of the oldest write a view does not show yet, as bench/tpcb.ts
reads it), sampled every ${SAMPLE_MS} ms during the measured seconds. Daemon CPU: user + system time of the
daemon's process and of its backends (application_name \`mvrefresh:*\`, where REFRESH and the apply run) over
the measured seconds, as a share of one core. Before that, in the first round of each watched mode, with the
daemon running and the views clean, the same writers at ${PACED_RATE} writes/s in all for ${PACED_SECONDS} s (after ${PACED_WARMUP_S === WARMUP_S ? 'the same warm-up' : `${PACED_WARMUP_S} s of warm-up`}): the daemon's CPU at the
rate of the issue's goal (without that phase, the no-pause share scaled linearly); in the later rounds of the
mode, the same writers at that rate for as long, unmeasured, so that every round's no-pause phase starts as
long after the views were watched (tables just made incremental apply slower for minutes). After the
writers stop, the daemon makes every view clean, then each view is compared with its query, EXCEPT ALL both
ways (a materialized view with \`pg_get_viewdef\`, an incremental view's table with the definition above).
Every measured phase first waits up to 15 s for other processes to leave the CPU alone (bench/support/disturbance.ts)
and reports what they used during it.

### Goals

${goalsTable(r.modes, ratio, r.writePath)}

### Writers and the daemon

${modesTable(r.modes, ratio)}

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

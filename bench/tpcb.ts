/**
 * pgbench's built-in TPC-B script (scale 10, 8 clients) on its own tables with three watched views, with
 * and without the daemon: what staleness targets and the refresh budget cost the writers and what
 * freshness they buy. Rounds alternate between no views (no triggers, no daemon) and the daemon at a
 * staleness target; each daemon round's TPS is divided by the mean of the no-view rounds next to it.
 *
 * During each round mvrefresh.status is sampled every SAMPLE_MS: staleness (age of the oldest write a view
 * does not show) per view. After the writers stop, the time until every view is clean, then each view is
 * compared with its query. Output: a section of docs/benchmarks.md and docs/tpcb-tradeoff.svg.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_TPCB_SECONDS (20 per round; a
 * round at target T lasts at least 2.5 T), BENCH_OUT (docs/benchmarks.md), BENCH_TPCB_QUICK (n: only n
 * default rounds). autovacuum is whatever the server has; every round starts with an empty history, a
 * VACUUM of the pgbench tables and a CHECKPOINT.
 *
 * `--incremental` (issue 27): at the default target, rounds of no views, the views refreshed in full and
 * the views watched `--incremental` alternate (none, full, incremental, none, incremental, full, none);
 * output: its own section of docs/benchmarks.md.
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { loadConfig } from '../src/config.js';
import type { ViewSchedule } from '../src/daemon/refresh/scheduler.js';
import { migrate } from '../src/db/migrate.js';
import { SUCCESS_OUTCOMES } from '../src/db/protocol.js';
import { packageRoot } from '../src/paths.js';
import { startLocalDaemon } from '../dev/daemon.js';
import { lineCharts } from './support/svg.js';
import { DisturbanceMeter, startMonitor, waitForQuiet } from './support/disturbance.js';
import { ADMIN_URL, dbUrl, connect, dropDatabase, recreateDatabase } from './support/db.js';
import { pgbench, pgbenchInit } from './support/pgbench.js';
import { numberEnv, percentile, writeSection } from './support/report.js';
import { cliOk, statusModes } from './incremental/views.js';

const SECONDS = numberEnv('BENCH_TPCB_SECONDS', 20);
const SVG = join(packageRoot, 'docs', 'tpcb-tradeoff.svg');
const DB = 'mvrefresh_bench_tpcb';
const SCALE = 10;
const CLIENTS = 8;
const SAMPLE_MS = 150;
const CONVERGE_LIMIT_MS = 120_000;
const SECTION_TITLE = '## TPC-B: staleness targets and the refresh budget';
const INCREMENTAL_TITLE = '## TPC-B with incremental views: `npm run bench:tpcb -- --incremental`';
type Mode = 'none' | 'full' | 'incremental';
/** Before a round, wait this long at most for the machine to be quiet (others' CPU below QUIET_SHARE). */
const QUIET_WAIT_S = 15;
const QUIET_SHARE = 0.05;
/** Targets of the trade-off curve, seconds; undefined: the daemon's defaults. */
const TARGETS = [1, 2, 5, 10, 30];

const VIEWS: Record<string, string> = {
  branch_totals: `SELECT b.bid, b.bbalance, count(a.aid) AS accounts, sum(a.abalance) AS account_balance
                    FROM pgbench_branches b JOIN pgbench_accounts a ON a.bid = b.bid GROUP BY b.bid, b.bbalance`,
  top_accounts: 'SELECT aid, bid, abalance FROM pgbench_accounts WHERE abalance > 4000',
  teller_activity: `SELECT tid, count(*) AS transactions, sum(delta) AS total_delta, max(mtime) AS last_at
                      FROM pgbench_history GROUP BY tid`,
};
/** Refreshes counted in the trade-off: the bench's views all refresh CONCURRENTLY (or populate), never blocking. */
const CONCURRENT_OUTCOMES: readonly string[] = SUCCESS_OUTCOMES.filter((o) => o !== 'refreshed_blocking');
const KEYS: Record<string, string> = { branch_totals: 'bid', top_accounts: 'aid', teller_activity: 'tid' };

async function setup(): Promise<void> {
  await recreateDatabase(DB);
  await pgbenchInit(DB, SCALE);
  const c = await connect(dbUrl(DB));
  for (const [name, query] of Object.entries(VIEWS))
    await c.query(
      `CREATE MATERIALIZED VIEW ${name} AS ${query}; CREATE UNIQUE INDEX ON ${name} (${KEYS[name]})`,
    );
  await migrate(c);
  await c.end();
}

interface Round {
  targetS: number | undefined;
  daemon: boolean;
  mode: Mode;
  /** Per view: how mvrefresh.status says it is kept, and its applies by kind (incremental rounds). */
  modes: Record<string, string>;
  applyKinds: Record<string, Record<string, number>>;
  tps: number;
  refreshes: Record<string, number>;
  refreshMs: Record<string, number[]>;
  staleness: Record<string, number[]>;
  convergeMs: Record<string, number>;
  equal: Record<string, boolean>;
  plans: Record<string, ViewSchedule>;
  unmet: string[];
  seconds: number;
  /** Share of the machine's CPU used by other processes during the round. */
  othersCpu: number;
}

let meter: DisturbanceMeter;

/** The daemon in this process at a target (undefined: its default); what it logs as target_unmet goes to `unmet`. */
async function startDaemon(url: string, targetS: number | undefined, unmet: string[]) {
  const log = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.includes('"target_unmet"')) continue;
        const entry = JSON.parse(line) as { view: string; msg: string };
        unmet.push(entry.msg);
      }
      done();
    },
  });
  // MVREFRESH_* variables of the bench's environment apply (to try settings); the URL is the bench's
  const local = await startLocalDaemon(url, {
    env: process.env,
    logLevel: 'info',
    log,
    overrides: targetS === undefined ? {} : { maxStalenessMs: targetS * 1000 },
  });
  return local;
}

async function oneRound(
  targetS: number | undefined,
  daemon: boolean,
  mode: Mode = daemon ? 'full' : 'none',
): Promise<Round> {
  const url = dbUrl(DB);
  const c = await connect(url);
  const seconds = Math.max(SECONDS, Math.ceil(2.5 * (targetS ?? 0)));
  // every round starts with an empty history (as pgbench -i leaves it), so that teller_activity costs
  // the same in every round instead of growing with the rounds before it
  await c.query('TRUNCATE pgbench_history');
  // and with every balance at 0: top_accounts (balance > 4000) grew with the rounds before it, its refresh
  // from 0.4 to 1.6 s over a run
  await c.query('UPDATE pgbench_accounts SET abalance = 0 WHERE abalance <> 0');
  await c.query('UPDATE pgbench_tellers SET tbalance = 0 WHERE tbalance <> 0');
  await c.query('UPDATE pgbench_branches SET bbalance = 0 WHERE bbalance <> 0');
  await c.query('VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history');
  await c.query('CHECKPOINT');
  const round: Round = {
    targetS,
    daemon,
    mode,
    modes: {},
    applyKinds: {},
    tps: 0,
    refreshes: {},
    refreshMs: {},
    staleness: {},
    convergeMs: {},
    equal: {},
    plans: {},
    unmet: [],
    seconds,
    othersCpu: 0,
  };
  let d: Awaited<ReturnType<typeof startDaemon>> | undefined;
  if (daemon) {
    for (const name of Object.keys(VIEWS))
      if (mode === 'incremental') await cliOk(url, 'watch', name, '--incremental');
      else await c.query('SELECT mvrefresh.watch($1)', [name]);
    for (const [v, m] of await statusModes(c)) round.modes[v.replace(/^public\./, '')] = m;
    // every round starts from fresh views, whose last refresh tells the daemon what a refresh costs
    await c.query('CALL mvrefresh.refresh_dirty()');
    d = await startDaemon(url, targetS, round.unmet);
  }
  await waitForQuiet(meter, {
    maxSeconds: QUIET_WAIT_S,
    isQuiet: (a, seconds) => DisturbanceMeter.share(a.ticks, seconds) < QUIET_SHARE,
  });
  let writing = true;
  const sampler = (async () => {
    while (writing && daemon) {
      const { rows } = await c.query<{ view: string; staleness_seconds: number }>(
        'SELECT view_name AS view, staleness_seconds FROM mvrefresh.status',
      );
      for (const r of rows) (round.staleness[r.view] ??= []).push(r.staleness_seconds);
      await new Promise((res) => setTimeout(res, SAMPLE_MS));
    }
  })();
  const monitor = startMonitor(meter);
  try {
    round.tps = await pgbench({ database: DB, clients: CLIENTS, seconds });
  } finally {
    writing = false;
    await sampler;
  }
  const others = await monitor.stop();
  round.othersCpu = DisturbanceMeter.share(others.activity.ticks, others.seconds);
  if (d) {
    const stopped = performance.now();
    const pending = new Set(Object.keys(VIEWS));
    while (pending.size > 0 && performance.now() - stopped < CONVERGE_LIMIT_MS) {
      const { rows } = await c.query<{ view: string; dirty: boolean }>(
        'SELECT view_name AS view, dirty FROM mvrefresh.status',
      );
      for (const r of rows)
        if (!r.dirty && pending.delete(r.view)) round.convergeMs[r.view] = performance.now() - stopped;
      await new Promise((res) => setTimeout(res, 50));
    }
    for (const [name, plan] of d.running.scheduler.describeAll())
      round.plans[name.replace(/^public\./, '')] = plan;
    await d.daemon.stop();
    for (const [name, query] of Object.entries(VIEWS)) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ((TABLE ${name} EXCEPT ${query}) UNION ALL (${query} EXCEPT TABLE ${name})) diff`,
      );
      round.equal[name] = rows[0]!.n === 0;
    }
    for (const r of d.reports) {
      const name = r.view.replace(/^public\./, '');
      if (!CONCURRENT_OUTCOMES.includes(r.outcome)) continue;
      round.refreshes[name] = (round.refreshes[name] ?? 0) + 1;
      (round.refreshMs[name] ??= []).push(r.refreshMs ?? r.durationMs);
      if (r.applyKind !== undefined) {
        const kinds = (round.applyKinds[name] ??= {});
        kinds[r.applyKind] = (kinds[r.applyKind] ?? 0) + 1;
      }
    }
    // the CLI turns incremental views back into materialized views first
    if (mode === 'incremental') await cliOk(url, 'unwatch', '--all');
    else await c.query('SELECT mvrefresh.unwatch_all()');
  }
  await c.end();
  process.stderr.write(
    `tpcb: ${daemon ? `daemon (${mode}), target ${targetS ?? 'default'}` : 'no views'}: ${round.tps.toFixed(0)} TPS` +
      ` (others used ${(round.othersCpu * 100).toFixed(0)}% of the CPU)\n`,
  );
  return round;
}

/** Each daemon round against the mean of the no-view rounds right before and after it. */
function ratios(rounds: readonly Round[]): Map<Round, number> {
  const out = new Map<Round, number>();
  rounds.forEach((r, i) => {
    if (!r.daemon) return;
    const before = rounds
      .slice(0, i)
      .reverse()
      .find((x) => !x.daemon);
    const after = rounds.slice(i + 1).find((x) => !x.daemon);
    const base = [before, after].filter((x): x is Round => x !== undefined).map((x) => x.tps);
    out.set(r, r.tps / (base.reduce((a, b) => a + b, 0) / base.length));
  });
  return out;
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '—');

async function main(): Promise<void> {
  const t0 = performance.now();
  await setup();
  const admin = await connect(ADMIN_URL);
  meter = new DisturbanceMeter(admin, [DB]);
  await meter.start();
  if (process.argv.includes('--incremental')) {
    await incrementalRun(t0);
    await admin.end();
    await dropDatabase(DB);
    return;
  }
  // default target, interleaved with no-view rounds; the other targets of the curve in between
  // BENCH_TPCB_QUICK=n: n default rounds between n + 1 no-view rounds, no curve (for trying settings)
  const quick = Number(process.env['BENCH_TPCB_QUICK'] ?? 0);
  const plan: [number | undefined, boolean][] =
    quick > 0
      ? [
          [undefined, false],
          ...Array.from({ length: quick }, (): [number | undefined, boolean][] => [
            [undefined, true],
            [undefined, false],
          ]).flat(),
        ]
      : [
          [undefined, false],
          [undefined, true],
          [2, true],
          [undefined, false],
          [5, true],
          [undefined, true],
          [undefined, false],
          [10, true],
          [undefined, false],
          [30, true],
          [undefined, true],
          [undefined, false],
        ];
  const rounds: Round[] = [];
  for (const [target, daemon] of plan) rounds.push(await oneRound(target, daemon));
  const ratio = ratios(rounds);
  const defaults = loadConfig({ env: process.env, overrides: { databaseUrl: dbUrl(DB) } });
  const defaultS = defaults.maxStalenessMs / 1000;
  const targetOf = (r: Round) => r.targetS ?? defaultS;
  const names = Object.keys(VIEWS);

  const defaultRounds = rounds.filter((r) => r.daemon && r.targetS === undefined);
  const defaultRows = defaultRounds.flatMap((r, i) =>
    names.map((v) => {
      const s = r.staleness[v] ?? [];
      return (
        `| ${i + 1} | ${f2(ratio.get(r)!)} | ${v} | ${f1(percentile(r.refreshMs[v] ?? [], 50))} | ${r.refreshes[v] ?? 0} | ` +
        `${f2(percentile(s, 50))} | ${f2(percentile(s, 99))} | ${f2(Math.max(...s))} | ${f2((r.convergeMs[v] ?? NaN) / 1000)} | ` +
        `${r.equal[v] ? 'yes' : 'NO'} | ${r.plans[v]?.targetMet ? 'yes' : `no (${f1((r.plans[v]?.achievableMs ?? NaN) / 1000)} s)`} |`
      );
    }),
  );
  const curve = TARGETS.map((t) => {
    const rs = rounds.filter((r) => r.daemon && targetOf(r) === t);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const perMin = (v: string) => mean(rs.map((r) => ((r.refreshes[v] ?? 0) * 60) / r.seconds));
    const p99 = (v: string) => mean(rs.map((r) => percentile(r.staleness[v] ?? [], 99)));
    return { t, n: rs.length, ratio: mean(rs.map((r) => ratio.get(r)!)), perMin, p99 };
  });
  const curveRows = curve.map(
    (c) =>
      `| ${c.t} | ${c.n} | ${f2(c.ratio)} | ${names.map((v) => f1(c.perMin(v))).join(' | ')} | ${names
        .map((v) => f2(c.p99(v)))
        .join(' | ')} |`,
  );
  const unmet = [...new Set(defaultRounds.flatMap((r) => r.unmet))];
  const baselines = rounds.filter((r) => !r.daemon).map((r) => r.tps.toFixed(0));
  const others = rounds.map((r) => `${(r.othersCpu * 100).toFixed(0)}%`);
  const minutes = (performance.now() - t0) / 60_000;
  const section = [
    SECTION_TITLE,
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, by`,
    `\`npm run bench:tpcb\` (bench/tpcb.ts, ${minutes.toFixed(1)} min). pgbench's built-in TPC-B script, scale ${SCALE},`,
    `${CLIENTS} clients, ${SECONDS} s rounds (at least 2.5 × the target); three watched views: branch_totals (branches`,
    'joined to the 1M accounts, grouped), top_accounts (accounts with balance > 4000), teller_activity',
    '(history grouped by teller). Rounds without views (no triggers, no daemon) alternate with daemon rounds;',
    "a daemon round's ratio is its TPS over the mean of the no-view rounds next to it. Staleness: sampled",
    `from mvrefresh.status every ${SAMPLE_MS} ms while the writers run. Every round starts with an empty`,
    'pgbench_history, every balance at 0, a VACUUM of the pgbench tables and a CHECKPOINT (autovacuum is off on this server).',
    `No-view rounds, TPS in order: ${baselines.join(', ')}. Each round waits up to ${QUIET_WAIT_S} s for other processes to`,
    `leave the CPU alone; what they used during each round, in order: ${others.join(', ')}.`,
    '',
    `### Defaults (target ${defaultS} s, budget ${Math.round(defaults.refreshBudget * 100)}% per view, concurrency ${defaults.concurrency})`,
    '',
    '| round | TPS ratio | view | refresh p50 ms | refreshes | staleness p50 s | p99 s | max s | clean after writers stop, s | equals its query | target met (else achievable) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...defaultRows,
    '',
    'What the daemon logged when the budget could not meet the target:',
    '',
    ...unmet.map((m) => `- ${m}`),
    '',
    '### Trade-off: staleness target against cost',
    '',
    `![trade-off curve](tpcb-tradeoff.svg)`,
    '',
    `| target s | rounds | TPS ratio | ${names.map((v) => `${v} refreshes/min`).join(' | ')} | ${names
      .map((v) => `${v} p99 staleness s`)
      .join(' | ')} |`,
    `| --- | --- | --- | ${names.map(() => '---').join(' | ')} | ${names.map(() => '---').join(' | ')} |`,
    ...curveRows,
    '',
  ].join('\n');
  console.log(section);
  const svg = lineCharts(
    [
      {
        title: "Writers' TPS / no views",
        yLabel: 'ratio',
        series: [{ name: 'TPC-B, 8 clients', points: curve.map((c) => [c.t, c.ratio]) }],
        goal: { y: 0.7, label: '0.70' },
      },
      {
        title: 'Refreshes per minute',
        yLabel: 'refreshes / min',
        series: names.map((v) => ({
          name: v,
          points: curve.map((c) => [c.t, c.perMin(v)] as [number, number]),
        })),
      },
      {
        title: 'p99 staleness',
        yLabel: 'seconds',
        series: names.map((v) => ({
          name: v,
          points: curve.map((c) => [c.t, c.p99(v)] as [number, number]),
        })),
      },
    ],
    TARGETS,
    `bench/tpcb.ts, ${new Date().toISOString().slice(0, 10)}: pgbench TPC-B scale ${SCALE}, ${CLIENTS} clients, budget ${Math.round(defaults.refreshBudget * 100)}% per view`,
  );
  await writeFile(SVG, svg);
  await writeSection(SECTION_TITLE, section);
  await admin.end();
  await dropDatabase(DB);
}

/** `--incremental`: none / full / incremental rounds at the default target, alternating. */
async function incrementalRun(t0: number): Promise<void> {
  const plan: Mode[] = ['none', 'full', 'incremental', 'none', 'incremental', 'full', 'none'];
  const rounds: Round[] = [];
  for (const mode of plan) rounds.push(await oneRound(undefined, mode !== 'none', mode));
  const ratio = ratios(rounds);
  const defaults = loadConfig({ env: process.env, overrides: { databaseUrl: dbUrl(DB) } });
  const names = Object.keys(VIEWS);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const roundRows = rounds.map(
    (r, i) =>
      `| ${i + 1} | ${r.mode} | ${r.tps.toFixed(0)} | ${r.daemon ? f2(ratio.get(r)!) : '—'} | ${(r.othersCpu * 100).toFixed(0)} |`,
  );
  const viewRows = (['full', 'incremental'] as const).flatMap((mode) =>
    names.map((v) => {
      const rs = rounds.filter((r) => r.mode === mode);
      const s = rs.flatMap((r) => r.staleness[v] ?? []);
      const kinds = new Map<string, number>();
      for (const r of rs)
        for (const [k, n] of Object.entries(r.applyKinds[v] ?? {})) kinds.set(k, (kinds.get(k) ?? 0) + n);
      return (
        `| ${mode} | ${v} | ${[...new Set(rs.map((r) => r.modes[v] ?? '?'))].join(', ')} | ` +
        `${rs.map((r) => r.refreshes[v] ?? 0).join(', ')} | ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ') || '—'} | ` +
        `${f1(
          percentile(
            rs.flatMap((r) => r.refreshMs[v] ?? []),
            50,
          ),
        )} | ${f2(percentile(s, 50))} | ${f2(percentile(s, 99))} | ` +
        `${f2(Math.max(...s))} | ${rs.map((r) => f2((r.convergeMs[v] ?? NaN) / 1000)).join(', ')} | ` +
        `${rs.every((r) => r.equal[v]) ? 'yes' : 'NO'} |`
      );
    }),
  );
  const minutes = (performance.now() - t0) / 60_000;
  const modeRatio = (mode: Mode) => f2(mean(rounds.filter((r) => r.mode === mode).map((r) => ratio.get(r)!)));
  const section = [
    INCREMENTAL_TITLE,
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, by`,
    `\`npm run bench:tpcb -- --incremental\` (bench/tpcb.ts, ${minutes.toFixed(1)} min): pgbench's built-in TPC-B script,`,
    `scale ${SCALE}, ${CLIENTS} clients, ${SECONDS} s rounds, the three views of the section above at the default target`,
    `(${defaults.maxStalenessMs / 1000} s, budget ${Math.round(defaults.refreshBudget * 100)}% per view, concurrency ${defaults.concurrency}).`,
    'Rounds without views, with the views refreshed in full (`watch`) and with the views watched',
    "`--incremental` alternate; a round's ratio is its TPS over the mean of the no-view rounds next to it.",
    'Staleness and the rest as in the section above.',
    '',
    `Mean ratio: full ${modeRatio('full')}, incremental ${modeRatio('incremental')}.`,
    '',
    '| round | views | TPS | ratio | CPU used by other processes, % of the machine |',
    '| --- | --- | ---: | ---: | ---: |',
    ...roundRows,
    '',
    '| rounds | view | kept as (mvrefresh.status) | refreshes / applies per round | applies by kind | p50 ms | staleness p50 s | p99 s | max s | clean after the writers stopped, s | equals its query |',
    '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |',
    ...viewRows,
    '',
  ].join('\n');
  console.log(section);
  await writeSection(INCREMENTAL_TITLE, section);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

/**
 * What takes the writers' throughput when their tables feed incremental views (issue 27's writers' goal),
 * on bench:incremental's data, views and load (8 writers with no pause; BENCH_POSTS, BENCH_COMMENTS,
 * BENCH_WRITERS as there), on a private cluster with production settings. Rounds (BENCH_ATTRIBUTION_ROUNDS,
 * in order):
 *   none         no view watched, no daemon;
 *   capture      the four views made incremental, no daemon: the writers pay for the capture triggers
 *                only (the log grows; the daemon applies it after the round);
 *   incremental  the same with the daemon applying (as bench:incremental's incremental rounds);
 *   burner       no view, and a process that keeps a core busy for the share the daemon (process and
 *                backends) used in the last incremental round: what the daemon's CPU alone costs the
 *                writers, whatever it does with it;
 *   unlogged     as incremental, with every log made UNLOGGED before the daemon starts: what the logs'
 *                WAL costs (docs/design/incremental.md 10.4; mvrefresh keeps its logs logged).
 * Per round: writer TPS and its ratio to the mean of the none rounds; CPU by role (writers' client and
 * backends, daemon, autovacuum, the server's auxiliary processes) and the machine's idle share; what the
 * writers' backends wait for (bench/incremental/cpu-by-role.ts). Markdown on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import type pg from 'pg';
import { PRODUCTION_SETTINGS, withCluster } from './support/cluster.js';
import { DaemonProcess } from './support/daemon.js';
import { connect, serverVersion } from './support/db.js';
import { numberEnv } from './support/report.js';
import { startRoleSampler, type RoleCpu } from './incremental/cpu-by-role.js';
import { cliOk, waitClean, watchAll } from './incremental/views.js';
import { COMMENTS, POSTS, VIEWS, WriterLoad } from './incremental/workload.js';
import { createBenchDatabase, maxCommentId } from './incremental/database.js';

const DB = 'attribution_bench';
const SECONDS = numberEnv('BENCH_SECONDS', 30);
const WARMUP_S = numberEnv('BENCH_WARMUP_SECONDS', 10);
const WRITERS = numberEnv('BENCH_WRITERS', 8);
const CATCH_UP_LIMIT_MS = 300_000;
const ROUND_KINDS = ['none', 'capture', 'incremental', 'burner', 'unlogged'] as const;
type Round = (typeof ROUND_KINDS)[number];
const ROUNDS = (process.env['BENCH_ATTRIBUTION_ROUNDS'] ?? 'none,capture,incremental,burner,none')
  .split(',')
  .map((r) => r.trim())
  .filter((r): r is Round => {
    if ((ROUND_KINDS as readonly string[]).includes(r)) return true;
    throw new Error(
      `BENCH_ATTRIBUTION_ROUNDS: unknown round ${JSON.stringify(r)} (${ROUND_KINDS.join(', ')})`,
    );
  });
/** The burner's period: busy for its share of it, asleep for the rest. */
const BURNER_PERIOD_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  round: Round;
  tps: number;
  errors: number;
  cpu: RoleCpu;
  /** The burner's busy share, percent of one core (burner rounds). */
  burner?: number;
}

/** A process busy for `percent` of each period on one core, until killed. */
function startBurner(percent: number): ChildProcess {
  const busy = Math.round((BURNER_PERIOD_MS * Math.min(percent, 100)) / 100);
  const script = `const nap = new Int32Array(new SharedArrayBuffer(4));
for (;;) { const t = Date.now(); while (Date.now() - t < ${busy}); Atomics.wait(nap, 0, 0, ${BURNER_PERIOD_MS - busy}); }`;
  return spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
}

/** The unlogged round's logs: no WAL for their rows, emptied by a crash (not what mvrefresh does). */
async function unlogLogs(db: pg.ClientBase): Promise<void> {
  const { rows } = await db.query<{ log: string }>(
    `SELECT c.oid::pg_catalog.regclass::text AS log FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'mvrefresh'::pg_catalog.regnamespace AND c.relkind = 'r' AND c.relname ~ '^log_[0-9]+$'`,
  );
  for (const { log } of rows) await db.query(`ALTER TABLE ${log} SET UNLOGGED`);
}

/** The rounds with the daemon applying the views' logs. */
const applying = (round: Round) => round === 'incremental' || round === 'unlogged';

const daemonShare = (r: Result) =>
  (r.cpu.byRole['daemon (process)'] ?? 0) + (r.cpu.byRole['daemon (backends)'] ?? 0);

async function runRound(url: string, db: pg.ClientBase, round: Round, burnerShare: number): Promise<Result> {
  await db.query('VACUUM ANALYZE public.comments, public.posts');
  await db.query('CHECKPOINT');
  const names = VIEWS.map((v) => v.name);
  let daemon: DaemonProcess | undefined;
  let burner: ChildProcess | undefined;
  const startDaemon = async () => {
    const d = new DaemonProcess(url, { inheritEnv: true, settings: { MVREFRESH_LOG_LEVEL: 'info' } });
    await d.started();
    await waitClean(db, names, CATCH_UP_LIMIT_MS);
    return d;
  };
  const watched = round === 'capture' || round === 'incremental' || round === 'unlogged';
  try {
    if (watched) await watchAll(url, VIEWS, true);
    if (round === 'unlogged') await unlogLogs(db);
    if (applying(round)) daemon = await startDaemon();
    if (round === 'burner') burner = startBurner(burnerShare);
    const load = new WriterLoad(url, WRITERS, 'mixed', { firstMaxId: await maxCommentId(db) });
    await load.start();
    let cpu: RoleCpu;
    try {
      await sleep(WARMUP_S * 1000);
      const sampler = startRoleSampler(db, process.pid, daemon?.pid ?? 0);
      load.count();
      await sleep(SECONDS * 1000);
      load.endCount();
      cpu = await sampler.stop();
    } finally {
      await load.stop();
    }
    // the log the capture round filled is applied before the views are unwatched
    if (round === 'capture') daemon = await startDaemon();
    process.stderr.write(`attribution: ${round}: ${load.tps.toFixed(0)} TPS\n`);
    return {
      round,
      tps: load.tps,
      errors: load.counts.errors,
      cpu,
      ...(round === 'burner' ? { burner: burnerShare } : {}),
    };
  } finally {
    burner?.kill('SIGKILL');
    if (daemon) {
      const code = await daemon.stop();
      if (code !== 0) process.stderr.write(`attribution: the daemon exited with ${code}\n`);
    }
    if (watched) await cliOk(url, 'unwatch', '--all');
  }
}

const pct = (n: number | undefined) => (n === undefined ? '—' : n.toFixed(1));

function report(results: Result[], version: string, started: Date): string {
  const none = results.filter((r) => r.round === 'none');
  const base = none.reduce((a, r) => a + r.tps, 0) / Math.max(1, none.length);
  const roles = [...new Set(results.flatMap((r) => Object.keys(r.cpu.byRole)))]
    .filter((role) => results.some((r) => (r.cpu.byRole[role] ?? 0) >= 0.5))
    .sort();
  const waits = [...new Set(results.flatMap((r) => r.cpu.waits.slice(0, 5).map(([w]) => w)))];
  const head = `| round | writer TPS | ratio to the none rounds' mean | errors | ${roles.join(' | ')} | idle (machine) | of it, I/O wait |`;
  const lines = results.map(
    (r, i) =>
      `| ${i + 1}. ${r.round}${r.burner === undefined ? '' : ` (${r.burner.toFixed(0)}% of a core)`} | ${r.tps.toFixed(0)} | ${(r.tps / base).toFixed(2)} | ${r.errors} | ${roles.map((role) => pct(r.cpu.byRole[role])).join(' | ')} | ${pct(r.cpu.idle)} | ${pct(r.cpu.ioWait)} |`,
  );
  const waitLines = results.map(
    (r, i) =>
      `| ${i + 1}. ${r.round} | ${waits.map((w) => pct(r.cpu.waits.find(([x]) => x === w)?.[1] ?? 0)).join(' | ')} |`,
  );
  return `## Incremental views: where the writers' throughput goes, \`npm run bench:incremental-attribution\`

Measured ${started.toISOString()}, ${cpus().length} cores, PostgreSQL ${version} on a private cluster with
production settings; ${POSTS.toLocaleString('en')} posts, ${COMMENTS.toLocaleString('en')} comments, bench:incremental's four views and load
(${WRITERS} writers, no pause: 80% INSERT, 15% UPDATE, 5% DELETE); ${WARMUP_S} s of warm-up, then ${SECONDS} s measured per round.

CPU, % of one core (of ${100 * cpus().length} for the machine), by role:

${head}
| --- | ---: | ---: | ---: | ${roles.map(() => '---:').join(' | ')} | ---: | ---: |
${lines.join('\n')}

What the writers' backends were doing (share of samples every 100 ms; idle: waiting for their client):

| round | ${waits.join(' | ')} |
| --- | ${waits.map(() => '---:').join(' | ')} |
${waitLines.join('\n')}
`;
}

async function main(): Promise<void> {
  const started = new Date();
  await withCluster(PRODUCTION_SETTINGS, async (cluster) => {
    const url = await createBenchDatabase(cluster, DB);
    const db = await connect(url);
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    const results: Result[] = [];
    try {
      for (const round of ROUNDS) {
        const last = [...results].reverse().find((r) => applying(r.round));
        results.push(await runRound(url, db, round, last ? daemonShare(last) : 25));
      }
    } finally {
      await db.end();
    }
    console.log(report(results, await serverVersion(url), started));
  });
}

await main();

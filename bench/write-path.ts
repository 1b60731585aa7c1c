/**
 * Write-path cost: what watching a view costs the application's writers, side by side in one run.
 *
 * Every variant gets its own database, a copy of the dirty-flag article's shop (demo/shop.ts) with the
 * same seed. pgbench writes one order per transaction (bench/write.pgbench) with 8 and with 32 clients; the
 * variants run one at a time, interleaved, each round after a CHECKPOINT and a quiet moment of the machine
 * (the NOTIFY commit lock, the WAL and the 2 cores are shared); a round disturbed by another process is
 * repeated.
 *
 *   none        no trigger
 *   mvrefresh   `mvrefresh migrate` + `mvrefresh watch`; nothing refreshes, so the view stays dirty and
 *               every writer takes the trigger's fast path (the steady state of a running system)
 *   article     the article's upsert trigger (bench/article.sql), never refreshed
 *   notify      a statement trigger that calls pg_notify in every transaction (bench/notify.sql)
 *   empty       PL/pgSQL statement triggers that do nothing (bench/empty.sql): the floor of any PL/pgSQL
 *               trigger, at the first client count
 *   ... + refresh       the same while the view is kept fresh: REFRESH ... CONCURRENTLY or the article's
 *               procedure called once a second on a second connection, or the mvrefresh daemon itself (the
 *               built CLI's `run`, default settings) for mvrefresh
 *
 * Environment: BENCH_URL (a superuser URL of the server), BENCH_SECONDS per round (15), BENCH_ROUNDS (3),
 * BENCH_CLIENTS (8,32: the variants
 * with a refresher run at the first only), BENCH_THREADS (2), BENCH_SEED_ORDERS (600000), BENCH_VARIANTS (database suffixes,
 * comma-separated; default all), BENCH_QUIET_WAIT_SECONDS (60), BENCH_BUDGET_SECONDS (480: waits and repeats
 * only while the run stays within it), BENCH_OUT (docs/benchmarks.md; "-" for
 * none), BENCH_KEEP=1 keeps the databases, BENCH_SYNCHRONOUS_COMMIT (the writers'; default the server's). Quick run: BENCH_SECONDS=5 BENCH_ROUNDS=1.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { packageRoot } from '../src/paths.js';
import { shopSchema } from '../demo/shop.js';
import { DaemonProcess } from './support/daemon.js';
import {
  type Activity,
  DisturbanceMeter,
  secondsSince,
  startMonitor,
  waitForQuiet,
} from './support/disturbance.js';
import { ADMIN_URL, dbUrl, withClient } from './support/db.js';
import { pgbench, pgbenchArgs, type PgbenchRun } from './support/pgbench.js';
import { withPreviousRelease } from './support/previous-release.js';
import { RESULTS_FILE, median, numberEnv, percentile, writeSection } from './support/report.js';

const run = promisify(execFile);

function intEnv(name: string, fallback: number): number {
  const value = numberEnv(name, fallback);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer`);
  return value;
}

function listEnv(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const values = raw.split(',').map((v) => Number(v.trim()));
  if (values.some((v) => !Number.isInteger(v) || v < 1))
    throw new Error(`${name} must be a comma-separated list of positive integers`);
  return values;
}

const SECONDS = intEnv('BENCH_SECONDS', 15);
const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const CLIENTS = listEnv('BENCH_CLIENTS', [8, 32]);
const THREADS = intEnv('BENCH_THREADS', 2);
const SEED_ORDERS = intEnv('BENCH_SEED_ORDERS', 600_000);
const QUIET_WAIT_SECONDS = intEnv('BENCH_QUIET_WAIT_SECONDS', 60);
const BUDGET_SECONDS = intEnv('BENCH_BUDGET_SECONDS', 480);
const KEEP_DATABASES = process.env['BENCH_KEEP'] === '1';
/**
 * synchronous_commit of the writers (on, off, ...; default: the server's). "off" makes the run CPU-bound:
 * the regime where a trigger's cost shows the most, and steadier than a disk whose flush time drifts.
 */
const SYNCHRONOUS_COMMIT = process.env['BENCH_SYNCHRONOUS_COMMIT'] ?? '';
if (!/^(|on|off|local|remote_write|remote_apply)$/.test(SYNCHRONOUS_COMMIT))
  throw new Error('BENCH_SYNCHRONOUS_COMMIT must be on, off, local, remote_write or remote_apply');

const REFRESH_PERIOD_MS = 1000;
/** Consecutive quiet seconds before a round starts. */
const QUIET_SAMPLES = 2;
/**
 * A round is disturbed (and run again, once) when other processes used this share of the machine's CPU or
 * wrote this many bytes per second, other databases ended this many transactions per second, or a
 * checkpoint ran during it.
 */
const DISTURBED_SHARE = 0.05;
const DISTURBED_XACTS_PER_SECOND = 5;
const DISTURBED_BYTES_PER_SECOND = 1024 * 1024;
const BYTES_PER_MIB = 1024 * 1024;
const ATTEMPTS_PER_ROUND = 2;
const PERCENTILE = 99;
const US_PER_MS = 1000;
const BYTES_PER_GIB = 2 ** 30;

const DB_PREFIX = 'mvrefresh_bench_';
const TEMPLATE_DB = `${DB_PREFIX}template`;
const FILE_COPY_SINCE = 150000;
const VIEW = 'public.monthly_product_sales';
const SECTION_TITLE = '## Write-path cost';
const BENCH_DIR = join(packageRoot, 'bench');
const SCRIPT = join(BENCH_DIR, 'write.pgbench');
const CLI = join(packageRoot, 'dist', 'src', 'bin.js');

type Setup = 'none' | 'mvrefresh' | 'previous' | 'article' | 'notify' | 'empty';

interface Variant {
  /** In the table. */
  label: string;
  /** Database name suffix; BENCH_VARIANTS selects by it. */
  key: string;
  setup: Setup;
  /** Called every REFRESH_PERIOD_MS during each round, on its own connection. */
  refresh?: string;
  /** The mvrefresh daemon runs during each round. */
  daemon?: boolean;
  /** Runs at the first client count only (a reference, not a result). */
  firstClientsOnly?: boolean;
}

/** A variant at a number of clients: one row of the table. */
interface Case {
  variant: Variant;
  clients: number;
}

const BASELINE = 'none';
const REFRESH_BASELINE = 'none_refresh';

const ALL_VARIANTS: readonly Variant[] = [
  { label: 'none', key: 'none', setup: 'none' },
  { label: 'mvrefresh', key: 'mvrefresh', setup: 'mvrefresh' },
  { label: '0.1.0 (one trigger per view and table)', key: 'previous', setup: 'previous' },
  { label: 'article', key: 'article', setup: 'article' },
  { label: 'notify', key: 'notify', setup: 'notify' },
  {
    label: 'an empty PL/pgSQL trigger (the floor of any)',
    key: 'empty',
    setup: 'empty',
    firstClientsOnly: true,
  },
  {
    label: 'none + REFRESH CONCURRENTLY every 1 s',
    key: 'none_refresh',
    setup: 'none',
    refresh: `REFRESH MATERIALIZED VIEW CONCURRENTLY ${VIEW}`,
  },
  {
    label: 'mvrefresh + the daemon running (`mvrefresh run`, defaults)',
    key: 'mvrefresh_daemon',
    setup: 'mvrefresh',
    daemon: true,
  },
  {
    label: 'article + CALL refresh_dirty_materialized_views() every 1 s',
    key: 'article_refresh',
    setup: 'article',
    refresh: 'CALL public.refresh_dirty_materialized_views()',
  },
];

function selectedVariants(): Variant[] {
  const wanted = process.env['BENCH_VARIANTS'];
  if (!wanted) return [...ALL_VARIANTS];
  const keys = wanted.split(',').map((k) => k.trim());
  const unknown = keys.filter((k) => !ALL_VARIANTS.some((v) => v.key === k));
  if (unknown.length > 0) throw new Error(`unknown BENCH_VARIANTS: ${unknown.join(', ')}`);
  return ALL_VARIANTS.filter((v) => keys.includes(v.key));
}

const hasRefresher = (v: Variant): boolean => v.refresh !== undefined || v.daemon === true;

/** Every variant at the first client count; those without a refresher and not a reference at the others too. */
function selectedCases(variants: readonly Variant[]): Case[] {
  return CLIENTS.flatMap((clients, i) =>
    variants
      .filter((v) => i === 0 || !(hasRefresher(v) || v.firstClientsOnly === true))
      .map((variant) => ({ variant, clients })),
  );
}

const caseLabel = (c: Case): string => `${c.variant.key}@${c.clients}`;

/**
 * The variants whose ratio matters most run right next to their baseline, so that the disk's drift
 * from minute to minute does not enter the ratio: variant key -> baseline key.
 */
const PAIRED: Readonly<Record<string, string>> = {
  mvrefresh: BASELINE,
  previous: BASELINE,
  empty: BASELINE,
  mvrefresh_daemon: REFRESH_BASELINE,
};

/**
 * One round's order: the cases in groups (a baseline with the variants paired with it, every other case
 * alone), the groups rotating from round to round and the order inside a group rotating too, so that no
 * case always runs first or after the same neighbour.
 */
function roundOrder(cases: readonly Case[], round: number): Case[] {
  const partnersOf = (c: Case): Case[] =>
    cases.filter((o) => o.clients === c.clients && PAIRED[o.variant.key] === c.variant.key);
  const hasBaseline = (c: Case): boolean => cases.some((b) => partnersOf(b).includes(c));
  const rotate = <T>(xs: readonly T[], by: number): T[] => {
    const k = xs.length === 0 ? 0 : by % xs.length;
    return [...xs.slice(k), ...xs.slice(0, k)];
  };
  const groups: Case[][] = [];
  for (const c of cases) {
    if (hasBaseline(c)) continue;
    groups.push(rotate([c, ...partnersOf(c)], round));
  }
  return rotate(groups, round).flat();
}

const dbName = (variant: Variant): string => `${DB_PREFIX}${variant.key}`;
const templateName = (variant: Variant): string => `${DB_PREFIX}${variant.key}_template`;

const readBenchSql = (file: string): Promise<string> => readFile(join(BENCH_DIR, file), 'utf8');

async function dropDatabase(admin: pg.Client, name: string): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
}

/** The shop, seeded once; every variant's database is a copy of it, so all start alike. */
async function createTemplate(admin: pg.Client): Promise<void> {
  await dropDatabase(admin, TEMPLATE_DB);
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(TEMPLATE_DB)}`);
  await withClient(dbUrl(TEMPLATE_DB), async (c) => {
    await c.query(shopSchema({ products: 1000, customers: 1000 }));
    // one item per order, spread like the workload's (product p ordered on day p % 300 of 2024); the
    // sequence is fresh, so order g gets id g and its item product 1 + g % 1000
    await c.query(
      `INSERT INTO orders
       SELECT nextval('order_ids'), 1 + g % 1000, date '2024-01-01' + (1 + g % 1000) % 300
         FROM generate_series(1, $1::integer) g`,
      [SEED_ORDERS],
    );
    await c.query(
      'INSERT INTO order_items SELECT order_id, 1 + order_id % 1000, 1 + order_id % 5 FROM orders',
    );
    await c.query(`REFRESH MATERIALIZED VIEW ${VIEW}`);
    await c.query('VACUUM ANALYZE');
  });
}

async function cli(bin: string, url: string, ...args: string[]): Promise<void> {
  await run(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: url } });
}

/** A variant's template: the shop with the variant's triggers; each round runs on a fresh copy of it. */
async function createVariantTemplate(admin: pg.Client, variant: Variant, previousBin: string): Promise<void> {
  const name = templateName(variant);
  await copyDatabase(admin, TEMPLATE_DB, name);
  const url = dbUrl(name);
  switch (variant.setup) {
    case 'none':
      break;
    case 'mvrefresh':
      // as a user installs it; watch leaves the view dirty (one mark), and nothing clears it but a refresh
      await cli(CLI, url, 'migrate');
      await cli(CLI, url, 'watch', VIEW);
      break;
    case 'previous':
      await cli(previousBin, url, 'migrate');
      await cli(previousBin, url, 'watch', VIEW);
      break;
    case 'article':
    case 'notify':
    case 'empty': {
      const sqlText = await readBenchSql(`${variant.setup}.sql`);
      await withClient(url, (c) => c.query(sqlText));
      break;
    }
  }
  await withClient(url, (c) => c.query('VACUUM ANALYZE'));
}

/** Replaces a database with a copy of a template (FILE_COPY from PostgreSQL 15: faster for a large seed). */
async function copyDatabase(admin: pg.Client, template: string, name: string): Promise<void> {
  await dropDatabase(admin, name);
  const { rows } = await admin.query<{ v: number }>(
    "SELECT current_setting('server_version_num')::integer AS v",
  );
  const strategy = (rows[0]?.v ?? 0) >= FILE_COPY_SINCE ? ' STRATEGY FILE_COPY' : '';
  await admin.query(
    `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)}${strategy}`,
  );
}

/** What other processes did during a round: a description, null if nothing that matters. */
function disturbance(activity: Activity, seconds: number): string | null {
  const share = DisturbanceMeter.share(activity.ticks, seconds);
  const notes = [
    ...(share >= DISTURBED_SHARE ? [`${(share * 100).toFixed(0)}% of the CPU used by others`] : []),
    ...(activity.written >= DISTURBED_BYTES_PER_SECOND * seconds
      ? [`${(activity.written / BYTES_PER_MIB).toFixed(0)} MiB written by others`]
      : []),
    ...(activity.xacts >= DISTURBED_XACTS_PER_SECOND * seconds
      ? [`${activity.xacts} transactions in other databases`]
      : []),
    ...(activity.checkpoints > 0 ? [`${activity.checkpoints} checkpoint(s)`] : []),
  ];
  return notes.length > 0 ? notes.join(', ') : null;
}

/** Calls a refresh statement at a fixed rate; stop() returns how long each call took (ms). */
async function startRefresher(url: string, statement: string): Promise<{ stop: () => Promise<number[]> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  c.on('notice', () => {}); // the article's procedure RAISEs a NOTICE per refresh
  const durations: number[] = [];
  let stopped = false;
  const loop = (async () => {
    let next = performance.now();
    while (!stopped) {
      const t0 = performance.now();
      await c.query(statement);
      durations.push(performance.now() - t0);
      next += REFRESH_PERIOD_MS;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      else next = performance.now();
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      try {
        await loop;
      } finally {
        await c.end();
      }
      return durations;
    },
  };
}

/**
 * Runs the daemon (the built CLI, as a user starts it) until stop(), which returns the durations of the
 * refreshes it reported (ms).
 */
async function startDaemon(url: string): Promise<{ stop: () => Promise<number[]> }> {
  const daemon = new DaemonProcess(url, { inheritEnv: true, settings: { MVREFRESH_LOG_LEVEL: 'info' } });
  await daemon.started();
  return {
    stop: async () => {
      const code = await daemon.stop();
      if (code !== 0) throw new Error(`the daemon exited with code ${code}`);
      return daemon.refreshes.flatMap((r) =>
        r.outcome === 'refreshed' && r.durationMs !== undefined ? [r.durationMs] : [],
      );
    },
  };
}

/** One round's pgbench run: the workload script, its per-transaction log written under logPrefix. */
function pgbenchRun(database: string, logPrefix: string, clients: number): PgbenchRun {
  return {
    database,
    clients,
    threads: THREADS,
    seconds: SECONDS,
    script: SCRIPT,
    logPrefix,
    env: SYNCHRONOUS_COMMIT ? { PGOPTIONS: `-c synchronous_commit=${SYNCHRONOUS_COMMIT}` } : {},
  };
}

interface Round {
  tps: number;
  latenciesUs: Float64Array;
  /**
   * The worst first transaction of a client: a new connection compiles PL/pgSQL functions and fills its
   * caches once, so a trigger's worst case differs there from the steady state.
   */
  firstMaxUs: number;
  /** The worst of every later transaction. */
  warmMaxUs: number;
  refreshesMs: number[];
  /** What else ran during the round, if anything that matters. */
  disturbance: string | null;
  attempts: number;
}

type PgbenchResult = Pick<Round, 'tps' | 'latenciesUs' | 'firstMaxUs' | 'warmMaxUs'>;

/** pgbench -l numbers each client's transactions from 1. */
const FIRST_TRANSACTION = 1;

/**
 * One pgbench run; the latencies come from its per-transaction log (client, transaction number, latency in
 * microseconds, ...).
 */
async function measurePgbench(database: string, clients: number): Promise<PgbenchResult> {
  const logDir = await mkdtemp(join(tmpdir(), 'mvrefresh-bench-'));
  try {
    const tps = await pgbench(pgbenchRun(database, join(logDir, 'tx'), clients));
    const latencies: number[] = [];
    let firstMaxUs = 0;
    let warmMaxUs = 0;
    for (const file of await readdir(logDir)) {
      for (const line of (await readFile(join(logDir, file), 'utf8')).split('\n')) {
        const fields = line.split(' ');
        const us = Number(fields[2]);
        if (line === '' || !Number.isFinite(us)) continue;
        latencies.push(us);
        if (Number(fields[1]) === FIRST_TRANSACTION) firstMaxUs = Math.max(firstMaxUs, us);
        else warmMaxUs = Math.max(warmMaxUs, us);
      }
    }
    return { tps, latenciesUs: Float64Array.from(latencies), firstMaxUs, warmMaxUs };
  } finally {
    await rm(logDir, { recursive: true, force: true });
  }
}

function concat(arrays: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

interface Result {
  variant: Variant;
  clients: number;
  tps: number;
  roundsTps: number[];
  p99Ms: number;
  maxMs: number;
  /** Each round's worst transaction after the clients' first: one outlier per round, compared pairwise. */
  roundsMaxMs: number[];
  /** The worst first transaction of a client, over every round. */
  firstMaxMs: number;
  refreshesMs: number[];
  disturbedRounds: number;
  repeatedRounds: number;
}

function summarize({ variant, clients }: Case, rounds: readonly Round[]): Result {
  const latencies = concat(rounds.map((r) => r.latenciesUs)).sort();
  return {
    variant,
    clients,
    tps: median(rounds.map((r) => r.tps)),
    roundsTps: rounds.map((r) => r.tps),
    p99Ms: percentile(latencies, PERCENTILE) / US_PER_MS,
    maxMs: (latencies[latencies.length - 1] ?? NaN) / US_PER_MS,
    roundsMaxMs: rounds.map((r) => r.warmMaxUs / US_PER_MS),
    firstMaxMs: Math.max(...rounds.map((r) => r.firstMaxUs)) / US_PER_MS,
    refreshesMs: rounds.flatMap((r) => r.refreshesMs),
    disturbedRounds: rounds.filter((r) => r.disturbance !== null).length,
    repeatedRounds: rounds.filter((r) => r.attempts > 1).length,
  };
}

const fixed = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '—');

/** The median of the per-round ratios: round i of a case against round i of its baseline. */
function pairedRatio(
  r: Result,
  base: Result | undefined,
  of: (x: Result) => number[] = (x) => x.roundsTps,
): number {
  if (!base) return NaN;
  const baseline = of(base);
  return median(
    of(r)
      .map((v, i) => v / (baseline[i] ?? NaN))
      .filter(Number.isFinite),
  );
}

/** Worst write latency of each paired case against its partner's, round by round. */
function worstLatencyLines(results: readonly Result[]): string[] {
  return results.flatMap((r) => {
    const partner = PAIRED[r.variant.key];
    const base = results.find((b) => b.variant.key === partner && b.clients === r.clients);
    if (!base) return [];
    const perRound = r.roundsMaxMs.map((m, i) => `${fixed(m, 1)} vs ${fixed(base.roundsMaxMs[i] ?? NaN, 1)}`);
    const lower = r.roundsMaxMs.filter((m, i) => m <= (base.roundsMaxMs[i] ?? NaN)).length;
    const ratio = pairedRatio(r, base, (x) => x.roundsMaxMs);
    return [
      `- ${r.clients} clients, ${r.variant.label} against ${base.variant.label}: ${perRound.join(', ')} ms; ` +
        `no higher in ${lower} of ${r.roundsMaxMs.length} rounds, median ratio ${fixed(ratio, 2)}; ` +
        `a client's first transaction: ${fixed(r.firstMaxMs, 1)} vs ${fixed(base.firstMaxMs, 1)} ms.`,
    ];
  });
}

function table(results: readonly Result[]): string {
  const resultOf = (key: string, clients: number) =>
    results.find((r) => r.variant.key === key && r.clients === clients);
  const lines = [
    '| clients | variant | median TPS | ratio to none | p99 ms | max ms | TPS per round | refreshes: n, median / max ms |',
    '| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |',
  ];
  for (const r of results) {
    let ratio = fixed(pairedRatio(r, resultOf(BASELINE, r.clients)), 2);
    const refreshBase = resultOf(REFRESH_BASELINE, r.clients);
    if (hasRefresher(r.variant) && r.variant.key !== REFRESH_BASELINE && refreshBase)
      ratio += ` (${fixed(pairedRatio(r, refreshBase), 2)} to none + refresh)`;
    const refreshes = hasRefresher(r.variant)
      ? `${r.refreshesMs.length}, ${fixed(median(r.refreshesMs), 0)} / ${fixed(Math.max(...r.refreshesMs), 0)}`
      : '—';
    const notes = [
      ...(r.repeatedRounds > 0 ? [`${r.repeatedRounds} repeated`] : []),
      ...(r.disturbedRounds > 0 ? [`${r.disturbedRounds} disturbed`] : []),
    ];
    const disturbed = notes.length > 0 ? ` (${notes.join(', ')})` : '';
    lines.push(
      `| ${r.clients} | ${r.variant.label} | ${fixed(r.tps, 0)} | ${ratio} | ${fixed(r.p99Ms, 1)} | ${fixed(r.maxMs, 1)} | ` +
        `${r.roundsTps.map((t) => fixed(t, 0)).join(', ')}${disturbed} | ${refreshes} |`,
    );
  }
  return lines.join('\n');
}

interface ServerInfo {
  version: string;
  synchronousCommit: string;
  sharedBuffers: string;
}

async function serverInfo(admin: pg.Client): Promise<ServerInfo> {
  const { rows } = await admin.query<ServerInfo>(
    `SELECT current_setting('server_version') AS version,
            current_setting('synchronous_commit') AS "synchronousCommit",
            current_setting('shared_buffers') AS "sharedBuffers"`,
  );
  if (!rows[0]) throw new Error('no server information');
  return rows[0];
}

function section(results: readonly Result[], server: ServerInfo, startedAt: Date): string {
  const u = new URL(ADMIN_URL);
  const options = SYNCHRONOUS_COMMIT ? [`PGOPTIONS='-c synchronous_commit=${SYNCHRONOUS_COMMIT}'`] : [];
  const command = [
    ...options,
    'pgbench',
    ...pgbenchArgs(pgbenchRun(`${DB_PREFIX}<variant>`, '$TMP/tx', CLIENTS[0] ?? 8)),
  ]
    .map((a) => (a === SCRIPT ? relative(packageRoot, SCRIPT) : a))
    .join(' ');
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  return [
    SECTION_TITLE,
    '',
    `What watching a view costs the application's writers. Measured ${startedAt.toISOString()} by`,
    '`npm run bench:write` (bench/write-path.ts) on ' +
      `${availableParallelism()} cores (${cpu}), ${fixed(totalmem() / BYTES_PER_GIB, 1)} GiB of memory,`,
    `PostgreSQL ${server.version} on ${u.hostname}:${u.port || '5432'} (synchronous_commit ${SYNCHRONOUS_COMMIT || server.synchronousCommit} for the writers, ` +
      `shared_buffers ${server.sharedBuffers}), pgbench and the server on the same machine.`,
    '',
    "The dirty-flag article's shop (demo/shop.ts) seeded with 1000 products, 1000 customers and",
    `${SEED_ORDERS} orders of one item; each variant installs its triggers in a copy of it, and each round runs`,
    'on a fresh copy of that (all rounds start alike). Each transaction writes one order and its item',
    `(bench/write.pgbench). ${ROUNDS} rounds of ${SECONDS} s per variant, interleaved (one variant at a time, the order`,
    'rotating each round; none, mvrefresh and the empty trigger run one after another, and mvrefresh + the daemon',
    'right before or after none + REFRESH, the order inside each group rotating; a CHECKPOINT before each round).',
    'A round starts once, for',
    `${QUIET_SAMPLES} s, no other process has used ${DISTURBED_SHARE * 100}% of the CPU or written ${DISTURBED_BYTES_PER_SECOND / BYTES_PER_MIB} MiB/s, no other database has run`,
    `${DISTURBED_XACTS_PER_SECOND} transactions per second and no checkpoint has run; it is run again once if any of that happened during it`,
    `("repeated"; "disturbed": still so the second time), as far as a budget of ${BUDGET_SECONDS} s for the whole run`,
    'allows. TPS: median of the rounds; ratio: median of the per-round ratios (round i against round i of the',
    'baseline); latencies: p99 and maximum over every transaction of every round',
    '(pgbench -l).',
    '',
    '- **none**: no trigger.',
    '- **mvrefresh**: `mvrefresh migrate` and `mvrefresh watch public.monthly_product_sales`; nothing refreshes the',
    '  view, so it stays dirty and every writer takes the trigger fast path (a running system between refreshes).',
    '- **0.1.0**: the same with the previous release (one trigger per view and table, UPDATE OF the columns the',
    '  view reads), installed from test/fixtures/releases.',
    "- **article**: the article's `INSERT ... ON CONFLICT DO UPDATE` statement triggers (bench/article.sql).",
    '- **notify**: a statement trigger calling `pg_notify` in every transaction (bench/notify.sql).',
    '- **an empty PL/pgSQL trigger**: statement triggers on the same tables and events that do nothing',
    '  (bench/empty.sql): what any PL/pgSQL trigger costs before its first statement, the floor for mvrefresh.',
    '- **... every 1 s**: the same, while a second connection calls the refresh once a second (fixed rate;',
    "  a refresh that overruns is followed by the next at once); the article's procedure holds the flag row",
    '  locked during the refresh.',
    '- **mvrefresh + the daemon running**: `mvrefresh run` with its defaults (target 1 s, budget 20%)',
    '  refreshes the view as the writes come: each refresh clears the marks, so writers take the clean-to-dirty',
    '  path (a mark and a notification) once per refresh; refresh durations from its log.',
    `- Clients: ${CLIENTS.join(' and ')}; the variants that refresh and the empty trigger run at ${CLIENTS[0] ?? 8} clients only (\`-c\` below).`,
    '',
    'Command of each round:',
    '',
    '```',
    command,
    '```',
    '',
    table(results),
    '',
    "Worst write latency, round by round, leaving out each client's first transaction (each round against its",
    "paired round of the baseline, run right before or after it), then the worst of the clients' first",
    'transactions: a new connection compiles a PL/pgSQL function and loads its caches once, on its first call;',
    'with a connection pool that happens once per connection.',
    '',
    ...worstLatencyLines(results),
    '',
  ].join('\n');
}

/** Keeps the run within BENCH_BUDGET_SECONDS: waiting for quiet and repeating rounds use only the slack. */
class Budget {
  private roundSeconds = 0;
  private measured = 0;

  /** @param t0 the start of the run (performance.now()) */
  constructor(
    private readonly t0: number,
    private remainingRounds: number,
  ) {}

  /** Seconds left beyond what the remaining rounds are expected to take. */
  slack(): number {
    return BUDGET_SECONDS - secondsSince(this.t0) - this.remainingRounds * this.perRound();
  }

  /** Expected seconds of one round, without waiting. */
  perRound(): number {
    return this.measured > 0 ? this.roundSeconds / this.measured : SECONDS;
  }

  /** Records the seconds an attempt took, without waiting for quiet. */
  attempted(seconds: number): void {
    this.roundSeconds += seconds;
    this.measured += 1;
  }

  done(): void {
    this.remainingRounds -= 1;
  }
}

/**
 * One round of a variant on a fresh copy of its template, after a quiet moment and a checkpoint; run
 * again once if another process used the CPU meanwhile and the budget allows.
 */
async function measure(
  admin: pg.Client,
  meter: DisturbanceMeter,
  budget: Budget,
  { variant, clients }: Case,
): Promise<Round> {
  let round: Round | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS_PER_ROUND; attempt += 1) {
    const tRound = performance.now();
    await copyDatabase(admin, templateName(variant), dbName(variant));
    await admin.query('CHECKPOINT');
    const preparation = secondsSince(tRound);
    const quiet = await waitForQuiet(meter, {
      maxSeconds: Math.min(QUIET_WAIT_SECONDS, budget.slack()),
      isQuiet: (activity, seconds) => disturbance(activity, seconds) === null,
      samples: QUIET_SAMPLES,
    });
    const tBench = performance.now();
    const monitor = startMonitor(meter);
    const url = dbUrl(dbName(variant));
    const refresher = variant.refresh
      ? await startRefresher(url, variant.refresh)
      : variant.daemon
        ? await startDaemon(url)
        : null;
    let result: PgbenchResult;
    let refreshesMs: number[] = [];
    try {
      result = await measurePgbench(dbName(variant), clients);
    } finally {
      if (refresher) refreshesMs = await refresher.stop();
    }
    const others = await monitor.stop();
    const seen = disturbance(others.activity, others.seconds);
    budget.attempted(preparation + QUIET_SAMPLES + secondsSince(tBench));
    round = {
      ...result,
      refreshesMs,
      disturbance: seen ?? (quiet ? null : 'busy just before'),
      attempts: attempt,
    };
    if (round.disturbance === null || budget.slack() < budget.perRound()) break;
  }
  budget.done();
  return round!;
}

async function main(): Promise<void> {
  const variants = selectedVariants();
  const startedAt = new Date();
  const t0 = performance.now();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const ours = [TEMPLATE_DB, ...variants.flatMap((v) => [templateName(v), dbName(v)])];
  try {
    const server = await serverInfo(admin);
    process.stderr.write(`seeding ${SEED_ORDERS} orders, creating ${variants.length} databases\n`);
    await createTemplate(admin);
    await withPreviousRelease(async (previousBin) => {
      for (const v of variants) await createVariantTemplate(admin, v, previousBin);
    });

    const meter = new DisturbanceMeter(admin, ours);
    await meter.start();
    process.stderr.write(`setup took ${secondsSince(t0).toFixed(0)} s\n`);
    const cases = selectedCases(variants);
    const rounds = new Map<string, Round[]>(cases.map((c) => [caseLabel(c), []]));
    const budget = new Budget(t0, ROUNDS * cases.length);
    for (let round = 0; round < ROUNDS; round += 1) {
      for (const c of roundOrder(cases, round)) {
        const r = await measure(admin, meter, budget, c);
        rounds.get(caseLabel(c))!.push(r);
        process.stderr.write(
          `round ${round + 1}/${ROUNDS} ${caseLabel(c)}: ${r.tps.toFixed(0)} TPS` +
            (r.attempts > 1 ? ', repeated' : '') +
            (r.disturbance !== null ? `, disturbed (${r.disturbance})` : '') +
            '\n',
        );
      }
    }
    process.stderr.write(`done in ${secondsSince(t0).toFixed(0)} s\n`);

    const results = cases.map((c) => summarize(c, rounds.get(caseLabel(c))!));
    const text = section(results, server, startedAt);
    console.log([table(results), '', ...worstLatencyLines(results)].join('\n'));
    await writeSection(SECTION_TITLE, text);
    if (RESULTS_FILE !== '-') process.stderr.write(`written to ${RESULTS_FILE}\n`);
  } finally {
    if (!KEEP_DATABASES) for (const name of ours) await dropDatabase(admin, name);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

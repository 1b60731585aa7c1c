/**
 * The soak (issue 18): the daemon as an operator runs it (`mvrefresh run`, defaults) for --minutes on a
 * private PostgreSQL cluster with production settings (autovacuum on, fsync on; dev/cluster.ts
 * starts it), --views watched views over 5 tables written at --tps transactions per second. Every
 * --sample-seconds: the daemon's RSS, heap, file descriptors and connections, the private memory of its
 * backends (RssAnon of /proc/<pid>/status: the cluster runs here), the worst staleness, the sizes of
 * mvrefresh's tables and of the catalogs that REFRESH ... CONCURRENTLY churns; refresh times from its log.
 * At the end, with the writers stopped, every view is compared with its query. Output: soak.md (a table per
 * window and the trend checks), soak.svg and soak.csv in --out (docs/ by default); --check exits 1 when a
 * check fails (the CI runs a short one). `npm run soak -- --help` lists the options.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { freePort } from '../dev/embedded.js';
import { PgCluster } from '../dev/cluster.js';
import { DaemonProcess } from './support/daemon.js';
import { serverVersion } from './support/db.js';
import { parseOptions, type SoakOptions } from './soak/options.js';
import { checks, csv, markdownTable, svg, windows } from './soak/report.js';
import { takeSample, type Sample } from './soak/sampler.js';
import { ROWS, TABLES, Writers, schemaSql, viewName, viewQuery } from './soak/workload.js';

const DB = 'soak';
/** With the writers stopped, every view must be fresh within this. */
const SETTLE_TIMEOUT_MS = 120_000;
const POLL_MS = 500;
const STATS_TIMEOUT_MS = 30_000;
const LOADED_SQL = `SELECT count(*) FILTER (WHERE n_tup_ins >= $2) = $1 AS loaded
                      FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname LIKE 'events\\_%'`;

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'soak:sampler' });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

async function setUp(cluster: PgCluster, views: number): Promise<string> {
  const admin = await connect(cluster.url());
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  const url = cluster.url(DB);
  const load = await connect(url);
  try {
    await migrate(load);
    await load.query(schemaSql(views));
  } finally {
    await load.end();
  }
  const c = await connect(url);
  try {
    // watch records each table's write counters as its baseline: the load's inserts must have reached
    // them (a session's statistics are flushed up to a second late, or at its end), or the daemon's first
    // drift check counts them as writes that fired no trigger
    const deadline = Date.now() + STATS_TIMEOUT_MS;
    for (;;) {
      const { rows } = await c.query<{ loaded: boolean }>(LOADED_SQL, [TABLES, ROWS]);
      if (rows[0]?.loaded) break;
      if (Date.now() > deadline) throw new Error('the statistics of the load never arrived');
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    for (let j = 0; j < views; j += 1) await c.query('SELECT mvrefresh.watch($1)', [viewName(j)]);
  } finally {
    await c.end();
  }
  return url;
}

/** Views whose rows differ from their query's. */
async function unequalViews(c: pg.ClientBase, views: number): Promise<string[]> {
  const out: string[] = [];
  for (let j = 0; j < views; j += 1) {
    const { rows } = await c.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ((TABLE ${viewName(j)}) EXCEPT ALL (${viewQuery(j)})) a)
            + (SELECT count(*) FROM ((${viewQuery(j)}) EXCEPT ALL (TABLE ${viewName(j)})) b) AS n`,
    );
    if (rows[0]?.n !== '0') out.push(viewName(j));
  }
  return out;
}

/** Waits until no view is dirty and all equal their queries (bounded); the views still unequal. */
async function settle(c: pg.ClientBase, views: number): Promise<string[]> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const { rows } = await c.query<{ dirty: boolean }>(
      'SELECT COALESCE(bool_or(dirty), false) AS dirty FROM mvrefresh.status',
    );
    const unequal = rows[0]?.dirty ? ['(dirty)'] : await unequalViews(c, views);
    if (unequal.length === 0 || Date.now() > deadline)
      return rows[0]?.dirty ? await unequalViews(c, views) : unequal;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface Run {
  samples: Sample[];
  daemon: DaemonProcess;
  t0: number;
  unequal: string[];
  written: number;
  serverVersion: string;
  kills: number;
}

async function soak(opts: SoakOptions): Promise<Run> {
  const cluster = await PgCluster.create({
    autovacuum: opts.autovacuum ? 'on' : 'off',
    autovacuum_naptime: `'${opts.naptime}'`,
    // production: every commit flushed
    fsync: 'on',
  });
  let daemon: DaemonProcess | undefined;
  let writers: Writers | undefined;
  let db: pg.Client | undefined;
  try {
    await cluster.start();
    const url = await setUp(cluster, opts.views);
    db = await connect(url);
    const version = await serverVersion(url);
    daemon = new DaemonProcess(url, {
      port: await freePort(),
      settings:
        opts.maxUses === undefined ? {} : { MVREFRESH_REFRESH_CONNECTION_MAX_USES: String(opts.maxUses) },
    });
    await daemon.started();
    await settle(db, opts.views);
    writers = new Writers(url, opts.tps);
    const t0 = Date.now();
    writers.start();
    const samples: Sample[] = [];
    const end = t0 + opts.minutes * 60_000;
    let nextKill = opts.killListenerMinutes > 0 ? t0 + opts.killListenerMinutes * 60_000 : Infinity;
    let kills = 0;
    for (let next = t0 + opts.sampleSeconds * 1000; next <= end + 1; next += opts.sampleSeconds * 1000) {
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      if (Date.now() >= nextKill) {
        await db.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mvrefresh:listen' AND datname = current_database()",
        );
        kills += 1;
        nextKill += opts.killListenerMinutes * 60_000;
      }
      const s = await takeSample((next - t0) / 1000, db, daemon);
      samples.push(s);
      process.stderr.write(
        `${(s.t / 60).toFixed(1)} min: ${daemon.refreshes.length} refreshes, RSS ${s.daemonRssMiB.toFixed(0)} MiB, backends ${s.backendsMiB.toFixed(0)} MiB, catalogs ${s.catalogsMiB.toFixed(1)} MiB, mvrefresh ${s.mvrefreshKiB.toFixed(0)} KiB\n`,
      );
    }
    const written = await writers.stop();
    writers = undefined;
    const unequal = await settle(db, opts.views);
    return { samples, daemon, t0, unequal, written, serverVersion: version, kills };
  } finally {
    await writers?.stop().catch(() => undefined);
    await daemon?.stop();
    await db?.end().catch(() => undefined);
    await cluster.cleanup();
  }
}

/** The first line of each warning event, with the fields that say what happened (not the listener's). */
function firstOfEach(warnings: Record<string, unknown>[]): string {
  const seen = new Map<string, Record<string, unknown>>();
  for (const w of warnings) if (!seen.has(String(w['event']))) seen.set(String(w['event']), w);
  seen.delete('listener_disconnected');
  if (seen.size === 0) return '';
  const fields = (w: Record<string, unknown>) =>
    JSON.stringify(
      Object.fromEntries(Object.entries(w).filter(([k]) => !['level', 'time', 'name', 'pid'].includes(k))),
    );
  return `\n\nFirst of each:\n\n${[...seen.values()].map((w) => `- \`${fields(w)}\``).join('\n')}`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help')) {
    console.log(
      'npm run soak -- [--minutes N] [--views N] [--tps N] [--autovacuum on|off] [--check] ... (bench/soak/options.ts)',
    );
    return;
  }
  const opts = parseOptions(argv);
  const started = new Date();
  const run = await soak(opts);
  const { samples, daemon, t0 } = run;
  const ws = windows(samples, daemon.refreshes, t0, opts.windowMinutes * 60);
  const results = checks(ws, samples, run.unequal.length, opts.refreshTolerance);
  const table = markdownTable(ws);
  // the daemon logs level labels (src/logger.ts)
  const warnings = daemon.events.filter((e) => ['warn', 'error', 'fatal'].includes(String(e['level'])));
  const byEvent = new Map<string, number>();
  for (const w of warnings) byEvent.set(String(w['event']), (byEvent.get(String(w['event'])) ?? 0) + 1);
  const lost = daemon.events
    .filter((e) => e['event'] === 'listener_disconnected')
    .map((e) => String(e['reason']));
  const back = daemon.events.filter((e) => e['event'] === 'listener_connected' && e['reconnect'] === true);
  const command = `npm run soak -- ${argv.join(' ')}`.trim();
  const text = `# Soak

\`${command}\` (${started.toISOString().slice(0, 16).replace('T', ' ')} UTC, PostgreSQL ${run.serverVersion} on a private
cluster: autovacuum ${opts.autovacuum ? 'on' : 'off'}, autovacuum_naptime ${opts.naptime}, fsync on; ${cpus().length} cores shared with other work).
The daemon at its defaults (\`mvrefresh run\`: target 1 s, budget 20%, concurrency 2${opts.maxUses === undefined ? '' : `; refreshConnectionMaxUses ${opts.maxUses}`}); ${opts.views} watched views over 5 tables of
10 000 rows, ${opts.tps} writing transactions per second (an UPDATE of one random row each; ${run.written} in all)${run.kills > 0 ? `; the LISTEN backend terminated every ${opts.killListenerMinutes} min (${run.kills} times)` : ''}.
Sampled every ${opts.sampleSeconds} s; each row is a window of the run, with the maximum of its samples (refresh
times: the REFRESH statement of each successful cycle, from the daemon's log). Memory of the backends: RssAnon
(private) of /proc/<pid>/status; catalogs: pg_class, pg_attribute, pg_depend, pg_statistic, pg_type and pg_index
with their indexes. Plot: [soak.svg](soak.svg); every sample: [soak.csv](soak.csv).

${table}

${results.map((c) => `- ${c.ok ? 'ok' : 'FAILED'}: ${c.name}: ${c.detail}`).join('\n')}

Warnings logged: ${warnings.length === 0 ? 'none' : [...byEvent].map(([e, n]) => `${e} ${n}`).join(', ')}.${firstOfEach(warnings)}${lost.length > 0 ? ` Reconnects: ${back.length}, each back after ${back.map((b) => `${String(b['downMs'])} ms`).join(', ')}; causes logged: ${[...new Set(lost)].join('; ')}.` : ''}
`;
  await mkdir(opts.out, { recursive: true });
  await writeFile(join(opts.out, 'soak.md'), text);
  await writeFile(join(opts.out, 'soak.csv'), csv(samples, daemon.refreshes, t0, opts.sampleSeconds));
  await writeFile(
    join(opts.out, 'soak.svg'),
    svg(
      samples,
      daemon.refreshes,
      t0,
      opts.sampleSeconds,
      `${command} (${started.toISOString().slice(0, 10)})`,
    ),
  );
  console.log(text);
  if (opts.check && results.some((c) => !c.ok)) process.exitCode = 1;
}

await main();

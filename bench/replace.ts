/**
 * Changing a view's definition under load (issue 26). On a private PostgreSQL cluster with production
 * settings (autovacuum on, fsync on; dev/cluster.ts starts it), a watched view whose build
 * takes tens of seconds (a GROUP BY over BENCH_ROWS events, bench/replace.sql) and two plain views over it.
 * Three phases on the same data, each under the same load: BENCH_READERS (8) readers looking up one account
 * in the view or in a dependant view in a loop, BENCH_WRITERS (8) writers inserting and updating events:
 *   (a) baseline: the load alone for BENCH_SECONDS (60);
 *   (b) `mvrefresh replace <view> --definition-file <new.sql>` (the built CLI);
 *   (c) DROP + CREATE ... WITH DATA of the same new definition, its index and its dependants, in one
 *       transaction (the usual path).
 * Per phase: reader latencies and errors, writer TPS and errors, the operation's duration. After (b), with
 * the writers stopped: the view against its new query (EXCEPT ALL both ways), before and after a refresh.
 * Output: a markdown table on stdout and in docs/benchmarks.md (BENCH_OUT).
 * BENCH_CALIBRATE=1: load, time one build of the new definition, print and stop (to choose BENCH_ROWS).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { packageRoot } from '../src/paths.js';
import type { PgCluster } from '../dev/cluster.js';
import { PRODUCTION_SETTINGS, withCluster } from './support/cluster.js';
import { connect, serverVersion, withClient } from './support/db.js';
import { numberEnv, percentile, writeSection } from './support/report.js';

const ROWS = numberEnv('BENCH_ROWS', 18_000_000);
const ACCOUNTS = numberEnv('BENCH_ACCOUNTS', 200_000);
const SECONDS = numberEnv('BENCH_SECONDS', 60);
const READERS = numberEnv('BENCH_READERS', 8);
const WRITERS = numberEnv('BENCH_WRITERS', 8);
/** Each client's pause between two statements: an application's traffic, not a CPU-bound loop. */
const PAUSE_MS = numberEnv('BENCH_PAUSE_MS', 5);
/** Load before an operation starts (connections open, caches warm), measured in no phase. */
const WARMUP_MS = 3000;
/** `replace --timeout`: how long its swap is retried. */
const SWAP_TIMEOUT = process.env['BENCH_SWAP_TIMEOUT'] ?? '3m';
const TITLE = '## Changing a view under load: `mvrefresh replace`';
const DB = 'replace_bench';
const VIEW = 'public.account_kind_totals';
const execFileP = promisify(execFile);
const SETUP_FILE = join(packageRoot, 'bench', 'replace.sql');

/** The new definition: one more aggregate and a join column, as a real change would add. */
const NEW_QUERY = `SELECT e.account_id, e.kind, a.region,
       count(*) AS events, sum(e.amount) AS total,
       count(DISTINCT date_trunc('day', e.at)) AS active_days, max(e.at) AS last_at
  FROM public.events e JOIN public.accounts a ON a.id = e.account_id
 GROUP BY e.account_id, e.kind, a.region`;
const DEPENDANTS_SQL = `
  CREATE VIEW public.account_activity AS
    SELECT account_id, sum(events) AS events, sum(total) AS total
      FROM public.account_kind_totals GROUP BY account_id;
  CREATE VIEW public.big_accounts AS
    SELECT account_id, kind, total FROM public.account_kind_totals WHERE total > 100000;`;
/**
 * Dependants first, as a hand-written migration must: `DROP MATERIALIZED VIEW ... CASCADE` takes the view's
 * lock before its dependants', and deadlocks with a reader of a dependant that waits for the view.
 */
const DROP_CREATE_SQL = `BEGIN;
  DROP VIEW public.big_accounts, public.account_activity;
  DROP MATERIALIZED VIEW ${VIEW};
  CREATE MATERIALIZED VIEW ${VIEW} AS ${NEW_QUERY} WITH DATA;
  CREATE UNIQUE INDEX account_kind_totals_key ON ${VIEW} (account_id, kind);
  ${DEPENDANTS_SQL}
  COMMIT;`;
/** Readers name their columns (a cached `SELECT *` plan fails once the columns change). */
const READS = [
  'SELECT account_id, kind, events, total FROM public.account_kind_totals WHERE account_id = $1',
  'SELECT account_id, events, total FROM public.account_activity WHERE account_id = $1',
];
const WRITE = `WITH u AS (UPDATE public.events SET amount = amount + 1 WHERE id = $1)
  INSERT INTO public.events (account_id, kind, amount, at) VALUES ($2, $3, $4, now())`;

interface Sample {
  start: number;
  ms: number;
  ok: boolean;
}

/** Clients running one statement after another (PAUSE_MS apart) until stopped; every statement timed. */
class Load {
  readonly reads: Sample[] = [];
  readonly writes: Sample[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];
  readonly errors: string[] = [];

  constructor(private readonly url: string) {}

  async start(): Promise<void> {
    const clients = await Promise.all(
      Array.from({ length: READERS + WRITERS }, async (_, i) => {
        const c = new pg.Client({ connectionString: this.url, application_name: `bench:${i}` });
        c.on('error', () => undefined);
        await c.connect();
        return c;
      }),
    );
    clients.forEach((c, i) => this.loops.push(this.loop(c, i < READERS ? 'read' : 'write', i)));
  }

  private async loop(c: pg.Client, role: 'read' | 'write', i: number): Promise<void> {
    const out = role === 'read' ? this.reads : this.writes;
    for (let n = 0; this.running; n += 1) {
      const account = 1 + Math.floor(Math.random() * ACCOUNTS);
      const start = performance.now();
      let ok = true;
      try {
        if (role === 'read') await c.query(READS[(i + n) % READS.length]!, [account]);
        else {
          const id = 1 + Math.floor(Math.random() * ROWS);
          await c.query(WRITE, [id, account, n % 4, (n % 1000) / 10]);
        }
      } catch (err) {
        ok = false;
        if (this.errors.length < 5) this.errors.push(`${role}: ${(err as Error).message}`);
      }
      out.push({ start, ms: performance.now() - start, ok });
      await new Promise((r) => setTimeout(r, PAUSE_MS));
    }
    await c.end().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

interface PhaseResult {
  name: string;
  /** The operation's duration (ms), or undefined for the baseline. */
  opMs?: number;
  opNote: string;
  reads: number;
  readErrors: number;
  p50: number;
  p99: number;
  max: number;
  /** Reads that took over a second (that waited for a lock). */
  slow: number;
  writes: number;
  writeErrors: number;
  tps: number;
  errors: string[];
}

/** Runs the load around `op` (or for SECONDS when there is none); statistics over statements started during it. */
async function phase(url: string, name: string, op?: () => Promise<string>): Promise<PhaseResult> {
  const load = new Load(url);
  await load.start();
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const t0 = performance.now();
  let opNote = '';
  try {
    opNote = op ? await op() : '';
    if (!op) await new Promise((r) => setTimeout(r, SECONDS * 1000));
  } catch (err) {
    opNote = `failed: ${(err as Error).message.split('\n')[0] ?? ''}`;
  }
  const t1 = performance.now();
  await load.stop();
  const inside = (s: Sample) => s.start >= t0 && s.start <= t1;
  const reads = load.reads.filter(inside);
  const writes = load.writes.filter(inside);
  const lat = reads.map((s) => s.ms).sort((a, b) => a - b);
  const writeErrors = writes.filter((s) => !s.ok).length;
  return {
    name,
    ...(op ? { opMs: t1 - t0 } : {}),
    opNote,
    reads: reads.length,
    readErrors: reads.filter((s) => !s.ok).length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.at(-1) ?? Number.NaN,
    slow: lat.filter((ms) => ms > 1000).length,
    writes: writes.length,
    writeErrors,
    tps: (writes.length - writeErrors) / ((t1 - t0) / 1000),
    errors: load.errors,
  };
}

/**
 * `mvrefresh replace` through the built CLI; resolves with when each of its steps started (its progress
 * lines), rejects when it fails.
 */
async function cliReplace(url: string, definitionFile: string): Promise<string> {
  const bin = join(packageRoot, 'dist', 'src', 'bin.js');
  const args = [bin, 'replace', VIEW, '--definition-file', definitionFile, '--database-url', url];
  args.push('--timeout', SWAP_TIMEOUT);
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const steps: string[] = [];
  const onLine = (line: string) => {
    out.push(line);
    const step = /^replace \S+: (.+)$/.exec(line)?.[1];
    if (step) steps.push(`${step} at ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  };
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', onLine);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`exit ${code}: ${out.slice(-3).join(' | ')}`);
  return steps.join(', ');
}

interface Check {
  /** Rows that differ between the view and its new query right after the replace. */
  afterSwap: number;
  /** Whether mvrefresh has the view marked dirty then (the writes committed since the catch-up refresh began). */
  dirty: boolean;
  afterRefresh: number;
}

/** With the writers stopped: the view against its new query, then again after a refresh. */
async function checkAfterReplace(db: pg.ClientBase): Promise<Check> {
  const afterSwap = await difference(db);
  const { rows } = await db.query<{ dirty: boolean | null }>(
    'SELECT bool_or(dirty) AS dirty FROM mvrefresh.status WHERE view_schema = $1 AND view_name = $2',
    VIEW.split('.'),
  );
  await db.query(`REFRESH MATERIALIZED VIEW CONCURRENTLY ${VIEW}`);
  return { afterSwap, dirty: rows[0]?.dirty === true, afterRefresh: await difference(db) };
}

/** Whether the built CLI knows `replace` (it is listed by --help). */
async function hasReplace(): Promise<boolean> {
  const { stdout } = await execFileP(process.execPath, [
    join(packageRoot, 'dist', 'src', 'bin.js'),
    '--help',
  ]);
  return /^\s+replace\b/m.test(stdout);
}

function notRun(name: string): PhaseResult {
  const nan = Number.NaN;
  return {
    name,
    opNote: '',
    reads: 0,
    readErrors: 0,
    p50: nan,
    p99: nan,
    max: nan,
    slow: 0,
    writes: 0,
    writeErrors: 0,
    tps: nan,
    errors: [],
  };
}

/** Rows of the view not in its new query plus rows of the query not in the view. */
async function difference(c: pg.ClientBase): Promise<number> {
  const { rows } = await c.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM ((TABLE ${VIEW}) EXCEPT ALL (${NEW_QUERY})) a)
          + (SELECT count(*) FROM ((${NEW_QUERY}) EXCEPT ALL (TABLE ${VIEW})) b) AS n`,
  );
  return Number(rows[0]!.n);
}

async function setUp(cluster: PgCluster): Promise<string> {
  await withClient(cluster.url(), (c) => c.query(`CREATE DATABASE ${DB}`));
  const url = cluster.url(DB);
  const setup = (await readFile(SETUP_FILE, 'utf8'))
    .replaceAll(':rows', String(ROWS))
    .replaceAll(':accounts', String(ACCOUNTS));
  await withClient(url, async (c) => {
    await migrate(c);
    const t0 = performance.now();
    await c.query(setup);
    await c.query(DEPENDANTS_SQL);
    await c.query('VACUUM ANALYZE');
    await c.query('SELECT mvrefresh.watch($1)', [VIEW]);
    process.stderr.write(`loaded ${ROWS} events in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  });
  return url;
}

/** Seconds of one build of `query` (CREATE TABLE AS: what a view's build does), nothing else running. */
async function buildSeconds(c: pg.ClientBase, query: string): Promise<number> {
  const t0 = performance.now();
  await c.query(`CREATE TEMP TABLE build_time AS ${query}`);
  const s = (performance.now() - t0) / 1000;
  await c.query('DROP TABLE build_time');
  return s;
}

const fmt = (n: number | undefined, digits = 1) =>
  n === undefined ? '—' : Number.isNaN(n) ? '—' : n.toFixed(digits);

function table(results: PhaseResult[]): string {
  const head = `| phase | operation s | readers: queries | reader errors | p50 ms | p99 ms | max (longest wait) ms | reads over 1 s | writer errors | writer TPS |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`;
  const rows = results.map((r) =>
    r.reads + r.writes === 0
      ? `| ${r.name} |${' — |'.repeat(9)}`
      : `| ${r.name}${r.opNote.startsWith('failed') ? ` (${r.opNote})` : ''} | ${fmt(r.opMs === undefined ? undefined : r.opMs / 1000)} | ${r.reads} | ${r.readErrors} | ${fmt(r.p50, 2)} | ${fmt(r.p99)} | ${fmt(r.max, 0)} | ${r.slow} | ${r.writeErrors} | ${fmt(r.tps, 0)} |`,
  );
  return [head, ...rows].join('\n');
}

async function main(): Promise<void> {
  const started = new Date();
  await withCluster(PRODUCTION_SETTINGS, async (cluster) => {
    const url = await setUp(cluster);
    const db = await connect(url);
    db.on('error', (err) => process.stderr.write(`bench connection: ${err.message}\n`));
    const version = await serverVersion(url);
    const build = await buildSeconds(db, NEW_QUERY);
    process.stderr.write(`one build of the new definition, no load: ${build.toFixed(1)} s\n`);
    if (process.env['BENCH_CALIBRATE'] === '1') return;
    const definitionFile = join(cluster.dir, 'new.sql');
    await writeFile(definitionFile, `${NEW_QUERY}\n`);
    const results: PhaseResult[] = [];
    results.push(await phase(url, '(a) baseline: the load alone'));
    process.stderr.write(`${table(results)}\n`);
    let check: Check | undefined;
    if (await hasReplace()) {
      const b = await phase(url, '(b) `mvrefresh replace`', () => cliReplace(url, definitionFile));
      results.push(b);
      process.stderr.write(`${table(results)}\n`);
      if (!b.opNote.startsWith('failed')) check = await checkAfterReplace(db);
    } else results.push(notRun('(b) `mvrefresh replace`: not run, the built CLI has no `replace` command'));
    results.push(
      await phase(url, '(c) DROP + CREATE ... WITH DATA in one transaction', async () => {
        await db.query(DROP_CREATE_SQL);
        return 'committed';
      }),
    );
    await db.end();
    const text = report(results, { version, started, check, build });
    console.log(text);
    await writeSection(TITLE, text);
  });
}

function report(
  results: PhaseResult[],
  r: {
    version: string;
    started: Date;
    check: Check | undefined;
    build: number;
  },
): string {
  const [a, b, c] = results;
  const ratio = a && b ? b.p99 / a.p99 : Number.NaN;
  const errors = results.flatMap((p) => p.errors.map((e) => `- ${p.name}: \`${e}\``));
  return `${TITLE}

\`npm run bench:replace\` (bench/replace.ts), ${r.started.toISOString().slice(0, 16).replace('T', ' ')} UTC, on ${cpus().length} cores
(no other work running), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, PostgreSQL ${r.version} on a private cluster (autovacuum on,
fsync on, shared_buffers 2GB, work_mem 16MB). Data (bench/replace.sql): ${ROWS.toLocaleString('en')} events of ${ACCOUNTS.toLocaleString('en')}
accounts; the watched view \`${VIEW}\` groups them by account and kind (count, sum, count of distinct days)
with a unique index; two plain views read it. One build of the new definition, with no load: ${r.build.toFixed(1)} s. The new definition adds a join column and an aggregate:
\`\`\`sql
${NEW_QUERY}
\`\`\`
Load in every phase: ${READERS} readers looking up one account (alternately in the view and in the dependant
\`account_activity\`), ${WRITERS} writers each updating one event and inserting one per transaction, every client
pausing ${PAUSE_MS} ms between statements. (a) runs ${SECONDS} s; (b) and (c) run for the operation's duration
(statements started during it). (b): \`node dist/src/bin.js replace ${VIEW} --definition-file new.sql --timeout ${SWAP_TIMEOUT} --database-url ...\`;
(c): in one transaction, \`DROP VIEW\` of the two dependants, \`DROP MATERIALIZED VIEW\`, \`CREATE MATERIALIZED VIEW ...
WITH DATA\`, the unique index and the two dependants again (\`DROP MATERIALIZED VIEW ... CASCADE\` instead deadlocks
with the readers of a dependant: it locks the view first, they lock the dependant first).

${table(results)}

- (b)'s steps (its progress lines, from its start): ${b?.opNote || '—'}.
- Reader p99 during (b) against (a): ${fmt(ratio, 2)}x (goal: at most 2x, with 0 reader and 0 writer errors).
- (c): ${c ? `${c.slow} reads over 1 s (${READERS} readers), the longest ${fmt(c.max / 1000)} s, in a transaction of ${fmt((c.opMs ?? Number.NaN) / 1000)} s` : '—'}.
- ${
    r.check
      ? `After (b), writers stopped: ${r.check.afterSwap} rows differ between the view and its new query (EXCEPT ALL
  both ways: writes committed since the catch-up refresh began, not yet refreshed into it), the view ${r.check.dirty ? 'marked dirty (the daemon, not running here, refreshes it next)' : 'not marked dirty'};
  after a \`REFRESH ... CONCURRENTLY\`: ${r.check.afterRefresh} rows differ.`
      : 'No check after (b): the replace did not run or failed.'
  }
${errors.length > 0 ? `\nFirst errors:\n\n${errors.join('\n')}\n` : ''}`;
}

await main();

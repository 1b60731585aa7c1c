/**
 * What writers pay for freshness as views pile up on one table (issue "write cost that does not grow with
 * the number of views"), and on pgbench's TPC-B tables, each variant measured next to its baseline in the
 * same round. Variants: no trigger; one empty PL/pgSQL statement trigger (the floor of any trigger);
 * mvrefresh with 1, 5 and 20 views on the table; the previous release (0.1.0, one trigger per view and
 * table, column-narrowed UPDATE OF) with 1 and 20 views, installed from the packed release kept with the
 * tests. No daemon runs: this is the write path alone. Workloads (pgbench, 8 clients):
 *  - insert: one single-row INSERT per transaction;
 *  - update-unread: one UPDATE of a column no view reads (the price of the trigger naming no column: the
 *    previous release's narrowed trigger did not fire for it);
 *  - tpcb: pgbench's built-in script on its own tables (scale 10) with three views (branches x accounts
 *    grouped, accounts filtered, history grouped by teller).
 * Also: COPY of 100 000 rows and INSERT ... SELECT call the trigger once per statement (pg_stat_user_functions).
 * Results are appended to docs/benchmarks.md (section "Write cost and the number of views").
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { packageRoot } from '../src/paths.js';
import { median, numberEnv, writeSection } from './support/report.js';
import { ADMIN_URL, dbUrl, recreateDatabase, serverVersion, withClient } from './support/db.js';
import { pgbench, pgbenchInit } from './support/pgbench.js';
import { withPreviousRelease } from './support/previous-release.js';

const run = promisify(execFile);
const SECONDS = numberEnv('BENCH_FANOUT_SECONDS', 6);
const ROUNDS = numberEnv('BENCH_FANOUT_ROUNDS', 3);
const CLIENTS = 8;
const CLI = join(packageRoot, 'dist', 'src', 'bin.js');
const DB_PREFIX = 'mvrefresh_fanout_';
const SECTION = '## Write cost and the number of views';
const COPY_ROWS = 100_000;

type Installer = 'none' | 'empty' | 'current' | 'previous';
interface Variant {
  key: string;
  label: string;
  installer: Installer;
  views: number;
}
interface Workload {
  key: 'insert' | 'update-unread' | 'tpcb';
  label: string;
  variants: Variant[];
}

const v = (key: string, label: string, installer: Installer, views: number): Variant => ({
  key,
  label,
  installer,
  views,
});
const EVENTS_VARIANTS = [
  v('none', 'no trigger', 'none', 0),
  v('empty', 'one empty PL/pgSQL trigger', 'empty', 0),
  v('cur1', 'mvrefresh, 1 view', 'current', 1),
  v('cur5', 'mvrefresh, 5 views', 'current', 5),
  v('cur20', 'mvrefresh, 20 views', 'current', 20),
  v('prev1', '0.1.0, 1 view', 'previous', 1),
  v('prev20', '0.1.0, 20 views', 'previous', 20),
];
const WORKLOADS: Workload[] = [
  { key: 'insert', label: 'single-row INSERT', variants: EVENTS_VARIANTS },
  {
    key: 'update-unread',
    label: 'UPDATE of a column no view reads',
    variants: EVENTS_VARIANTS.filter((x) => ['none', 'cur1', 'cur20', 'prev1', 'prev20'].includes(x.key)),
  },
  {
    key: 'tpcb',
    label: "pgbench's TPC-B (scale 10), three views",
    variants: [
      v('none', 'no view', 'none', 0),
      v('cur3', 'mvrefresh', 'current', 3),
      v('prev3', '0.1.0', 'previous', 3),
    ],
  },
];

const EVENTS_SQL = `CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL,
  day date NOT NULL, amount int NOT NULL, note text);
INSERT INTO events (customer, day, amount) SELECT g % 1000, date '2024-01-01' + g % 300, g % 97
  FROM generate_series(1, 100000) g;`;
/** View i of the events table: each groups by its own key, so every view is a different summary. */
const eventsView = (i: number) => `CREATE MATERIALIZED VIEW events_v${i} AS
  SELECT customer % ${i + 7} AS k, count(*) AS n, sum(amount) AS total FROM events GROUP BY 1;
  CREATE UNIQUE INDEX ON events_v${i} (k);`;
const TPCB_VIEWS = [
  `CREATE MATERIALIZED VIEW branch_totals AS SELECT b.bid, count(*) AS accounts, sum(a.abalance) AS balance
     FROM pgbench_branches b JOIN pgbench_accounts a USING (bid) GROUP BY b.bid; CREATE UNIQUE INDEX ON branch_totals (bid);`,
  `CREATE MATERIALIZED VIEW top_accounts AS SELECT aid, abalance FROM pgbench_accounts WHERE abalance > 4000;
   CREATE UNIQUE INDEX ON top_accounts (aid);`,
  `CREATE MATERIALIZED VIEW teller_activity AS SELECT tid, count(*) AS n, sum(delta) AS delta FROM pgbench_history GROUP BY tid;
   CREATE UNIQUE INDEX ON teller_activity (tid);`,
];
const TPCB_VIEW_NAMES = ['branch_totals', 'top_accounts', 'teller_activity'];
const EMPTY_TRIGGER = `CREATE FUNCTION do_nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
  CREATE TRIGGER nothing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION do_nothing();`;

const dbName = (w: Workload, variant: Variant) => `${DB_PREFIX}${w.key.replace('-', '_')}_${variant.key}`;

async function prepare(w: Workload, variant: Variant, previousBin: string): Promise<void> {
  const name = dbName(w, variant);
  const url = await recreateDatabase(name);
  if (w.key === 'tpcb') await pgbenchInit(name, 10);
  else
    await withClient(url, async (c) => {
      await c.query(EVENTS_SQL);
      await c.query('VACUUM ANALYZE events');
    });
  if (variant.installer === 'empty') await withClient(url, (c) => c.query(EMPTY_TRIGGER));
  if (variant.installer !== 'current' && variant.installer !== 'previous') return;
  const bin = variant.installer === 'current' ? CLI : previousBin;
  await run(process.execPath, [bin, 'migrate', '--database-url', url]);
  const names: string[] = [];
  await withClient(url, async (c) => {
    if (w.key === 'tpcb') {
      for (const sql of TPCB_VIEWS) await c.query(sql);
      names.push(...TPCB_VIEW_NAMES);
    } else
      for (let i = 1; i <= variant.views; i += 1) {
        await c.query(eventsView(i));
        names.push(`events_v${i}`);
      }
  });
  for (const view of names) await run(process.execPath, [bin, 'watch', view, '--database-url', url]);
  // the first transaction of the run finds every view dirty (watch marks it): start from clean tables
  await withClient(url, (c) => c.query('TRUNCATE mvrefresh.marks').then(() => c.query(TRUNCATE_TABLE_MARKS)));
}

/** Schema 5's table marks; absent in the previous release's schema. */
const TRUNCATE_TABLE_MARKS = `DO $$ BEGIN
  IF to_regclass('mvrefresh.table_marks') IS NOT NULL THEN TRUNCATE mvrefresh.table_marks; END IF; END $$`;

async function runPgbench(w: Workload, variant: Variant, scriptDir: string): Promise<number> {
  const tps = await pgbench({
    database: dbName(w, variant),
    clients: CLIENTS,
    seconds: SECONDS,
    ...(w.key === 'tpcb' ? { builtin: 'tpcb-like' } : { script: join(scriptDir, `${w.key}.pgbench`) }),
  });
  // the marks writers add between rounds would make the next round's first transactions skip
  await withClient(dbUrl(dbName(w, variant)), (c) =>
    c.query('TRUNCATE mvrefresh.marks').then(() => c.query(TRUNCATE_TABLE_MARKS)),
  ).catch(() => undefined);
  return tps;
}

/** How often the trigger function ran for one COPY and one INSERT ... SELECT of COPY_ROWS rows. */
async function bulkCalls(): Promise<string> {
  const name = `${DB_PREFIX}bulk`;
  const w = WORKLOADS[0]!;
  const variant = EVENTS_VARIANTS.find((x) => x.key === 'cur20')!;
  await prepare({ ...w, key: 'insert' }, variant, '');
  await withClient(ADMIN_URL, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(
      `ALTER DATABASE ${pg.escapeIdentifier(dbName(w, variant))} RENAME TO ${pg.escapeIdentifier(name)}`,
    );
  });
  return withClient(dbUrl(name), async (c) => {
    await c.query("SET track_functions = 'pl'");
    await c.query(
      `COPY events (customer, day, amount) FROM PROGRAM 'seq 1 ${COPY_ROWS} | sed "s/.*/&,2024-01-01,1/"' WITH (FORMAT csv)`,
    );
    await c.query(
      `INSERT INTO events (customer, day, amount) SELECT g, '2024-01-02', 1 FROM generate_series(1, ${COPY_ROWS}) g`,
    );
    await c.query('SELECT pg_stat_force_next_flush()').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1000));
    const { rows } = await c.query<{ calls: string }>(
      "SELECT COALESCE(sum(calls), 0) AS calls FROM pg_stat_user_functions WHERE schemaname = 'mvrefresh' AND funcname = 'mark_table'",
    );
    return `COPY of ${COPY_ROWS} rows then INSERT ... SELECT of ${COPY_ROWS} rows into a table 20 watched views read: ${rows[0]?.calls} calls of mvrefresh.mark_table()`;
  });
}

async function main(): Promise<void> {
  const scriptDir = await mkdtemp(join(tmpdir(), 'mvrefresh-fanout-'));
  try {
    await withPreviousRelease((previousBin) => measureAll(scriptDir, previousBin));
  } finally {
    await rm(scriptDir, { recursive: true, force: true });
    if (process.env['BENCH_KEEP'] !== '1')
      await withClient(ADMIN_URL, async (admin) => {
        const { rows } = await admin.query<{ datname: string }>(
          'SELECT datname FROM pg_database WHERE datname LIKE $1',
          [`${DB_PREFIX}%`],
        );
        for (const r of rows)
          await admin.query(`DROP DATABASE ${pg.escapeIdentifier(r.datname)} WITH (FORCE)`);
      });
  }
}

async function measureAll(scriptDir: string, previousBin: string): Promise<void> {
  await writeFile(
    join(scriptDir, 'insert.pgbench'),
    "\\set c random(1, 1000)\nINSERT INTO events (customer, day, amount) VALUES (:c, date '2024-01-01' + :c % 300, :c % 97);\n",
  );
  await writeFile(
    join(scriptDir, 'update-unread.pgbench'),
    "\\set id random(1, 100000)\nUPDATE events SET note = 'n' || :id WHERE id = :id;\n",
  );
  const lines: string[] = [];
  for (const w of WORKLOADS) {
    for (const variant of w.variants) await prepare(w, variant, previousBin);
    const tps = new Map<string, number[]>(w.variants.map((x) => [x.key, []]));
    const ratios = new Map<string, number[]>(w.variants.map((x) => [x.key, []]));
    for (let round = 0; round < ROUNDS; round += 1) {
      // the baseline first and last in turn, the others in between, so drift shows in the paired ratios
      const order = round % 2 === 0 ? w.variants : [...w.variants].reverse();
      const got = new Map<string, number>();
      for (const variant of order) got.set(variant.key, await runPgbench(w, variant, scriptDir));
      const base = got.get('none')!;
      for (const variant of w.variants) {
        tps.get(variant.key)!.push(got.get(variant.key)!);
        ratios.get(variant.key)!.push(got.get(variant.key)! / base);
      }
      process.stderr.write(
        `fanout ${w.key} round ${round + 1}: ${[...got].map(([k, t]) => `${k} ${t.toFixed(0)}`).join(', ')}\n`,
      );
    }
    lines.push(
      `### ${w.label}`,
      '',
      '| variant | median TPS | ratio to no trigger (median of rounds) | ratios per round |',
      '| --- | ---: | ---: | --- |',
    );
    for (const variant of w.variants) {
      const r = ratios.get(variant.key)!;
      lines.push(
        `| ${variant.label} | ${median(tps.get(variant.key)!).toFixed(0)} | ${median(r).toFixed(2)} | ${r.map((x) => x.toFixed(2)).join(', ')} |`,
      );
    }
    lines.push('');
  }
  lines.push(await bulkCalls(), '');
  const version = await serverVersion();
  const header = [
    SECTION,
    '',
    `${new Date().toISOString().slice(0, 10)}, PostgreSQL ${version}, \`npm run bench:fanout\`: pgbench with ${CLIENTS} clients, ${ROUNDS} rounds of ${SECONDS} s per variant, interleaved; no daemon running. Ratios pair each variant with the no-trigger run of the same round.`,
    '',
  ];
  const section = [...header, ...lines].join('\n');
  process.stdout.write(`${section}\n`);
  await writeSection(SECTION, section);
}

await main();

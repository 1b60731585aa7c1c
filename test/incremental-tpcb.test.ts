/**
 * The TPC-B bench's three views (bench/tpcb.ts) under `watch --incremental`, on pgbench's tables at a tiny
 * scale built in plain SQL as `pgbench -i` builds them, with pgbench's built-in TPC-B script run as SQL
 * statements by a few concurrent clients. Which views go incremental, what each apply does (its kind and
 * number of keys), and that every view equals its query after the writers' rounds. docs/incremental-projects.md
 * (TPC-B) explains branch_totals: every transaction updates a pgbench_branches row that it groups by.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { mulberry32 } from './support/random.js';

const db = useTestDatabase('incremental_tpcb');

/** pgbench's scale: branches; 10 tellers and 100 000 accounts per branch. */
const SCALE = 2;
const TELLERS = 10;
const ACCOUNTS = 100_000;
const CLIENTS = 4;
const PER_CLIENT = 50;
const ROUNDS = 3;

/** As in bench/tpcb.ts, with its unique indexes. */
const VIEWS: Record<string, { sql: string; key: string }> = {
  branch_totals: {
    sql: `SELECT b.bid, b.bbalance, count(a.aid) AS accounts, sum(a.abalance) AS account_balance
            FROM pgbench_branches b JOIN pgbench_accounts a ON a.bid = b.bid GROUP BY b.bid, b.bbalance`,
    key: 'bid',
  },
  top_accounts: { sql: 'SELECT aid, bid, abalance FROM pgbench_accounts WHERE abalance > 4000', key: 'aid' },
  teller_activity: {
    sql: `SELECT tid, count(*) AS transactions, sum(delta) AS total_delta, max(mtime) AS last_at
            FROM pgbench_history GROUP BY tid`,
    key: 'tid',
  },
};

/** pgbench -i's tables (src/bin/pgbench/pgbench.c initCreateTables, initGenerateDataServerSide, initCreatePKeys). */
const PGBENCH_INIT = `
  CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
  CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
  CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
  CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);
  INSERT INTO pgbench_branches (bid, bbalance) SELECT bid, 0 FROM generate_series(1, ${SCALE}) AS bid;
  INSERT INTO pgbench_tellers (tid, bid, tbalance)
    SELECT tid, (tid - 1) / ${TELLERS} + 1, 0 FROM generate_series(1, ${TELLERS * SCALE}) AS tid;
  INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
    SELECT aid, (aid - 1) / ${ACCOUNTS} + 1, 0, '' FROM generate_series(1, ${ACCOUNTS * SCALE}) AS aid;
  ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
  ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
  ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);`;

/**
 * pgbench's built-in "tpcb-like" script, its \set lines drawn by a seeded generator. As in pgbench, the
 * account is drawn from all accounts, not from the branch's: a transaction changes the groups of up to two
 * branches of branch_totals. `onlyBranch` draws the account, teller and branch from one branch.
 */
async function tpcb(c: pg.Client, r: () => number, onlyBranch?: number): Promise<void> {
  const pick = (n: number) => 1 + Math.floor(r() * n);
  const aid =
    onlyBranch === undefined ? pick(ACCOUNTS * SCALE) : (onlyBranch - 1) * ACCOUNTS + pick(ACCOUNTS);
  const bid = onlyBranch ?? pick(SCALE);
  const tid = onlyBranch === undefined ? pick(TELLERS * SCALE) : (onlyBranch - 1) * TELLERS + pick(TELLERS);
  const delta = pick(10_001) - 5001;
  await c.query('BEGIN');
  await c.query('UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', [delta, aid]);
  await c.query('SELECT abalance FROM pgbench_accounts WHERE aid = $1', [aid]);
  await c.query('UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2', [delta, tid]);
  await c.query('UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2', [delta, bid]);
  await c.query(
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)',
    [tid, bid, aid, delta],
  );
  await c.query('END');
}

const rng = mulberry32;

/** CLIENTS connections, each running `count` transactions concurrently with the others. */
async function writers(seed: number, count: number, onlyBranch?: number): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      return c;
    }),
  );
  try {
    await Promise.all(
      clients.map(async (c, i) => {
        const r = rng(seed * 100 + i);
        for (let n = 0; n < count; n += 1) await tpcb(c, r, onlyBranch);
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

interface Applied {
  view: string;
  kind: string;
  keys: number;
  ms: number;
}

async function applied(): Promise<Map<string, Applied>> {
  const { rows } = await db.sql.query<Applied>(
    `SELECT v.view_name AS view, i.last_apply_kind AS kind, i.last_apply_keys AS keys, i.last_apply_ms AS ms
       FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id`,
  );
  return new Map(rows.map((r) => [r.view, r]));
}

async function difference(view: string): Promise<[number, number]> {
  const def = VIEWS[view]!.sql;
  const n = async (sql: string) => Number((await db.sql.query<{ n: string }>(sql)).rows[0]!.n);
  return [
    await n(`SELECT count(*) AS n FROM (TABLE ${view} EXCEPT ALL SELECT * FROM (${def}) q) a`),
    await n(`SELECT count(*) AS n FROM (SELECT * FROM (${def}) q EXCEPT ALL TABLE ${view}) b`),
  ];
}

describe('TPC-B views under watch --incremental', () => {
  const report: string[] = [];
  /** The slowest apply of branch_totals in the rounds, and one evaluation of its whole definition. */
  let branchApplyMs = 0;
  let branchFullMs = Infinity;

  it('takes all three views: branch_totals (a join grouped by the branch), top_accounts (a filter), teller_activity (a grouping)', async () => {
    await db.sql.query(PGBENCH_INIT);
    // a statement of its own: VACUUM cannot run in the implicit transaction of a multi-statement query
    await db.sql.query('VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history');
    for (const [name, v] of Object.entries(VIEWS)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${v.sql}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (${v.key})`);
    }
    for (const name of Object.keys(VIEWS)) {
      const p = runCli(['watch', name, '--incremental'], { DATABASE_URL: db.url });
      const { code } = await p.exit;
      report.push(`${name}: ${p.text().trim()}`);
      expect(p.text(), name).toContain('is incremental');
      expect(code).toBe(0);
    }
  });

  it('stays equal to its query after rounds of TPC-B transactions from concurrent clients, each applied by keys', async () => {
    for (let round = 1; round <= ROUNDS; round += 1) {
      await writers(round, PER_CLIENT);
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      const a = await applied();
      for (const view of Object.keys(VIEWS)) {
        expect([view, round, ...(await difference(view))]).toEqual([view, round, 0, 0]);
        const x = a.get(view)!;
        report.push(
          `round ${round} (${CLIENTS * PER_CLIENT} transactions): ${view} ${x.kind}, ${x.keys} keys, ${x.ms.toFixed(1)} ms`,
        );
        expect(x.kind, view).toBe('keys');
        if (view === 'branch_totals') branchApplyMs = Math.max(branchApplyMs, x.ms);
      }
      // every transaction updates one branch: each apply recomputes every branch that had one (here all)
      expect(a.get('branch_totals')!.keys).toBe(SCALE);
    }
  });

  it('recomputes only the branches that had a transaction: one branch written, one group recomputed', async () => {
    await writers(ROUNDS + 1, PER_CLIENT / 5, 1);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const a = await applied();
    for (const view of Object.keys(VIEWS)) expect([view, ...(await difference(view))]).toEqual([view, 0, 0]);
    expect(a.get('branch_totals')!.keys).toBe(1);
    report.push(
      `branch 1 only: branch_totals ${a.get('branch_totals')!.keys} key, ${a.get('branch_totals')!.ms.toFixed(1)} ms`,
    );
    // what recomputing one branch costs next to evaluating the whole definition (a REFRESH's query)
    const t0 = performance.now();
    await db.sql.query(`SELECT count(*) FROM (${VIEWS['branch_totals']!.sql}) q`);
    branchFullMs = performance.now() - t0;
    report.push(`branch_totals: its whole definition evaluated in ${(performance.now() - t0).toFixed(1)} ms`);
  });

  // The key query of pgbench_branches once joined every logged branch row with all accounts of its branch
  // before its DISTINCT (a 40 000 000-row merge join for 2 keys at scale 2, 6-9 s, where the whole
  // definition takes 0.1-0.15 s). A key made of the changed table's columns alone is listed from its batch
  // alone: the stored key query reads no other table. (Times are reported above, never asserted here.)
  it("lists branch_totals' keys for a branch change from the branch batch alone, without joining the accounts", async () => {
    const { rows } = await db.sql.query<{ q: string }>(
      `SELECT i.statements -> 'keys' ->> 'pgbench_branches'::regclass::oid::text AS q
         FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
        WHERE v.view_name = 'branch_totals'`,
    );
    const q = rows[0]!.q;
    expect(q).toMatch(/mvr_b_\d+/);
    expect(q).not.toMatch(/pgbench_accounts/);
    report.push(
      `branch_totals: slowest apply ${branchApplyMs.toFixed(1)} ms, whole definition ${branchFullMs.toFixed(1)} ms`,
    );
  });

  afterAll(() => {
    process.stdout.write(`${report.join('\n')}\n`);
  });
});

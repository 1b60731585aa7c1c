import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../src/db/sql.js';
import { watchIncremental } from '../../src/incremental/commands.js';
import { useTestDatabase } from '../support/db.js';
import { Gate, gatedRoutine, routineText, type Gap, type GatedRoutine } from '../support/gates.js';
import { checkViews, skipsWithoutMark, uncovered, type CheckedView } from '../support/model-invariants.js';

/**
 * Deterministic interleavings inside the write-side protocol: a refresh cycle stopped at every gap of its
 * first transaction (tx1 of routines/refresh_view.sql: claim, clear, consume the table marks) while
 * writers write, and a writer's mark step stopped at every gap of mvrefresh.mark_relid() (steps 2 and 3 of
 * routines/mark_table.sql, the first body of that file, which gatedRoutine() gates; every trigger that marks,
 * mvrefresh_mark or a capture trigger of an incremental view's source, runs it after its inlined step 1)
 * while whole cycles run, on a table of two full-refresh views (trigger mvrefresh_mark) and on a table of an
 * incremental and a full-refresh view (mvrefresh_mark beside its capture triggers). The cycles stopped in
 * tx1 run on the first table, and on a table that only two incremental views read, whose writes mark
 * nothing (their views are due from its log, routines/capture_logs.sql). Two views share each table, so
 * that a cycle of one consumes marks (or log rows) the other needs and writers remember marks that a cycle
 * deletes. After every step: the invariants of test/support/model-invariants.ts
 * (no writer skips for a mark that is gone; every view that differs from its query is dirty); at the end,
 * cycles run until nothing is due, and both views must equal their queries.
 */
const db = useTestDatabase('interleavings');
const GATE_KEY_BASE = 0x6d76_0000;
const TX1 = gatedRoutine('refresh_view', GATE_KEY_BASE, /^ {4}COMMIT;/);
/** Gates mark_relid(), the first body of mark_table.sql, which every trigger that marks calls. */
const TRIGGER = gatedRoutine('mark_table', GATE_KEY_BASE + 1000);
if (!/FUNCTION mvrefresh\.mark_relid\(/.test(TRIGGER.sql.slice(0, TRIGGER.sql.indexOf('$$'))))
  throw new Error(
    'mark_table.sql no longer starts with mark_relid(): gate the body that holds steps 2 and 3',
  );
/** A writer still running is given up on after this long: its xid is kept and the view stays due. */
const WAIT_TIMEOUT_MS = 100;
const CONVERGE_ROUNDS = 10;
const VIEWS: CheckedView[] = [
  { name: 'v_count', query: 'SELECT k, count(*) AS n FROM t GROUP BY k' },
  { name: 'v_sum', query: 'SELECT k, sum(n)::bigint AS total FROM t GROUP BY k' },
];
const WRITE = 'INSERT INTO t VALUES (1 + (random() * 4)::int, 1 + (random() * 9)::int)';

/**
 * A table, its writers' statement, and the two views reading it, cycled in this order. T: two full-refresh
 * views, so the writers' trigger is mvrefresh_mark; U: an incremental and a full-refresh view, so the
 * capture trigger logs the row and mvrefresh_mark marks the table; L: two incremental views, so the capture
 * trigger logs the row and nothing marks the table.
 */
interface Subject {
  table: string;
  write: string;
  views: CheckedView[];
}
const T: Subject = { table: 't', write: WRITE, views: [VIEWS[1]!, VIEWS[0]!] };
const U: Subject = {
  table: 'u',
  write: 'INSERT INTO u VALUES (1 + (random() * 4)::int, 1 + (random() * 9)::int)',
  views: [
    { name: 'u_inc', query: 'SELECT k, count(*) AS n, sum(n)::bigint AS total FROM u GROUP BY k' },
    { name: 'u_max', query: 'SELECT k, max(n) AS top FROM u GROUP BY k' },
  ],
};
const L: Subject = {
  table: 'l',
  write: 'INSERT INTO l VALUES (1 + (random() * 4)::int, 1 + (random() * 9)::int)',
  views: [
    { name: 'l_sum', query: 'SELECT k, count(*) AS n, sum(n)::bigint AS total FROM l GROUP BY k' },
    { name: 'l_max', query: 'SELECT k, max(n) AS top FROM l GROUP BY k' },
  ],
};

let ids: Record<string, number> = {};
const stats = { cases: 0, reached: 0, writes: 0 };

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url, application_name: 'mvrefresh:test-writer' });
  await c.connect();
  return c;
}

function cycle(c: pg.ClientBase, view: string): Promise<pg.QueryResult<{ outcome: string }>> {
  return c.query<{ outcome: string }>(sql.refreshView, [ids[view], false, WAIT_TIMEOUT_MS, 5000, 100, 500]);
}

/** Both invariants now; `step` names where the case was. */
async function checkInvariants(
  where: string,
  writers: pg.Client[],
  step: string,
  subject: Subject = T,
): Promise<void> {
  for (const [i, w] of writers.entries()) {
    const bare = await skipsWithoutMark(w, [subject.table]);
    expect(
      bare,
      `${where}: after ${step}, writer ${i + 1} would skip its next write of ${bare.join(', ')} with no mark`,
    ).toEqual([]);
  }
  const lost = uncovered(await checkViews(db.sql, subject.views));
  expect(lost, `${where}: after ${step}, differ from their query and are not dirty`).toEqual([]);
}

/** Cycles of both views until nothing is due, then both must equal their queries. */
async function converge(where: string, c: pg.Client, subject: Subject = T): Promise<void> {
  for (let round = 0; round < CONVERGE_ROUNDS; round += 1) {
    const outcomes: string[] = [];
    for (const v of subject.views) outcomes.push((await cycle(c, v.name)).rows[0]!.outcome);
    if (outcomes.every((o) => o === 'clean')) break;
  }
  const end = await checkViews(db.sql, subject.views);
  expect(
    end.filter((v) => v.differs).map((v) => v.view),
    `${where}: once no cycle has anything to do, differ from their query`,
  ).toEqual([]);
}

/** Writers of a case: new sessions, so that no memo carries over from another case. */
async function withWriters(n: number, fn: (ws: pg.Client[]) => Promise<void>): Promise<void> {
  const ws: pg.Client[] = [];
  try {
    for (let i = 0; i < n; i += 1) ws.push(await client());
    await fn(ws);
  } finally {
    for (const w of ws) await w.end().catch(() => undefined);
  }
}

async function write(c: pg.Client, subject: Subject = T): Promise<void> {
  await c.query(subject.write);
  stats.writes += 1;
}

type Pre = 'clean' | 'marked';
type TxScript = 'remembered' | 'long and repeatable read';

/**
 * A cycle of the subject's first view stopped at `gap` of tx1; meanwhile, by script: W2 commits a write (a
 * table mark, or a log row) and W1 writes (finds that mark, remembers it), or W3 opens a READ COMMITTED
 * writer and W1 commits a REPEATABLE READ one. Then the cycle goes on, W3 commits, W1 and W2 write again.
 */
async function tx1Case(gap: Gap, pre: Pre, script: TxScript, subject: Subject): Promise<void> {
  const where = `tx1 gap ${gap.key - GATE_KEY_BASE} (after "${gap.after}", refresh_view.sql:${gap.line}), table ${subject.table}, ${pre}, ${script}`;
  const [first, second] = subject.views;
  stats.cases += 1;
  await withWriters(3, async ([w1, w2, w3]) => {
    const runner = await client();
    try {
      if (pre === 'marked') await write(w2!, subject);
      const gate = await Gate.hold(db.url, gap.key);
      let running: Promise<unknown>;
      try {
        running = cycle(runner, first!.name);
        // a gap on a path this state does not take is the interleaving without a gate: nothing new
        if (!(await gate.reached(running))) {
          await running;
          return;
        }
        stats.reached += 1;
        if (script === 'remembered') {
          await write(w2!, subject);
          await write(w1!, subject);
        } else {
          await w3!.query('BEGIN');
          await write(w3!, subject);
          await w1!.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          await w1!.query(`SELECT count(*) FROM ${subject.table}`);
          await write(w1!, subject);
          await w1!.query('COMMIT');
        }
      } finally {
        await gate.end();
      }
      await running;
      await checkInvariants(where, script === 'remembered' ? [w1!, w2!] : [w1!], 'the cycle', subject);
      if (script !== 'remembered') {
        await w3!.query('COMMIT');
        await checkInvariants(where, [w1!, w3!], 'the long writer committed', subject);
      }
      await write(w1!, subject);
      await write(w2!, subject);
      await checkInvariants(where, [w1!, w2!], 'writing again', subject);
      await cycle(runner, second!.name);
      await checkInvariants(where, [w1!, w2!], 'a cycle of the other view', subject);
      await converge(where, runner, subject);
    } finally {
      await runner.end();
    }
  });
}

type TriggerPre = 'clean' | 'marked' | 'remembered';

/**
 * W1's write stopped at `gap` of its trigger while a cycle of each view runs to its end (giving up on W1
 * after the wait timeout); then W1's statement goes on and commits, and W1 writes again.
 */
async function triggerCase(
  gap: Gap,
  pre: TriggerPre,
  isolation: 'read committed' | 'repeatable read',
  subject: Subject,
) {
  const where = `trigger gap ${gap.key - GATE_KEY_BASE - 1000} (after "${gap.after}", mark_table.sql:${gap.line}), table ${subject.table}, ${pre}, ${isolation}`;
  stats.cases += 1;
  await withWriters(2, async ([w1, w2]) => {
    const runner = await client();
    try {
      if (pre !== 'clean') await write(w2!, subject);
      if (pre === 'remembered') await write(w1!, subject);
      const gate = await Gate.hold(db.url, gap.key);
      let writing: Promise<unknown>;
      try {
        await w1!.query(`BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`);
        writing = w1!.query(subject.write);
        if (!(await gate.reached(writing))) {
          await writing;
          await w1!.query('ROLLBACK');
          return;
        }
        stats.reached += 1;
        for (const v of subject.views) await cycle(runner, v.name);
        // no writer is probed while the gate is closed: the probe runs the trigger, and would stop there
        await checkInvariants(where, [], 'cycles while the trigger waits', subject);
      } finally {
        await gate.end();
      }
      await writing;
      await w1!.query('COMMIT');
      stats.writes += 1;
      await checkInvariants(where, [w1!, w2!], 'the writer committed', subject);
      await write(w1!, subject);
      await checkInvariants(where, [w1!, w2!], 'writing again', subject);
      await converge(where, runner, subject);
    } finally {
      await runner.end();
    }
  });
}

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE t (k int NOT NULL, n int NOT NULL);
    INSERT INTO t SELECT g % 5, g FROM generate_series(1, 20) g;
    CREATE MATERIALIZED VIEW v_count AS ${VIEWS[0]!.query};
    CREATE UNIQUE INDEX ON v_count (k);
    CREATE MATERIALIZED VIEW v_sum AS ${VIEWS[1]!.query};
    CREATE UNIQUE INDEX ON v_sum (k);
    SELECT mvrefresh.watch('v_count');
    SELECT mvrefresh.watch('v_sum');
    CREATE TABLE u (k int NOT NULL, n int NOT NULL);
    INSERT INTO u SELECT g % 5, g FROM generate_series(1, 20) g;
    CREATE MATERIALIZED VIEW u_inc AS ${U.views[0]!.query};
    CREATE UNIQUE INDEX ON u_inc (k);
    CREATE MATERIALIZED VIEW u_max AS ${U.views[1]!.query};
    CREATE UNIQUE INDEX ON u_max (k);
    SELECT mvrefresh.watch('u_max');
    CREATE TABLE l (k int NOT NULL, n int NOT NULL);
    INSERT INTO l SELECT g % 5, g FROM generate_series(1, 20) g;
    CREATE MATERIALIZED VIEW l_sum AS ${L.views[0]!.query};
    CREATE UNIQUE INDEX ON l_sum (k);
    CREATE MATERIALIZED VIEW l_max AS ${L.views[1]!.query};
    CREATE UNIQUE INDEX ON l_max (k);`);
  const admin = await client();
  try {
    for (const v of ['u_inc', 'l_sum', 'l_max']) await watchIncremental(admin, v, {});
  } finally {
    await admin.end();
  }
  const marking = await db.sql.query<{ rel: string; tgname: string }>(
    `SELECT tgrelid::regclass::text AS rel, tgname FROM pg_trigger
      WHERE tgrelid IN ('u'::regclass, 'l'::regclass) AND tgname IN ('mvrefresh_mark', 'mvrefresh_cap_ins')
      ORDER BY 1, 2`,
  );
  expect(marking.rows.map((r) => `${r.rel}.${r.tgname}`)).toEqual([
    'l.mvrefresh_cap_ins',
    'u.mvrefresh_cap_ins',
    'u.mvrefresh_mark',
  ]);
  const { rows } = await db.sql.query<{ view_name: string; id: number }>(
    'SELECT view_name, id FROM mvrefresh.view_state',
  );
  ids = Object.fromEntries(rows.map((r) => [r.view_name, r.id]));
  const c = await client();
  try {
    await converge('setup', c);
    await converge('setup', c, U);
    await converge('setup', c, L);
  } finally {
    await c.end();
  }
});

afterAll(() => {
  console.info(
    `interleavings: ${TX1.gaps.length} gaps of refresh_view's tx1, ${TRIGGER.gaps.length} of mark_relid; ${stats.cases} cases, ${stats.reached} stopped at their gap, ${stats.writes} committed writes checked`,
  );
});

/** The describe block's tests run the gated routine in place of `file`'s, which is put back after them. */
function gatedWhileDescribed(file: string, gated: GatedRoutine): void {
  beforeAll(async () => {
    await db.sql.query(gated.sql);
  });
  afterAll(async () => {
    await db.sql.query(routineText(file));
  });
}

describe("a refresh cycle stopped at every gap of refresh_view's first transaction", () => {
  gatedWhileDescribed('refresh_view', TX1);
  for (const gap of TX1.gaps)
    for (const pre of ['clean', 'marked'] as const)
      for (const script of ['remembered', 'long and repeatable read'] as const)
        for (const subject of [T, L])
          it(`gap ${gap.key - GATE_KEY_BASE} after "${gap.after}" (line ${gap.line}), table ${subject.table} ${pre}: writers ${script}: no write lost`, () =>
            tx1Case(gap, pre, script, subject));
});

describe("a writer's mark step stopped at every gap of mark_relid", () => {
  gatedWhileDescribed('mark_table', TRIGGER);
  for (const gap of TRIGGER.gaps)
    for (const pre of ['clean', 'marked', 'remembered'] as const)
      for (const isolation of ['read committed', 'repeatable read'] as const)
        for (const subject of [T, U])
          it(`gap ${gap.key - GATE_KEY_BASE - 1000} after "${gap.after}" (line ${gap.line}), table ${subject.table} ${pre}, writer at ${isolation}: no write lost`, () =>
            triggerCase(gap, pre, isolation, subject));
});

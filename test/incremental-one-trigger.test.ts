import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../src/commands/doctor.js';
import { MARK_MEMO_HIT, markMemoHitOf } from '../src/db/protocol.js';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { unqualifiedNames } from './support/sql-tokens.js';

/**
 * A source of an incremental view fires one trigger of ours per writing statement: its capture trigger logs
 * the rows and runs the mark step (routines/mark_table.sql), and the table keeps no mvrefresh_mark, also
 * when a full-refresh view reads it too; the mark trigger comes back when the last incremental view
 * reading it is turned back into a materialized view.
 */
const db = useTestDatabase('one_trigger');
const INC = 'SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g';
const FULL = 'SELECT g, max(v) AS top FROM t GROUP BY g';

async function cli(args: string[]) {
  const p = runCli(args, { DATABASE_URL: db.url });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

async function triggersOn(table: string): Promise<string[]> {
  const { rows } = await db.sql.query<{ tgname: string }>(
    `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'mvrefresh%' ORDER BY 1`,
    [table],
  );
  return rows.map((r) => r.tgname);
}

async function differs(view: string, query: string): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM (TABLE ${view} EXCEPT ALL SELECT * FROM (${query}) q) a)
          + (SELECT count(*) FROM (SELECT * FROM (${query}) q EXCEPT ALL TABLE ${view}) b) AS n`,
  );
  return Number(rows[0]!.n);
}

let writer: pg.Client;
const notes: string[] = [];

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE t (id serial PRIMARY KEY, g int NOT NULL, v int NOT NULL);
    INSERT INTO t (g, v) SELECT g % 4, g FROM generate_series(1, 40) g;
    CREATE MATERIALIZED VIEW inc AS ${INC};
    CREATE UNIQUE INDEX ON inc (g);
    CREATE MATERIALIZED VIEW full_v AS ${FULL};
    CREATE UNIQUE INDEX ON full_v (g);`);
  expect((await cli(['watch', 'full_v'])).code).toBe(0);
  const r = await cli(['watch', 'inc', '--incremental']);
  expect(r.text).toContain('is incremental');
  expect(r.code).toBe(0);
  writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  await writer.query("SET track_functions = 'all'");
  await db.sql.query('LISTEN mvrefresh');
  db.sql.on('notification', (n) => notes.push(n.payload ?? ''));
});

afterAll(async () => {
  await writer.end();
});

/** Calls of the trigger functions of schema mvrefresh this session has not reported yet (track_functions). */
async function pendingCalls(): Promise<Map<string, number>> {
  const { rows } = await writer.query<{ name: string; calls: string }>(
    `SELECT f.funcname AS name, f.calls FROM pg_stat_xact_user_functions f JOIN pg_proc p ON p.oid = f.funcid
      WHERE f.schemaname = 'mvrefresh' AND p.prorettype = 'trigger'::regtype`,
  );
  return new Map(rows.map((r) => [r.name.replace(/^cap_\d+_/, 'cap_'), Number(r.calls)]));
}

/**
 * The trigger functions of schema mvrefresh the statement ran, with their calls: the session's pending
 * counts (reported at most once a second, between transactions) before and after it, in one transaction.
 */
async function triggerCalls(statement: string): Promise<Record<string, number>> {
  await writer.query('BEGIN');
  try {
    const before = await pendingCalls();
    await writer.query(statement);
    const after = await pendingCalls();
    await writer.query('COMMIT');
    return Object.fromEntries(
      [...after].map(([name, n]) => [name, n - (before.get(name) ?? 0)] as const).filter(([, n]) => n > 0),
    );
  } catch (err) {
    await writer.query('ROLLBACK');
    throw err;
  }
}

/** What doctor says about triggers (the 'triggers' check). */
async function doctorTriggers(): Promise<string[]> {
  return (await doctor(db.sql)).filter((f) => f.check === 'triggers').map((f) => f.message);
}

describe('a source of an incremental view', () => {
  it('a writing statement on a source of an incremental view fires exactly one mvrefresh trigger, and is still marked, notified and applied', async () => {
    // read by an incremental and a full-refresh view: capture triggers only
    expect(await triggersOn('t')).toEqual([
      'mvrefresh_cap_del',
      'mvrefresh_cap_ins',
      'mvrefresh_cap_trunc',
      'mvrefresh_cap_upd',
    ]);
    const relid = (await db.sql.query<{ oid: string }>("SELECT 't'::regclass::oid AS oid")).rows[0]!.oid;
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    notes.length = 0;
    for (const [statement, fn] of [
      ['INSERT INTO t (g, v) VALUES (1, 1000)', 'cap_ins'],
      ['UPDATE t SET v = v + 1 WHERE id = 3', 'cap_upd'],
      ['DELETE FROM t WHERE id = 5', 'cap_del'],
    ] as const) {
      expect(await triggerCalls(statement), statement).toEqual({ [fn]: 1 });
      // marked and notified: the table's mark, consumed by a cycle of each view reading it
      expect(
        (await db.sql.query('SELECT FROM mvrefresh.table_marks WHERE relid = $1', [relid])).rowCount,
        statement,
      ).toBe(1);
      await db.sql.query('SELECT 1'); // delivers the notifications received so far
      expect(notes, statement).toContain(`t${relid}`);
      notes.length = 0;
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      expect(await differs('inc', INC), statement).toBe(0);
      expect(await differs('full_v', FULL), statement).toBe(0);
    }
    // at REPEATABLE READ, and with mvrefresh.notify = off (two-phase commit): marked, not notified
    await writer.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await writer.query("SET LOCAL mvrefresh.notify = 'off'");
    await writer.query('INSERT INTO t (g, v) VALUES (2, 7)');
    await writer.query('COMMIT');
    await db.sql.query('SELECT 1');
    expect(notes).toEqual([]);
    expect((await db.sql.query('SELECT FROM mvrefresh.table_marks WHERE relid = $1', [relid])).rowCount).toBe(
      1,
    );
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    expect(await differs('full_v', FULL)).toBe(0);
    // TRUNCATE: the capture's truncate trigger marks too
    expect(await triggerCalls('TRUNCATE t')).toEqual({ capture_truncate: 1 });
    expect((await db.sql.query('SELECT FROM mvrefresh.table_marks WHERE relid = $1', [relid])).rowCount).toBe(
      1,
    );
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    expect(await differs('full_v', FULL)).toBe(0);
  });

  it('has capture functions that, like mark_table, qualify every name and have no SET clause', async () => {
    const { rows } = await db.sql.query<{ name: string; config: string[] | null; src: string }>(
      `SELECT proname AS name, proconfig AS config, prosrc AS src FROM pg_proc
        WHERE pronamespace = 'mvrefresh'::regnamespace AND proname ~ '^cap_[0-9]+_'`,
    );
    expect(rows.length).toBe(3);
    for (const r of rows) {
      expect(r.config, r.name).toBeNull();
      expect(r.src, r.name).toContain('mvrefresh.mark_relid(TG_RELID)');
      // `SELECT -1, ...`: the parser folds a minus before a literal into the constant, no operator is looked up
      expect(
        unqualifiedNames(r.src).filter((f) => f !== 'operator -'),
        r.name,
      ).toEqual([]);
    }
  });

  it("skips the mark step on the memo mark_relid() left, with its table's oid written out in the check; migration 18 writes it out in capture functions generated before", async () => {
    const relid = (await db.sql.query<{ oid: string }>("SELECT 't'::regclass::oid AS oid")).rows[0]!.oid;
    const captureSources = async () =>
      (
        await db.sql.query<{ name: string; src: string }>(
          `SELECT proname AS name, prosrc AS src FROM pg_proc
            WHERE pronamespace = 'mvrefresh'::regnamespace AND proname ~ '^cap_[0-9]+_' ORDER BY 1`,
        )
      ).rows;
    /** Calls of mark_relid() by one INSERT of the writer, in a transaction of its own. */
    const markCalls = async () => {
      const calls = async () =>
        Number(
          (
            await writer.query<{ n: string | null }>(
              `SELECT (SELECT f.calls FROM pg_stat_xact_user_functions f
                        WHERE f.funcid = 'mvrefresh.mark_relid(oid)'::regprocedure) AS n`,
            )
          ).rows[0]!.n ?? 0,
        );
      await writer.query('BEGIN');
      const before = await calls();
      await writer.query('INSERT INTO t (g, v) VALUES (3, 1)');
      const after = await calls();
      await writer.query('COMMIT');
      return after - before;
    };
    /** From a table without marks: the first write marks, the second finds the mark and remembers it, the third skips. */
    const memoRounds = async () => {
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      return [await markCalls(), await markCalls(), await markCalls()];
    };
    for (const f of await captureSources()) {
      expect(f.src, f.name).toContain(markMemoHitOf(relid));
      expect(f.src, f.name).not.toContain(MARK_MEMO_HIT);
    }
    expect(await memoRounds()).toEqual([1, 1, 0]);
    // as version 17 generated them: the check built from TG_RELID
    for (const f of await captureSources())
      await db.sql.query(
        `CREATE OR REPLACE FUNCTION mvrefresh.${pg.escapeIdentifier(f.name)}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS ${pg.escapeLiteral(f.src.replace(markMemoHitOf(relid), MARK_MEMO_HIT))}`,
      );
    for (const f of await captureSources()) expect(f.src, f.name).toContain(MARK_MEMO_HIT);
    expect(await memoRounds()).toEqual([1, 1, 0]);
    await db.sql.query('DELETE FROM mvrefresh.migrations WHERE version = 18');
    expect((await cli(['migrate'])).code).toBe(0);
    for (const f of await captureSources()) {
      expect(f.src, f.name).toContain(markMemoHitOf(relid));
      expect(f.src, f.name).not.toContain(MARK_MEMO_HIT);
    }
    expect(await memoRounds()).toEqual([1, 1, 0]);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
  });

  it('gets mvrefresh_mark back when its last incremental view is turned back while a full view still reads it', async () => {
    expect((await cli(['unwatch', 'inc'])).code).toBe(0);
    expect(await triggersOn('t')).toEqual(['mvrefresh_mark']);
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (3, 2000)')).toEqual({ mark_table: 1 });
    const marks = await db.sql.query("SELECT FROM mvrefresh.table_marks WHERE relid = 't'::regclass");
    expect(marks.rowCount).toBe(1);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('full_v', FULL)).toBe(0);
    // incremental again: the capture triggers replace it
    expect((await cli(['watch', 'inc', '--incremental'])).code).toBe(0);
    expect(await triggersOn('t')).not.toContain('mvrefresh_mark');
    const drift = await db.sql.query<{ changes: string[] }>(
      'SELECT changes FROM mvrefresh.check_drift(1000)',
    );
    expect(drift.rows.flatMap((r) => r.changes)).toEqual([]);
  });
  it('is named by doctor when a capture trigger is disabled, not for lacking mvrefresh_mark while its capture triggers mark it', async () => {
    expect(await doctorTriggers()).toEqual([]);
    await db.sql.query('ALTER TABLE t DISABLE TRIGGER mvrefresh_cap_upd');
    expect(await doctorTriggers()).toEqual([
      expect.stringMatching(/^t: capture trigger mvrefresh_cap_upd disabled: the writes it misses/),
    ]);
    await db.sql.query('ALTER TABLE t ENABLE ALWAYS TRIGGER mvrefresh_cap_upd');
    expect(await doctorTriggers()).toEqual([]);
  });

  it('keeps mvrefresh_mark beside capture functions that do not mark (generated by an older version) until the capture is generated again', async () => {
    await db.sql.query(`DO $$
      DECLARE f text := pg_catalog.format('cap_%s_ins', 't'::regclass::oid); src text;
      BEGIN
        SELECT prosrc INTO src FROM pg_proc WHERE proname = f AND pronamespace = 'mvrefresh'::regnamespace;
        EXECUTE format('CREATE OR REPLACE FUNCTION mvrefresh.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS %L',
                       f, replace(src, 'PERFORM mvrefresh.mark_relid(TG_RELID);', ''));
      END $$`);
    await db.sql.query('SELECT mvrefresh.sync_table_triggers()');
    expect(await triggersOn('t')).toContain('mvrefresh_mark');
    // the table depends on mvrefresh_mark again: doctor names it when it is disabled
    await db.sql.query('ALTER TABLE t DISABLE TRIGGER mvrefresh_mark');
    expect(await doctorTriggers()).toEqual([expect.stringMatching(/^t: trigger mvrefresh_mark disabled/)]);
    await db.sql.query('ALTER TABLE t ENABLE ALWAYS TRIGGER mvrefresh_mark');
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (1, 3000)')).toEqual({
      cap_ins: 1,
      mark_table: 1,
    });
    expect((await cli(['unwatch', 'inc'])).code).toBe(0);
    expect((await cli(['watch', 'inc', '--incremental'])).code).toBe(0);
    expect(await triggersOn('t')).not.toContain('mvrefresh_mark');
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (1, 3001)')).toEqual({ cap_ins: 1 });
  });

  it('gets mvrefresh_mark back from the drift check when a capture trigger is dropped, and reports it', async () => {
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('DROP TRIGGER mvrefresh_cap_ins ON t');
    const drift = await db.sql.query<{ changes: string[] }>(
      'SELECT changes FROM mvrefresh.check_drift(1000)',
    );
    expect(drift.rows.flatMap((r) => r.changes)).toContain(
      'capture trigger mvrefresh_cap_ins missing (run watch --incremental again) on public.t',
    );
    expect(await triggersOn('t')).toContain('mvrefresh_mark');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (2, 4000)')).toEqual({ mark_table: 1 });
    expect(
      (await db.sql.query("SELECT FROM mvrefresh.table_marks WHERE relid = 't'::regclass")).rowCount,
    ).toBe(1);
    // the drift check's next run finds the write fired no capture trigger, so the view recomputes in full
    await db.sql.query('SELECT mvrefresh.check_drift(1000)');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    expect(await differs('full_v', FULL)).toBe(0);
  });
});

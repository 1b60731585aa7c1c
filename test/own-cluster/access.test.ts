import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantsSql, resolveTargets } from '../../src/commands/grants.js';
import { migrate } from '../../src/db/migrate.js';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { INSERT_ORDER, SHOP_SQL } from '../support/shop.js';
import { reportRecovery } from '../support/recovery.js';
import { delay, waitFor } from '../support/wait.js';
import { PgCluster } from '../../dev/cluster.js';
import {
  connect,
  daemonConnections,
  eventsOf,
  exec,
  expectQuietAndFresh,
  QUALIFIED_VIEW,
  readyz,
  VIEW,
} from './harness.js';

/** The daemon runs as its own non-superuser role, set up as `mvrefresh grants` says; the shop has its owner. */
const DATABASE = 'access';
const OWNER = 'mvr_shop_owner';
const DAEMON = 'mvr_daemon';
/** Runs migrate and watch (`mvrefresh grants --ddl-role`). */
const DDL = 'mvr_ddl';
/** How long each fault lasts: several capped reconnect and retry periods of the daemon below. */
const FAULT_MS = 5000;
const DAEMON_SETTINGS = {
  maxStalenessMs: 100,
  backoffBaseMs: 200,
  backoffMaxMs: 2000,
  'listener.reconnectMaxDelayMs': 1000,
};
/**
 * Refresh attempts of one view in FAULT_MS with a 200 ms base doubling to a 2 s cap (each delay jittered
 * to [cap / 2, cap]): about 7; a tight loop would make hundreds.
 */
const MAX_ATTEMPTS = 12;

let cluster: PgCluster;
let url: string;
let daemonUrl: string;
let sqlClient: pg.Client | undefined;
let d: TestDaemon | undefined;

async function admin(): Promise<pg.Client> {
  sqlClient ??= await connect(url);
  return sqlClient;
}

/** Terminates every connection of the daemon's role to the shop database. */
async function terminateDaemonConnections(): Promise<number> {
  const { rows } = await (
    await admin()
  ).query<{ n: string }>(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE usename = $1 AND datname = $2`,
    [DAEMON, DATABASE],
  );
  return Number(rows[0]!.n);
}

/** A committed write on a connection that does not depend on the database's defaults. */
async function write(): Promise<void> {
  const c = await connect(url, 'mvrefresh:faults-writer');
  try {
    await c.query('SET default_transaction_read_only = off');
    await c.query(INSERT_ORDER);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  cluster = await PgCluster.create();
  await cluster.start();
  await exec(cluster.url(), `CREATE DATABASE ${DATABASE}`);
  url = cluster.url(DATABASE);
  daemonUrl = cluster.url(DATABASE, DAEMON);
  const c = await admin();
  await c.query(`CREATE ROLE ${OWNER} LOGIN`);
  await c.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${OWNER}`);
  await c.query(`SET ROLE ${OWNER}`);
  await c.query(SHOP_SQL);
  await c.query('RESET ROLE');
  await c.query(
    grantsSql({ role: DAEMON, ddlRole: DDL, ownerRole: OWNER, targets: await resolveTargets(c, [VIEW]) }),
  );
  const { rows } = await c.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [
    DAEMON,
  ]);
  expect(rows[0]?.rolsuper).toBe(false);
  const asDdl = await connect(cluster.url(DATABASE, DDL));
  try {
    await migrate(asDdl);
    await asDdl.query('SELECT mvrefresh.watch($1)', [VIEW]);
  } finally {
    await asDdl.end();
  }
  d = await startDaemon(daemonUrl, DAEMON_SETTINGS);
  await waitFor('the listener', () => d!.running.listener.connected);
});

afterAll(async () => {
  await d?.stop();
  await sqlClient?.end().catch(() => undefined);
  await cluster?.cleanup();
});

describe('connections refused, then allowed again', () => {
  it('ALTER ROLE ... CONNECTION LIMIT 0: the daemon waits, then recovers and reflects the writes made meanwhile', async () => {
    const daemon = d!;
    await expectQuietAndFresh(await admin(), daemon);
    const mark = daemon.logs.length;
    await (await admin()).query(`ALTER ROLE ${DAEMON} CONNECTION LIMIT 0`);
    expect(await terminateDaemonConnections()).toBeGreaterThan(0);
    await write();
    await waitFor('/readyz to answer 503', async () => (await readyz(daemon.running.port)) === 503);
    await delay(FAULT_MS);
    await write();
    // the refusal is named in the log, and nothing got through
    expect(
      eventsOf(daemon.logs, 'listener_disconnected', mark).some((e) =>
        /too many connections for role/.test(String(e['reason'])),
      ),
    ).toBe(true);
    expect(await daemonConnections(await admin())).toEqual([]);

    await (await admin()).query(`ALTER ROLE ${DAEMON} CONNECTION LIMIT -1`);
    const allowed = Date.now();
    await waitFor('listener_connected with reconnect: true', () =>
      eventsOf(daemon.logs, 'listener_connected', mark).find((e) => e['reconnect'] === true),
    );
    await waitFor('/readyz to answer 200', async () => (await readyz(daemon.running.port)) === 200);
    await expectQuietAndFresh(await admin(), daemon);
    reportRecovery('connections refused (CONNECTION LIMIT 0), from allowed again', allowed);
  });

  it('ALTER DATABASE ... ALLOW_CONNECTIONS false: writers already connected keep writing; the daemon catches up', async () => {
    const daemon = d!;
    await expectQuietAndFresh(await admin(), daemon);
    const mark = daemon.logs.length;
    const writer = await connect(url, 'mvrefresh:faults-writer');
    const postgres = await connect(cluster.url());
    try {
      await postgres.query(`ALTER DATABASE ${DATABASE} ALLOW_CONNECTIONS false`);
      expect(await terminateDaemonConnections()).toBeGreaterThan(0);
      await writer.query(INSERT_ORDER);
      await delay(FAULT_MS);
      await writer.query(INSERT_ORDER);
      expect(
        eventsOf(daemon.logs, 'listener_disconnected', mark).some((e) =>
          /not currently accepting connections/.test(String(e['reason'])),
        ),
      ).toBe(true);
      expect(await readyz(daemon.running.port)).toBe(503);
      await postgres.query(`ALTER DATABASE ${DATABASE} ALLOW_CONNECTIONS true`);
    } finally {
      await writer.end();
      await postgres.query(`ALTER DATABASE ${DATABASE} ALLOW_CONNECTIONS true`).catch(() => undefined);
      await postgres.end();
    }
    await waitFor('listener_connected with reconnect: true', () =>
      eventsOf(daemon.logs, 'listener_connected', mark).find((e) => e['reconnect'] === true),
    );
    await expectQuietAndFresh(await admin(), daemon);
  });
});

describe('a read-only database', () => {
  it('fails refreshes with 25006 and backoff, stays up, and recovers when the database is writable again', async () => {
    const daemon = d!;
    await expectQuietAndFresh(await admin(), daemon);
    await (await admin()).query(`ALTER DATABASE ${DATABASE} SET default_transaction_read_only = on`);
    expect(await terminateDaemonConnections()).toBeGreaterThan(0);
    await waitFor('the listener to be back', () => daemon.running.listener.connected);
    const since = Date.now();
    await write();
    const first = await waitFor('a refresh to fail with 25006', () =>
      daemon.reports.find((r) => r.at >= since && r.view === QUALIFIED_VIEW && r.sqlstate === '25006'),
    );
    expect(first.error).toMatch(/read-only transaction/);
    await delay(FAULT_MS);
    const attempts = daemon.reports.filter((r) => r.at >= since && r.view === QUALIFIED_VIEW);
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeLessThanOrEqual(MAX_ATTEMPTS);
    expect(attempts.every((r) => r.sqlstate === '25006')).toBe(true);
    for (let i = 1; i < attempts.length; i += 1)
      expect(attempts[i]!.at - attempts[i - 1]!.at).toBeGreaterThanOrEqual(DAEMON_SETTINGS.backoffBaseMs / 2);
    // the log says what failed and why
    const logged = eventsOf(daemon.logs, 'refresh').filter(
      (e) => e['view'] === QUALIFIED_VIEW && e['sqlstate'] === '25006',
    );
    expect(logged.length).toBeGreaterThan(0);
    expect(logged[0]).toMatchObject({ level: 'warn', error: expect.stringMatching(/read-only/) });
    // the daemon is up, listening, and the view is still due
    expect(daemon.running.listener.connected).toBe(true);
    expect((await readyz(daemon.running.port)) > 0).toBe(true);
    const { rows } = await (
      await admin()
    ).query<{ dirty: boolean }>('SELECT dirty FROM mvrefresh.status WHERE view = $1', [QUALIFIED_VIEW]);
    expect(rows[0]?.dirty).toBe(true);

    await (await admin()).query(`ALTER DATABASE ${DATABASE} RESET default_transaction_read_only`);
    const writable = Date.now();
    await expectQuietAndFresh(await admin(), daemon);
    reportRecovery('database read-only (default_transaction_read_only), from writable again', writable);
  });
});

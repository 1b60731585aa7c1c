import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon } from '../support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches } from '../support/shop.js';
import { reportRecovery } from '../support/recovery.js';
import { waitFor } from '../support/wait.js';
import { PgCluster } from '../../dev/cluster.js';
import {
  connect,
  createShop,
  daemonConnections,
  exec,
  expectQuietAndFresh,
  killCli,
  spawnCli,
  statusOf,
  VIEW,
  type Proc,
} from './harness.js';

/** A view whose refresh takes this long (an uncorrelated pg_sleep subquery runs once per refresh). */
const SLOW_SECONDS = 2;
const SLOW_VIEW = 'slow_sales';
const SLOW_QUERY = `SELECT q.*, 1 AS slow FROM (${SHOP_QUERY}) q`;
const VIEWS = [
  { name: VIEW, query: SHOP_QUERY },
  { name: SLOW_VIEW, query: SLOW_QUERY },
];
const DAEMON_SETTINGS = { maxStalenessMs: 100, backoffBaseMs: 200, backoffMaxMs: 2000 };

let cluster: PgCluster;
let url: string;
let sqlClient: pg.Client | undefined;

async function admin(): Promise<pg.Client> {
  sqlClient ??= await connect(url);
  return sqlClient;
}

async function dropAdmin(): Promise<void> {
  const c = sqlClient;
  sqlClient = undefined;
  await c?.end().catch(() => undefined);
}

interface Gen {
  started_gen: string;
  done_gen: string;
  marks: string;
}

async function generations(): Promise<Gen> {
  const { rows } = await (
    await admin()
  ).query<Gen>(
    `SELECT s.started_gen, s.done_gen, (SELECT count(*) FROM mvrefresh.marks m WHERE m.view_id = s.id) AS marks
       FROM mvrefresh.view_state s WHERE s.view_name = $1`,
    [SLOW_VIEW],
  );
  return rows[0]!;
}

/** Waits until the daemon's REFRESH of the slow view runs: it holds the view's ExclusiveLock. */
async function slowRefreshRunning(): Promise<void> {
  await waitFor('the REFRESH of the slow view to be running', async () => {
    const { rows } = await (
      await admin()
    ).query(
      `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE a.application_name = 'mvrefresh:refresh' AND l.locktype = 'relation' AND l.relation = $1::regclass
          AND l.mode = 'ExclusiveLock' AND l.granted`,
      [SLOW_VIEW],
    );
    return rows.length > 0;
  });
}

/**
 * The cycle's clear commits asynchronously: waits until the WAL writer has flushed it, so that a crash keeps
 * it (a clear lost in a crash brings its marks back, which a sweep finds as well, but not this path).
 */
async function clearFlushed(): Promise<void> {
  const { rows } = await (
    await admin()
  ).query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  await waitFor('the clear to be flushed to the WAL', async () => {
    const flushed = await (
      await admin()
    ).query<{ done: boolean }>('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done', [rows[0]!.lsn]);
    return flushed.rows[0]!.done;
  });
}

beforeAll(async () => {
  cluster = await PgCluster.create();
  await cluster.start();
  url = await createShop(cluster, 'midrefresh');
  await exec(
    url,
    `CREATE MATERIALIZED VIEW ${SLOW_VIEW} AS
       SELECT q.*, (SELECT 1 FROM pg_sleep(${SLOW_SECONDS})) AS slow FROM (${SHOP_QUERY}) q;
     CREATE UNIQUE INDEX ON ${SLOW_VIEW} (sales_month, product_id);
     SELECT mvrefresh.watch('${SLOW_VIEW}');`,
  );
});

afterAll(async () => {
  await dropAdmin();
  await cluster?.cleanup();
});

describe('a database restart in the middle of a refresh', () => {
  it('(-m fast, the same daemon) leaves an unfinished cycle that the daemon finishes after the restart', async () => {
    const d = await startDaemon(url, DAEMON_SETTINGS);
    try {
      await expectQuietAndFresh(await admin(), d, VIEWS);
      await exec(url, INSERT_ORDER);
      await slowRefreshRunning();
      // the cycle's first transaction has committed: the marks are gone, only the generation says "dirty"
      const during = await generations();
      expect(BigInt(during.started_gen)).toBeGreaterThan(BigInt(during.done_gen));
      expect(during.marks).toBe('0');
      await dropAdmin();
      const restartedAt = Date.now();
      await cluster.restart('fast');
      await expectQuietAndFresh(await admin(), d, VIEWS);
      reportRecovery('restart (-m fast) during a refresh, from the stop', restartedAt);
      const after = await generations();
      expect(after.done_gen).toBe(after.started_gen);
      expect(
        d.reports.some(
          (r) => r.view === `public.${SLOW_VIEW}` && r.at > restartedAt && r.outcome === 'refreshed',
        ),
      ).toBe(true);
    } finally {
      await d.stop();
    }
    await waitFor(
      'no daemon connection left',
      async () => (await daemonConnections(await admin())).length === 0,
    );
  });

  it('(-m immediate, daemon gone too) is found by the next daemon through the unfinished generation alone', async () => {
    const d = await startDaemon(url, DAEMON_SETTINGS);
    let stopped = false;
    try {
      await expectQuietAndFresh(await admin(), d, VIEWS);
      await exec(url, INSERT_ORDER);
      await slowRefreshRunning();
      await clearFlushed();
      await dropAdmin();
      await cluster.stop('immediate');
      await d.stop();
      stopped = true;
    } finally {
      if (!stopped) await d.stop();
    }
    await cluster.start();

    // crash recovery kept tx1 (marks deleted, started_gen incremented) and lost the REFRESH
    const state = await generations();
    expect(BigInt(state.started_gen)).toBeGreaterThan(BigInt(state.done_gen));
    expect(state.marks).toBe('0');
    expect(await statusOf(await admin(), `public.${SLOW_VIEW}`)).toMatchObject({
      dirty: true,
      cycle_unfinished: true,
    });
    expect(await viewMatches(await admin(), SLOW_VIEW, SLOW_QUERY)).toBe(false);

    const next = await startDaemon(url, DAEMON_SETTINGS);
    try {
      await expectQuietAndFresh(await admin(), next, VIEWS);
      expect(
        next.reports.find((r) => r.view === `public.${SLOW_VIEW}` && r.outcome === 'refreshed'),
      ).toMatchObject({ cause: 'sweep' });
    } finally {
      await next.stop();
    }
    await waitFor(
      'no daemon connection left',
      async () => (await daemonConnections(await admin())).length === 0,
    );
  });

  it('(-m immediate, `mvrefresh run`) does not take the daemon down: it stays up and finishes the cycle', async () => {
    let p: Proc | undefined = spawnCli(['run'], {
      DATABASE_URL: url,
      MVREFRESH_MAX_STALENESS: '100ms',
      MVREFRESH_BACKOFF_BASE_MS: '200',
      MVREFRESH_BACKOFF_MAX_MS: '2000',
      MVREFRESH_RECONNECT_MAX_DELAY_MS: '1000',
    });
    const proc = p;
    try {
      await waitFor('the daemon to listen', () =>
        proc.events().some((e) => e['event'] === 'listener_connected'),
      );
      await expectQuietAndFresh(await admin(), undefined, VIEWS);
      await exec(url, INSERT_ORDER);
      await slowRefreshRunning();
      await dropAdmin();
      await cluster.stop('immediate');
      const startedAt = Date.now();
      await cluster.start();
      const reconnected = () =>
        proc.events().some((e) => e['event'] === 'listener_connected' && e['reconnect'] === true);
      await waitFor('the daemon to reconnect (or exit)', () => reconnected() || proc.child.exitCode !== null);
      expect(proc.events().filter((e) => e['event'] === 'fatal')).toEqual([]);
      expect(proc.child.exitCode).toBe(null);
      await expectQuietAndFresh(await admin(), undefined, VIEWS);
      reportRecovery('crash (-m immediate) during a refresh, `mvrefresh run`, from the start', startedAt);
      expect(proc.child.exitCode).toBe(null);
      proc.child.kill('SIGTERM');
      expect((await proc.exit).code).toBe(0);
      p = undefined;
    } finally {
      await killCli(p);
    }
    await waitFor(
      'no daemon connection left',
      async () => (await daemonConnections(await admin())).length === 0,
    );
  });
});

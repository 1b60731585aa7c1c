import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { TcpProxy, viaProxy } from './support/proxy.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches, SHOP_VIEW, watchShop } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';
import { reportRecovery } from './support/recovery.js';

const db = useTestDatabase('faults_listener');
const VIEW = SHOP_VIEW;
/** Heartbeat settings of these tests: a half-open connection must be found within their sum. */
const HEARTBEAT_INTERVAL_MS = 1000;
const HEARTBEAT_TIMEOUT_MS = 500;
const KILL_PERIOD_MS = 200;
const KILL_DURATION_MS = 30_000;

async function quietAndFresh(d: TestDaemon) {
  await waitFor('the view to equal its query', () => viewMatches(db.sql, VIEW, SHOP_QUERY));
  await waitFor('no dirty view and an idle queue', async () => {
    const { rows } = await db.sql.query<{ n: string }>(
      'SELECT count(*) AS n FROM mvrefresh.status WHERE dirty',
    );
    return rows[0]?.n === '0' && d.running.refresher.active === 0 && d.running.refresher.queued === 0;
  });
  expect(await viewMatches(db.sql, VIEW, SHOP_QUERY)).toBe(true);
}

async function listenConnections(): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'mvrefresh:listen' AND datname = current_database()",
  );
  return Number(rows[0]!.n);
}

/** Writes orders on its own connection until stopped; returns how many it wrote. */
function writer(url: string) {
  let stop = false;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    let n = 0;
    try {
      while (!stop) {
        await c.query(INSERT_ORDER);
        n += 1;
        await delay(10);
      }
    } finally {
      await c.end();
    }
    return n;
  })();
  return { stop: () => ((stop = true), done) };
}

beforeAll(async () => {
  await watchShop(db.sql);
});

describe('the LISTEN connection under faults', () => {
  let d: TestDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
  });

  it(
    'survives its backend being terminated every 200 ms for 30 s while writes go on, and leaks no connection',
    { timeout: KILL_DURATION_MS + 60_000 },
    async () => {
      d = await startDaemon(db.url, {
        'listener.heartbeatIntervalMs': HEARTBEAT_INTERVAL_MS,
        'listener.heartbeatTimeoutMs': HEARTBEAT_TIMEOUT_MS,
        'listener.reconnectMaxDelayMs': 500,
      });
      const w = writer(db.url);
      const killer = new pg.Client({ connectionString: db.url });
      await killer.connect();
      let kills = 0;
      try {
        const end = Date.now() + KILL_DURATION_MS;
        while (Date.now() < end) {
          const { rows } = await killer.query<{ killed: boolean }>(
            `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
              WHERE application_name = 'mvrefresh:listen' AND datname = current_database()`,
          );
          kills += rows.filter((r) => r.killed).length;
          await delay(KILL_PERIOD_MS);
        }
      } finally {
        await killer.end();
      }
      const faultEnded = Date.now();
      const written = await w.stop();
      expect(kills).toBeGreaterThan(10);
      expect(written).toBeGreaterThan(0);
      await waitFor('the listener to be back', () => d!.running.listener.connected);
      await quietAndFresh(d);
      reportRecovery('LISTEN backend terminated every 200 ms for 30 s (from the last kill)', faultEnded);
      await waitFor('exactly one LISTEN connection', async () => (await listenConnections()) === 1);
      await d.stop();
      d = undefined;
      await waitFor('no LISTEN connection after stop', async () => (await listenConnections()) === 0);
    },
  );

  it("logs the server's reason (57P01) when its LISTEN backend is terminated, and the reconnect as a success", async () => {
    const daemon = await startDaemon(db.url, { 'listener.reconnectMaxDelayMs': 500 });
    try {
      await waitFor('the listener', () => daemon.running.listener.connected);
      await db.sql.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'mvrefresh:listen' AND datname = current_database()`,
      );
      await waitFor('the reconnect', () =>
        daemon.logs.some((l) => l['event'] === 'listener_connected' && l['reconnect'] === true),
      );
      const lost = daemon.logs.filter((l) => l['event'] === 'listener_disconnected');
      expect(lost).toHaveLength(1);
      expect(lost[0]).toMatchObject({ sqlstate: '57P01', msg: 'LISTEN connection lost; reconnecting' });
      expect(String(lost[0]?.['reason'])).toMatch(
        /^connection lost: terminating connection due to administrator command/,
      );
      expect(String(lost[0]?.['reason'])).not.toMatch(/failed/i);
      const back = daemon.logs.find((l) => l['event'] === 'listener_connected' && l['reconnect'] === true);
      expect(back?.['msg']).toBe('LISTEN connection re-established');
      expect(back?.['downMs']).toEqual(expect.any(Number));
    } finally {
      await daemon.stop();
    }
  });

  it('finds a half-open LISTEN connection within the heartbeat timeout and reflects writes made meanwhile', async () => {
    const target = new URL(db.url);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
    const port = await proxy.start();
    const daemon = await startDaemon(viaProxy(db.url, port), {
      'listener.heartbeatIntervalMs': HEARTBEAT_INTERVAL_MS,
      'listener.heartbeatTimeoutMs': HEARTBEAT_TIMEOUT_MS,
      'listener.reconnectMaxDelayMs': 500,
    });
    try {
      await waitFor('the listener', () => daemon.running.listener.connected);
      await quietAndFresh(daemon);
      const lostBefore = daemon.logs.filter((l) => l['event'] === 'listener_disconnected').length;
      proxy.setMode('blackhole');
      const t0 = Date.now();
      await db.exec(INSERT_ORDER);
      await waitFor('the dead connection to be noticed', () => !daemon.running.listener.connected);
      const detectedMs = Date.now() - t0;
      expect(detectedMs).toBeLessThan(HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS + 2000);
      const lost = daemon.logs.filter((l) => l['event'] === 'listener_disconnected').slice(lostBefore);
      expect(String(lost[0]?.['reason'])).toMatch(/heartbeat/);
      await db.exec(INSERT_ORDER);
      proxy.setMode('reset');
      proxy.setMode('pass');
      await waitFor('the listener to reconnect', () => daemon.running.listener.connected, {
        timeoutMs: 45_000,
      });
      await quietAndFresh(daemon);
      reportRecovery('half-open LISTEN connection (from the blackhole, detection included)', t0);
    } finally {
      await daemon.stop();
      await proxy.stop();
    }
  });

  it('keeps its LISTEN connection when the role has an idle_session_timeout shorter than the heartbeat', async (ctx) => {
    const { rows } = await db.sql.query<{ v: number }>(
      "SELECT current_setting('server_version_num')::int AS v",
    );
    if (rows[0]!.v < 140000) ctx.skip();
    const role = `mvr_idle_${process.pid}`;
    await db.sql.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'idle-role-pw'`);
    await db.sql.query(`ALTER ROLE ${role} SET idle_session_timeout = '300ms'`);
    const u = new URL(db.url);
    u.username = role;
    u.password = 'idle-role-pw';
    const daemon = await startDaemon(u.toString(), {
      'listener.heartbeatIntervalMs': 2000,
      'listener.heartbeatTimeoutMs': 1000,
    });
    try {
      await waitFor('the listener', () => daemon.running.listener.connected);
      await delay(3000);
      await db.exec(INSERT_ORDER);
      await quietAndFresh(daemon);
      expect(daemon.running.listener.reconnectCount).toBe(0);
    } finally {
      await daemon.stop();
      await db.sql.query(`DROP ROLE ${role}`);
    }
  });
});

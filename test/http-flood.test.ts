import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type Proc } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { flood, halfOpen, halfOpenFlood, probe, type FloodResult } from './support/flood.js';
import { INSERT_ORDER, SHOP_SQL } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';

const db = useTestDatabase('http_flood');
let p: Proc;
let port: number;

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
});

async function startFloodTarget() {
  // one address, 1 000 keep-alive clients: the bulk gate is what this measures, not the per-client cap
  p = runCli(['run'], {
    DATABASE_URL: db.url,
    MVREFRESH_DEBOUNCE_MS: '50',
    MVREFRESH_MAX_WAIT_MS: '200',
    MVREFRESH_HTTP_MAX_CONNECTIONS_PER_CLIENT: '1000',
  });
  const started = await waitFor('the daemon to start', () =>
    p.events().find((e) => e['event'] === 'started'),
  );
  port = started['port'] as number;
}

const refreshed = () =>
  p.events().filter((e) => e['event'] === 'refresh' && e['outcome'] === 'refreshed').length;

describe('an HTTP flood', () => {
  beforeAll(startFloodTarget);
  afterAll(async () => {
    p?.child.kill('SIGTERM');
    await p?.exit;
  });

  it('leaves /readyz answering 200 to at least 95% of probes while views keep refreshing', async () => {
    const before = refreshed();
    const flooding = flood(port, 1000, 10, ['/views', '/metrics']);
    await delay(1000);
    const probes: number[] = [];
    const latencies: number[] = [];
    for (let i = 0; i < 24; i += 1) {
      await db.sql.query(INSERT_ORDER);
      const t = Date.now();
      // another client than the flooder: one address may hold every connection here (see below)
      probes.push(await probe(port, '/readyz', 1000, '127.0.0.2'));
      latencies.push(Date.now() - t);
      await delay(250);
    }
    const result = await flooding;
    console.log(JSON.stringify({ probes, latencies, ...result }));
    expect(probes.filter((s) => s === 200).length / probes.length).toBeGreaterThanOrEqual(0.95);
    expect(refreshed()).toBeGreaterThan(before);
    // the flood costs no warning per request, and the sweep keeps its connections
    const warnings = p.events().filter((e) => (e['level'] as number) >= 40);
    expect(warnings.length, JSON.stringify(warnings.slice(0, 5))).toBeLessThan(10);
    expect(p.events().filter((e) => e['event'] === 'sweep_failed')).toEqual([]);
  });
});

describe('a flood of half-open requests that re-open as they are closed', () => {
  let d: Proc;
  let ports: { port: number; probePort: number };
  beforeAll(async () => {
    d = runCli(['run'], { DATABASE_URL: db.url });
    const started = await waitFor('the daemon to start', () =>
      d.events().find((e) => e['event'] === 'started'),
    );
    ports = { port: started['port'] as number, probePort: started['probePort'] as number };
  });
  afterAll(async () => {
    d?.child.kill('SIGTERM');
    await d?.exit;
  });

  /** Probes /healthz and /readyz in turn until the flood ends; the statuses by path. */
  async function probeDuring(flooding: Promise<FloodResult>, port: number) {
    let done = false;
    void flooding.finally(() => (done = true));
    const answers: Record<string, number[]> = { '/healthz': [], '/readyz': [] };
    await delay(1500);
    for (let i = 0; !done && i < 40; i += 1) {
      const path = i % 2 === 0 ? '/healthz' : '/readyz';
      answers[path]!.push(await probe(port, path));
      await delay(150);
    }
    const result = await flooding;
    // the flood held its 1 050 sockets and re-opened those the server closed
    expect(result.opened).toBeGreaterThanOrEqual(1050);
    return answers;
  }
  const okShare = (statuses: number[]) => statuses.filter((s) => s === 200).length / statuses.length;

  it('cannot lock the probe port out: /healthz and /readyz answer while 1 050 sockets hold the HTTP port', async () => {
    const answers = await probeDuring(halfOpenFlood(ports.port, 1050, 8), ports.probePort);
    console.log(JSON.stringify(answers));
    expect(answers['/healthz']!.length).toBeGreaterThanOrEqual(5);
    expect(answers['/readyz']!.length).toBeGreaterThanOrEqual(5);
    expect(okShare(answers['/healthz']!)).toBeGreaterThanOrEqual(0.9);
    expect(okShare(answers['/readyz']!)).toBeGreaterThanOrEqual(0.9);
  });

  it('cannot lock the probe port out when the flood is sent to the probe port itself from another address', async () => {
    const answers = await probeDuring(halfOpenFlood(ports.probePort, 1050, 8, '127.0.0.2'), ports.probePort);
    console.log(JSON.stringify(answers));
    expect(okShare(answers['/healthz']!)).toBeGreaterThanOrEqual(0.9);
    expect(okShare(answers['/readyz']!)).toBeGreaterThanOrEqual(0.9);
  });

  it('leaves the HTTP port to other clients: one address holds at most its per-client share', async () => {
    const answers = await probeDuring(halfOpenFlood(ports.port, 1050, 8, '127.0.0.2'), ports.port);
    console.log(JSON.stringify(answers));
    expect(okShare(answers['/healthz']!)).toBeGreaterThanOrEqual(0.9);
    expect(okShare(answers['/readyz']!)).toBeGreaterThanOrEqual(0.9);
  });
});

describe('half-open HTTP requests under a low file descriptor limit', () => {
  it('cannot take the database connections: refreshes go on, no local error is recorded on a view', async () => {
    const low = runCli(['run'], { DATABASE_URL: db.url, MVREFRESH_DEBOUNCE_MS: '50' }, undefined, {
      fdLimit: 200,
    });
    try {
      const started = await waitFor('the daemon to start', () =>
        low.events().find((e) => e['event'] === 'started'),
      );
      const lowPort = started['port'] as number;
      expect(low.events().find((e) => e['event'] === 'http_connections_capped')).toMatchObject({
        maxConnections: 100,
      });
      const sockets = await halfOpen(lowPort, 400);
      try {
        const before = low
          .events()
          .filter((e) => e['event'] === 'refresh' && e['outcome'] === 'refreshed').length;
        await db.sql.query(INSERT_ORDER);
        await waitFor(
          'a refresh while half-open requests hold the port',
          () =>
            low.events().filter((e) => e['event'] === 'refresh' && e['outcome'] === 'refreshed').length >
            before,
        );
      } finally {
        for (const s of sockets) s.destroy();
      }
      await waitFor('/healthz', async () => (await probe(lowPort, '/healthz')) === 200);
      const { rows } = await db.sql.query<{ last_sqlstate: string | null; consecutive_failures: number }>(
        'SELECT last_sqlstate, consecutive_failures FROM mvrefresh.status',
      );
      expect(rows).toEqual([{ last_sqlstate: null, consecutive_failures: 0 }]);
      expect(low.text()).not.toMatch(/EMFILE/);
    } finally {
      low.child.kill('SIGTERM');
      await low.exit;
    }
  });
});

describe('a shutdown during an HTTP flood', () => {
  it("ends a running refresh's session after the grace period: the flood cannot take the control connections", async () => {
    await db.sql.query(`CREATE TABLE slow_src (k int PRIMARY KEY); INSERT INTO slow_src VALUES (1);
      CREATE MATERIALIZED VIEW slow_view AS SELECT k, (SELECT 1 FROM pg_sleep(60)) AS s FROM slow_src WITH NO DATA;
      CREATE UNIQUE INDEX ON slow_view (k);`);
    await db.sql.query("SELECT mvrefresh.watch('slow_view')");
    const refreshBackends = async () =>
      (
        await db.sql.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = 'mvrefresh:refresh' AND state = 'active' AND datname = current_database()",
        )
      ).rows.length;
    const d = runCli(['run'], { DATABASE_URL: db.url, MVREFRESH_SHUTDOWN_GRACE_MS: '1000' });
    try {
      const started = await waitFor('the daemon to start', () =>
        d.events().find((e) => e['event'] === 'started'),
      );
      await waitFor('the slow refresh to run', async () => (await refreshBackends()) > 0);
      const flooding = flood(started['port'] as number, 1000, 6, ['/views', '/metrics']);
      await delay(2000);
      d.child.kill('SIGTERM');
      expect((await d.exit).code).toBe(0);
      await flooding;
      expect(d.events().some((e) => e['event'] === 'refresh_cancel')).toBe(true);
      await waitFor('the refresh session to be gone', async () => (await refreshBackends()) === 0, {
        timeoutMs: 5000,
      });
      const { rows } = await db.sql.query(
        "SELECT dirty, consecutive_failures FROM mvrefresh.status WHERE view = 'public.slow_view'",
      );
      expect(rows).toEqual([{ dirty: true, consecutive_failures: 0 }]);
    } finally {
      d.child.kill('SIGKILL');
      await db.sql.query("SELECT mvrefresh.unwatch('slow_view')");
    }
  });
});

import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryOnLockTimeout } from '../src/db/lock-retry.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { SHOP_SQL } from './support/shop.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('http');
const TOKEN = 'test-admin-token';
let d: TestDaemon;
let base: string;

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  d = await startDaemon(db.url, { 'http.adminToken': TOKEN });
  base = `http://127.0.0.1:${d.running.port}`;
  await waitFor('the listener', () => d.running.listener.connected);
});

afterAll(async () => {
  await d?.stop();
});

async function get(path: string, init?: RequestInit) {
  const res = await fetch(`${base}${path}`, init);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** Sends a raw request target that fetch() would refuse to send, and returns the status line. */
async function rawGet(target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(d.running.port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => resolve(data.split('\r\n')[0] ?? ''));
    socket.on('error', reject);
  });
}

describe('the HTTP port', () => {
  it('answers request targets that URL parsing rejects with 400 and keeps serving', async () => {
    for (const target of ['//[', 'http://[', '//%zz', 'http://x:99999/'])
      expect(await rawGet(target), target).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect((await get('/healthz')).status).toBe(200);
  });

  it('answers /healthz with 200 while the process is alive', async () => {
    const r = await get('/healthz');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 when LISTEN is up and the database answers', async () => {
    const r = await get('/readyz');
    expect(r.status).toBe(200);
  });

  it('lists watched views on /views with their state', async () => {
    await waitFor('a first refresh', () => d.reports.find((x) => x.outcome === 'refreshed'));
    const r = await get('/views');
    expect(r.status).toBe(200);
    const views = JSON.parse(r.body) as Record<string, unknown>[];
    expect(views).toHaveLength(1);
    expect(Object.keys(views[0]!)).toEqual(
      expect.arrayContaining([
        'name',
        'dirty',
        'lastDirtiedAt',
        'lastRefreshedAt',
        'stalenessSeconds',
        'lastDurationMs',
        'lastError',
        'consecutiveFailures',
        'nextAttemptAt',
      ]),
    );
    expect(views[0]!['name']).toBe('public.monthly_product_sales');
  });

  it('exports Prometheus metrics on /metrics', async () => {
    const r = await get('/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toContain('text/plain');
    for (const name of [
      'mvrefresh_refreshes_total',
      'mvrefresh_refresh_duration_seconds',
      'mvrefresh_view_staleness_seconds',
      'mvrefresh_notifications_total',
      'mvrefresh_sweeps_total',
      'mvrefresh_queue_depth',
      'mvrefresh_listener_connected 1',
      'mvrefresh_listener_reconnects_total',
    ])
      expect(r.body).toContain(name);
  });

  it('answers anything else with a JSON 404', async () => {
    const r = await get('/nope');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'not found' });
  });

  it('queues a manual refresh only with the admin token', async () => {
    const id = (JSON.parse((await get('/views')).body) as { id: number }[])[0]!.id;
    expect((await get(`/views/${id}/refresh`, { method: 'POST' })).status).toBe(401);
    expect(
      (await get(`/views/${id}/refresh`, { method: 'POST', headers: { authorization: 'Bearer wrong' } }))
        .status,
    ).toBe(401);
    expect(
      (await get('/views/999/refresh', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }))
        .status,
    ).toBe(404);
    const before = d.reports.length;
    const ok = await get(`/views/${id}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.status).toBe(202);
    await waitFor('the manual refresh', () =>
      d.reports.slice(before).find((x) => x.cause === 'manual' && x.outcome === 'refreshed'),
    );
  });

  it('routes a manual refresh for any positive int4 id, like notifications, and no other id', async () => {
    const auth = { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } };
    const unwatched = await get('/views/2147483647/refresh', auth);
    expect(unwatched.status).toBe(404);
    expect(JSON.parse(unwatched.body)).toMatchObject({ error: 'no watched view with id 2147483647' });
    for (const id of ['2147483648', '0', '01', '-1'])
      expect(JSON.parse((await get(`/views/${id}/refresh`, auth)).body), id).toMatchObject({
        error: 'not found',
      });
  });

  it('answers /readyz with 503 and a reason while the LISTEN connection is down', async () => {
    await db.sql.query('ALTER DATABASE ' + db.name + ' WITH ALLOW_CONNECTIONS false').catch(() => undefined);
    try {
      await db.sql.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mvrefresh:listen' AND datname = current_database()",
      );
      const r = await waitFor('readyz to fail', async () => {
        const res = await get('/readyz');
        return res.status === 503 ? res : undefined;
      });
      expect(JSON.parse(r.body)).toMatchObject({ status: 'not ready' });
    } finally {
      await db.sql.query('ALTER DATABASE ' + db.name + ' WITH ALLOW_CONNECTIONS true');
    }
    await waitFor('readyz to recover', async () => (await get('/readyz')).status === 200);
  });

  it('shows refresh errors that quote row values only with the admin token', async () => {
    await db.sql.query(`CREATE TABLE ssn_src (id int PRIMARY KEY, v text);
      INSERT INTO ssn_src VALUES (1, '1');
      CREATE MATERIALIZED VIEW ssn_view AS SELECT id, v::int AS v FROM ssn_src;
      CREATE UNIQUE INDEX ON ssn_view (id);`);
    await db.sql.query("SELECT mvrefresh.watch('ssn_view')");
    await db.sql.query("INSERT INTO ssn_src VALUES (2, 'SSN 078-05-1120')");
    await waitFor('the failed refresh', () =>
      d.reports.find((x) => x.view === 'public.ssn_view' && x.outcome === 'failed'),
    );
    // /views answers from a result shared for a second
    const entry = (body: string) =>
      (JSON.parse(body) as { name: string; lastError: string | null }[]).find(
        (v) => v.name === 'public.ssn_view' && v.lastError,
      );
    const open = await waitFor('the error on /views', async () => entry((await get('/views')).body));
    expect(open.lastError).toMatch(/invalid input syntax for type integer/);
    expect(open.lastError).not.toContain('078-05-1120');
    const admin = entry((await get('/views', { headers: { authorization: `Bearer ${TOKEN}` } })).body);
    expect(admin?.lastError).toContain('SSN 078-05-1120');
    // the daemon retries the failing refresh: unwatch gives way to it on its lock_timeout, as the CLI does
    await retryOnLockTimeout(() => db.sql.query("SELECT mvrefresh.unwatch('ssn_view')"));
  });

  it('refuses state changes when no admin token is configured', async () => {
    const plain = await startDaemon(db.url);
    try {
      const res = await fetch(`http://127.0.0.1:${plain.running.port}/views/1/refresh`, { method: 'POST' });
      expect(res.status).toBe(403);
      await res.text();
    } finally {
      await plain.stop();
    }
  });
});

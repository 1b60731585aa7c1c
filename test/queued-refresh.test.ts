import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('queued-refresh');
const TOKEN = 'test-admin-token';
/** The advisory lock key that gates the refresh of `gated`: held by the test, the refresh waits. */
const GATE = 4242;
let d: TestDaemon;
let ids: Record<string, number>;

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE t (id int PRIMARY KEY);
    INSERT INTO t VALUES (1);
    CREATE MATERIALIZED VIEW gated AS SELECT id, pg_advisory_xact_lock_shared(${GATE})::text AS gate FROM t;
    CREATE UNIQUE INDEX ON gated (id);
    CREATE MATERIALIZED VIEW quick AS SELECT id FROM t;
    CREATE UNIQUE INDEX ON quick (id);
    SELECT mvrefresh.watch('gated');
    SELECT mvrefresh.watch('quick');`);
  const { rows } = await db.sql.query<{ id: number; view: string }>('SELECT id, view FROM mvrefresh.status');
  ids = Object.fromEntries(rows.map((r) => [r.view, r.id]));
  // one refresh at a time, so that a job can be held in the queue behind the gated one
  d = await startDaemon(db.url, { concurrency: 1, lockTimeoutMs: 120_000, 'http.adminToken': TOKEN });
  await waitFor('both views fresh and nothing queued', async () => {
    const { rows: dirty } = await db.sql.query('SELECT 1 FROM mvrefresh.status WHERE dirty');
    return dirty.length === 0 && d.running.refresher.active === 0 && d.running.refresher.queued === 0;
  });
});

afterAll(async () => {
  await d?.stop();
});

describe('a manual refresh of a view whose job is queued', () => {
  it('runs that job forced: a clean view is refreshed, not answered clean', async () => {
    const { scheduler, refresher } = d.running;
    let before = d.reports.length;
    await db.sql.query('SELECT pg_advisory_lock($1)', [GATE]);
    try {
      scheduler.schedule(ids['public.gated']!, 'manual');
      await waitFor('the gated refresh to wait on the gate', async () => {
        const { rows } = await db.sql.query(
          "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted",
          [GATE],
        );
        return rows.length > 0;
      });
      // a sweep finds nothing to do for a clean view: its job is queued unforced
      scheduler.schedule(ids['public.quick']!, 'sweep');
      await waitFor('the quick view queued behind the gated one', () => refresher.queued === 1);
      const res = await fetch(`http://127.0.0.1:${d.running.port}/views/${ids['public.quick']}/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(res.status).toBe(202);
      // from here on the one slot is the gated refresh's: the next report of the quick view is its queued
      // job's (one of the daemon's own sweeps may have refreshed it, clean, before the gated job started)
      before = d.reports.length;
    } finally {
      await db.sql.query('SELECT pg_advisory_unlock($1)', [GATE]);
    }
    const report = await waitFor('the quick view refreshed', () =>
      d.reports.slice(before).find((r) => r.viewId === ids['public.quick']),
    );
    expect(report).toMatchObject({ cause: 'manual', outcome: 'refreshed' });
  });
});

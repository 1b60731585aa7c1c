import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { delay, waitFor } from './support/wait.js';

/**
 * Long refreshes (expected to take more than a tenth of the shortest target) take at most concurrency - 1
 * refresh slots while a quicker view is watched: two heavy views never refresh at once, and the cheap view
 * always finds a slot. Heavy views sleep 400 ms in their query, far above scheduling jitter.
 */
const db = useTestDatabase('refresh_slots');
const HEAVY = ['public.heavy_a', 'public.heavy_b'];
const CHEAP = 'public.cheap';
let d: TestDaemon | undefined;

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
    INSERT INTO src SELECT g, g FROM generate_series(1, 10) g;
    CREATE MATERIALIZED VIEW heavy_a AS SELECT s.id, s.v FROM src s CROSS JOIN (SELECT pg_sleep(0.4)) z;
    CREATE UNIQUE INDEX ON heavy_a (id);
    CREATE MATERIALIZED VIEW heavy_b AS SELECT s.id, s.v * 2 AS v FROM src s CROSS JOIN (SELECT pg_sleep(0.4)) z;
    CREATE UNIQUE INDEX ON heavy_b (id);
    CREATE MATERIALIZED VIEW cheap AS SELECT 1 AS k, count(*) AS n, sum(v) AS total FROM src;
    CREATE UNIQUE INDEX ON cheap (k);`);
  for (const v of ['heavy_a', 'heavy_b', 'cheap'])
    await db.sql.query('SELECT mvrefresh.watch($1, p_max_staleness_ms => 1000, p_refresh_budget => 1)', [v]);
  // one refresh of each, so that the daemon starts knowing what they cost (view_state.last_duration_ms)
  await db.sql.query('CALL mvrefresh.refresh_dirty()');
});

afterAll(async () => {
  await d?.stop();
});

describe('refresh slots', () => {
  it('two long refreshes never run at once at concurrency 2, and the cheap view keeps being refreshed meanwhile', async () => {
    d = await startDaemon(db.url, { concurrency: 2 });
    const since = Date.now();
    // a write every 250 ms for 4 s: every view is dirty again as soon as its refresh ends
    for (let i = 0; i < 16; i += 1) {
      await db.sql.query('UPDATE src SET v = v + 1 WHERE id = $1', [(i % 10) + 1]);
      await delay(250);
    }
    await waitFor('every view refreshed after the last write', () =>
      [...HEAVY, CHEAP].every((v) => d!.reports.some((r) => r.view === v && r.at > Date.now() - 1500)),
    );
    const refreshed = d.reports.filter((r) => r.at >= since && r.outcome === 'refreshed');
    const heavy = refreshed
      .filter((r) => HEAVY.includes(r.view))
      .map((r) => ({ view: r.view, start: r.at - r.durationMs, end: r.at }))
      .sort((a, b) => a.start - b.start);
    expect(new Set(heavy.map((r) => r.view))).toEqual(new Set(HEAVY));
    expect(heavy.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < heavy.length; i += 1)
      expect(
        heavy[i]!.start,
        `${heavy[i]!.view} started while ${heavy[i - 1]!.view} refreshed`,
      ).toBeGreaterThanOrEqual(heavy[i - 1]!.end - 20);
    // budget 100% and target 1 s: without a free slot the cheap view would wait behind both heavy views
    expect(refreshed.filter((r) => r.view === CHEAP).length).toBeGreaterThanOrEqual(3);
  });
});

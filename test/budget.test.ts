import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET_HEADROOM } from '../src/daemon/refresh/plan.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';

/**
 * The scheduler's decisions against a real database: pause and resume, the staleness clock and the budget
 * across a restart (both read from view_state), and the visible misses. Times are asserted against what
 * the database recorded, with tolerances far above scheduling jitter.
 */
const db = useTestDatabase('budget');
const TOKEN = 'budget-admin-token';
const VIEW = 'public.monthly_product_sales';
let d: TestDaemon | undefined;
let viewId: number;

const refreshedAfter = (t: TestDaemon, since: number) =>
  t.reports.filter((r) => r.at >= since && r.view === VIEW && r.outcome === 'refreshed');

async function status() {
  const { rows } = await db.sql.query<{
    dirty: boolean;
    paused: boolean;
    target_misses: string;
    last_miss_staleness_ms: number | null;
  }>('SELECT dirty, paused, target_misses, last_miss_staleness_ms FROM mvrefresh.status WHERE view = $1', [
    VIEW,
  ]);
  return rows[0]!;
}

async function quiet(t: TestDaemon) {
  await waitFor('the view fresh and nothing planned', async () => {
    const s = await status();
    return !s.dirty && t.running.scheduler.waitingCount === 0 && t.running.refresher.active === 0;
  });
}

function post(t: TestDaemon, path: string) {
  return fetch(`http://127.0.0.1:${t.running.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
  });
}

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  const { rows } = await db.sql.query<{ id: number }>(
    "SELECT (mvrefresh.watch('monthly_product_sales') ->> 'id')::int AS id",
  );
  viewId = rows[0]!.id;
});

afterAll(async () => {
  await d?.stop();
});

describe('pause and resume', () => {
  it('a paused view keeps its marks and is not refreshed; resume refreshes it once', async () => {
    d = await startDaemon(db.url, { 'http.adminToken': TOKEN });
    await quiet(d);
    const paused = await post(d, `/views/${viewId}/pause`);
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ paused: true, changed: true });
    const since = Date.now();
    for (let i = 0; i < 20; i += 1) await db.exec(INSERT_ORDER);
    // ten times the target (200 ms) and a sweep later, nothing was refreshed
    d.running.sweeper.sweep('interval');
    await delay(2000);
    expect(refreshedAfter(d, since)).toEqual([]);
    expect(await status()).toMatchObject({ dirty: true, paused: true });
    const views = (await (await fetch(`http://127.0.0.1:${d.running.port}/views`)).json()) as {
      id: number;
      paused: boolean;
    }[];
    expect(views.find((v) => v.id === viewId)).toMatchObject({ paused: true });

    const resumed = await post(d, `/views/${viewId}/resume`);
    expect(await resumed.json()).toMatchObject({ paused: false, changed: true, dirty: true });
    await waitFor('the view to reflect the writes made while paused', () =>
      viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY),
    );
    await quiet(d);
    expect(refreshedAfter(d, since)).toHaveLength(1);
    expect(await status()).toMatchObject({ dirty: false, paused: false });
    expect((await post(d, '/views/999999/pause')).status).toBe(404);
    await d.stop();
    d = undefined;
  });
});

describe('after a restart', () => {
  it('keeps the budget: the first refresh waits for last start + expected / budget, from view_state', async () => {
    // the previous process's last refresh: 1 s long, ended just now; budget 25% -> next start >= 4 s after it
    await db.sql.query(
      `UPDATE mvrefresh.view_state SET last_duration_ms = 1000, last_refreshed_at = now(), refresh_budget = 0.25
        WHERE id = $1`,
      [viewId],
    );
    await db.exec(INSERT_ORDER);
    const started = Date.now();
    d = await startDaemon(db.url);
    const plan = await waitFor(
      'the view planned',
      () => d!.running.scheduler.describe(viewId)?.nextRefreshAt,
    );
    // last start = now - 1 s; allowed again 4 s later: about 3 s after the restart
    expect(plan - started).toBeGreaterThan(2000);
    expect(plan - started).toBeLessThan(4500);
    expect(d.running.scheduler.describe(viewId)).toMatchObject({ expectedMs: 1000, minIntervalMs: 4000 });
    await waitFor('the refresh', () => refreshedAfter(d!, started)[0]);
    expect(refreshedAfter(d, started)[0]!.at).toBeGreaterThanOrEqual(plan - 50);
    await d.stop();
    d = undefined;
  });

  it('keeps the staleness clock: a view dirty since before the start is due by its dirty_since', async () => {
    await db.sql.query(
      `UPDATE mvrefresh.view_state SET refresh_budget = NULL, max_staleness_ms = 6000, last_duration_ms = 10,
              last_refreshed_at = now() - interval '1 hour' WHERE id = $1`,
      [viewId],
    );
    await db.exec(INSERT_ORDER);
    const { rows } = await db.sql.query<{ age_ms: number }>(
      `SELECT extract(epoch FROM clock_timestamp() - dirty_since) * 1000 AS age_ms
         FROM mvrefresh.status WHERE id = $1`,
      [viewId],
    );
    await delay(2000);
    const started = Date.now();
    d = await startDaemon(db.url);
    const plan = await waitFor(
      'the view planned',
      () => d!.running.scheduler.describe(viewId)?.nextRefreshAt,
    );
    // dirty since (start - 2 s - age); due at dirty since + 0.85 x 6 s - 10 ms, not 5.1 s after the restart
    const expected = started - 2000 - rows[0]!.age_ms + 6000 * TARGET_HEADROOM - 10;
    expect(Math.abs(plan - expected)).toBeLessThan(700);
    await waitFor('the refresh', () => refreshedAfter(d!, started)[0], { timeoutMs: 15_000 });
    await d.stop();
    d = undefined;
  });
});

describe('a target the budget cannot meet', () => {
  it('is logged with its numbers, shown in /views, counted in view_state and metrics', async () => {
    // a 1 ms target: every refresh misses it; a 1% budget: the conflict shows at the first refresh
    await db.sql.query(
      'UPDATE mvrefresh.view_state SET max_staleness_ms = 1, refresh_budget = 0.01 WHERE id = $1',
      [viewId],
    );
    d = await startDaemon(db.url);
    await waitFor('the start-up sweep', () => d!.running.scheduler.knows(viewId));
    const since = Date.now();
    await db.exec(INSERT_ORDER);
    await waitFor('a refresh', () => refreshedAfter(d!, since)[0], { timeoutMs: 15_000 });
    const line = await waitFor('the conflict log line', () =>
      d!.logs.find((l) => l['event'] === 'target_unmet'),
    );
    expect(line).toMatchObject({ view: VIEW, targetMs: 1, budget: 0.01 });
    expect(String(line['msg'])).toMatch(
      /refresh takes \d+ ms; within a 1% budget it can run every [\d.]+ m?s; target 1 ms not met/,
    );
    const s = await waitFor('the miss recorded', async () => {
      const row = await status();
      return Number(row.target_misses) > 0 ? row : undefined;
    });
    expect(s.last_miss_staleness_ms).toBeGreaterThan(1);
    const views = (await (await fetch(`http://127.0.0.1:${d.running.port}/views`)).json()) as Record<
      string,
      unknown
    >[];
    expect(views.find((v) => v['id'] === viewId)).toMatchObject({
      targetSeconds: 0.001,
      budget: 0.01,
      targetMet: false,
      targetProblem: expect.stringMatching(/target 1 ms not met/),
    });
    const metrics = await (await fetch(`http://127.0.0.1:${d.running.port}/metrics`)).text();
    expect(metrics).toMatch(
      /mvrefresh_view_target_misses_total\{view="public.monthly_product_sales"\} [1-9]/,
    );
    expect(metrics).toMatch(/mvrefresh_view_budget_share\{view="public.monthly_product_sales"\} 0.01/);
  });
});

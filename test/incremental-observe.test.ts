import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';

/**
 * What an operator sees of incremental views: the mode of each view (incremental, full, or full with the
 * clause that refused --incremental) and an incremental view's last apply and verify in `status`, `/views`,
 * the metrics and the refresh log; and the daemon's periodic verify, which finds a write that escaped the
 * capture, says so (error log, metric) and repairs it.
 */
const db = useTestDatabase('incremental_observe');

const POST_STATS = `SELECT post_id, count(*) AS n, sum(score) AS total, max(score) AS top FROM comments GROUP BY post_id`;
const WINDOW_CLAUSE = /window function/;

async function cli(args: string[]) {
  const p = runCli(args, { DATABASE_URL: db.url });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

async function missingRows(): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>(
    `SELECT count(*) AS n FROM (SELECT * FROM (${POST_STATS}) q EXCEPT ALL TABLE post_stats) d`,
  );
  return Number(rows[0]!.n);
}

interface StatusJson {
  view: string;
  mode: string;
  mode_reason: string | null;
  incremental: {
    last_apply_kind: string | null;
    last_apply_keys: number | null;
    last_apply_ms: number | null;
    last_full_ms: number | null;
    last_verify_at: string | null;
    verify_mismatches: number;
  } | null;
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE comments (id bigserial PRIMARY KEY, post_id bigint NOT NULL, score int NOT NULL);
    INSERT INTO comments (post_id, score) SELECT 1 + g % 20, g % 50 FROM generate_series(1, 400) g;
    CREATE MATERIALIZED VIEW post_stats AS ${POST_STATS};
    CREATE UNIQUE INDEX ON post_stats (post_id);
    CREATE MATERIALIZED VIEW ranked AS SELECT id, rank() OVER (ORDER BY score) AS r FROM comments;
    CREATE UNIQUE INDEX ON ranked (id);
    CREATE MATERIALIZED VIEW totals AS SELECT post_id, count(*) AS n FROM comments GROUP BY post_id;
    CREATE UNIQUE INDEX ON totals (post_id);`);
  const inc = await cli(['watch', 'post_stats', '--incremental']);
  expect(inc.code, inc.text).toBe(0);
  const refused = await cli(['watch', 'ranked', '--incremental']);
  expect(refused.code).toBe(1);
  expect(refused.text).toMatch(WINDOW_CLAUSE);
  expect((await cli(['watch', 'totals'])).code).toBe(0);
});

describe('the mode of each view, in status', () => {
  it('status --json: mode, mode_reason and the last apply of an incremental view', async () => {
    await db.sql.query(`INSERT INTO comments (post_id, score) VALUES (3, 7), (4, 8)`);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const r = await cli(['status', '--json']);
    expect(r.code, r.text).toBe(0);
    const rows = JSON.parse(r.text) as StatusJson[];
    const byName = new Map(rows.map((x) => [x.view, x]));
    const inc = byName.get('public.post_stats')!;
    expect(inc.mode).toBe('incremental');
    expect(inc.mode_reason).toBeNull();
    expect(inc.incremental).toMatchObject({
      last_apply_kind: 'delta',
      last_apply_keys: 2,
      verify_mismatches: 0,
    });
    expect(inc.incremental!.last_apply_ms).toBeGreaterThanOrEqual(0);
    const refused = byName.get('public.ranked')!;
    expect(refused.mode).toMatch(/^full: .*window function/);
    expect(refused.mode_reason).toMatch(WINDOW_CLAUSE);
    expect(refused.incremental).toBeNull();
    expect(byName.get('public.totals')).toMatchObject({ mode: 'full', mode_reason: null, incremental: null });
  });

  it('status: a MODE column, the refused clause and the last apply under the table', async () => {
    const r = await cli(['status']);
    expect(r.code, r.text).toBe(0);
    const lines = r.text.split('\n');
    const cols = lines[0]!.split(/\s{2,}/);
    const cell = (view: string) =>
      lines.find((l) => l.startsWith(view))!.split(/\s{2,}/)[cols.indexOf('MODE')];
    expect(cell('public.post_stats')).toBe('incremental');
    expect(cell('public.ranked')).toBe('full');
    expect(cell('public.totals')).toBe('full');
    expect(r.text).toMatch(/public\.ranked: refreshed in full: .*window function.* needs a full refresh/);
    expect(r.text).toMatch(
      /public\.post_stats: incremental: last apply delta, 2 keys in \d+ ms; .*never verified/,
    );
  });
});

describe('the daemon', () => {
  let d: TestDaemon;
  let base: string;

  beforeAll(async () => {
    // a write that escapes the capture: the mark trigger still fires, so the view is applied and stays wrong
    await db.sql.query('ALTER TABLE comments DISABLE TRIGGER mvrefresh_cap_ins');
    await db.sql.query(`INSERT INTO comments (post_id, score) VALUES (500, 1), (501, 2)`);
    await db.sql.query('ALTER TABLE comments ENABLE ALWAYS TRIGGER mvrefresh_cap_ins');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await missingRows()).toBe(2);
    d = await startDaemon(db.url, { incrementalVerifyIntervalMs: 300 });
    base = `http://127.0.0.1:${d.running.port}`;
  });

  afterAll(async () => {
    await d?.stop();
  });

  it('verifies the incremental view, logs the difference by counts, counts it, and repairs it', async () => {
    const mismatch = await waitFor('the verify mismatch', () =>
      d.logs.find((l) => l['event'] === 'incremental_verify_mismatch'),
    );
    expect(mismatch).toMatchObject({
      level: 'error',
      view: 'public.post_stats',
      extra: 0,
      missing: 2,
      outcome: 'verify_mismatch',
      repaired: true,
    });
    expect(await missingRows()).toBe(0);
    // the next verify finds it equal
    await waitFor('a clean verify', () =>
      d.logs.find((l) => l['event'] === 'incremental_verify' && l['outcome'] === 'verified'),
    );
    const { rows } = await db.sql.query<{ verify_mismatches: string; last_apply_kind: string }>(
      'SELECT verify_mismatches, last_apply_kind FROM mvrefresh.incremental',
    );
    expect(Number(rows[0]!.verify_mismatches)).toBe(1);
  });

  it('logs each refresh with its mode, and an incremental apply with its kind and keys', async () => {
    // a verify applies what is pending before it compares: none may take the refresh's keys
    await d.running.incrementalVerifier.stop();
    const from = d.logs.length;
    // one transaction: one apply adds its three groups' deltas (a cycle already running may apply none first)
    await db.sql.query(`INSERT INTO comments (post_id, score) VALUES (6, 1), (7, 1), (8, 1)`);
    const applied = await waitFor('an incremental apply', () =>
      d.logs
        .slice(from)
        .find(
          (l) =>
            l['event'] === 'refresh' &&
            l['view'] === 'public.post_stats' &&
            l['applyKind'] === 'delta' &&
            Number(l['keys']) > 0,
        ),
    );
    expect(applied).toMatchObject({ mode: 'incremental', keys: 3 });
    expect(applied['applyMs']).toEqual(expect.any(Number));
    const full = await waitFor('a full refresh', () =>
      d.logs.find(
        (l) => l['event'] === 'refresh' && l['view'] === 'public.ranked' && l['outcome'] === 'refreshed',
      ),
    );
    expect(full['mode']).toMatch(/^full: .*window function/);
    expect(full).not.toHaveProperty('applyKind');
  });

  it('/views shows mode, modeReason and the incremental details', async () => {
    const views = await waitFor('/views with the verify', async () => {
      const list = (await (await fetch(`${base}/views`)).json()) as Record<string, unknown>[];
      const inc = list.find((v) => v['name'] === 'public.post_stats');
      const details = inc?.['incremental'] as Record<string, unknown> | undefined;
      return details?.['lastVerifyAt'] && details['verifyMismatches'] === 1 ? list : undefined;
    });
    const byName = new Map(views.map((v) => [v['name'], v]));
    expect(byName.get('public.post_stats')).toMatchObject({
      mode: 'incremental',
      modeReason: null,
      incremental: { lastApplyKind: expect.any(String), verifyMismatches: 1 },
    });
    const details = byName.get('public.post_stats')!['incremental'] as Record<string, unknown>;
    for (const key of ['lastApplyKeys', 'lastApplyMs', 'lastApplyAt', 'lastFullMs', 'lastVerifyAt'])
      expect(details, key).toHaveProperty(key);
    expect(byName.get('public.ranked')!['mode']).toMatch(/^full: /);
    expect(byName.get('public.ranked')!['modeReason']).toMatch(WINDOW_CLAUSE);
    expect(byName.get('public.ranked')!['incremental']).toBeNull();
    expect(byName.get('public.totals')).toMatchObject({ mode: 'full', modeReason: null, incremental: null });
  });

  it('/metrics: the mode of each view, the keys per apply, full recomputes and verify mismatches', async () => {
    const body = await (await fetch(`${base}/metrics`)).text();
    expect(body).toMatch(/mvrefresh_view_mode\{view="public.post_stats",mode="incremental",reason=""\} 1/);
    expect(body).toMatch(/mvrefresh_view_mode\{view="public.totals",mode="full",reason=""\} 1/);
    expect(body).toMatch(
      /mvrefresh_view_mode\{view="public.ranked",mode="full",reason="[^"]*window function[^"]*"\} 1/,
    );
    expect(body).toMatch(/mvrefresh_apply_keys_count\{view="public.post_stats"\} [1-9]/);
    expect(body).toMatch(/mvrefresh_incremental_verify_mismatch_total\{view="public.post_stats"\} 1/);
    expect(body).toMatch(/mvrefresh_incremental_full_total\{view="public.post_stats",reason="verify"\} 1/);
    expect(body).toMatch(
      /mvrefresh_incremental_verifies_total\{view="public.post_stats",result="ok"\} [1-9]/,
    );
  });
});

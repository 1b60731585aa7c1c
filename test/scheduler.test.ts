import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/logger.js';
import {
  Scheduler,
  type Miss,
  type TargetChange,
  type ViewSettings,
} from '../src/daemon/refresh/scheduler.js';
import { DurationEstimate, TARGET_HEADROOM, planRefresh } from '../src/daemon/refresh/plan.js';
import { describeConflict } from '../src/budget.js';
import type { Job } from '../src/interfaces.js';

const TARGET = 1000;
const BUDGET = 0.2;
/** When a view dirty at d with an expected refresh time e is planned by its target alone. */
const byTarget = (d: number, e = 0) => d + TARGET * TARGET_HEADROOM - e;

function view(id: number, extra: Partial<ViewSettings> = {}): ViewSettings {
  return {
    id,
    name: `public.v${id}`,
    maxStalenessMs: null,
    refreshBudget: null,
    paused: false,
    lastDurationMs: null,
    lastRefreshedAgoMs: null,
    ...extra,
  };
}

function scheduler(views: ViewSettings[] = [view(1), view(2, { maxStalenessMs: 10_000 })]) {
  const s = new Scheduler({ logger: createLogger('silent'), maxStalenessMs: TARGET, refreshBudget: BUDGET });
  s.setViews(views);
  const due: (Job & { at: number })[] = [];
  const unknown: number[] = [];
  const misses: Miss[] = [];
  const targets: TargetChange[] = [];
  s.on('due', (job) => due.push({ ...job, at: Date.now() }));
  s.on('unknown', (id) => unknown.push(id));
  s.on('miss', (m) => misses.push(m));
  s.on('target', (c) => targets.push(c));
  /** Runs the job that is due now for viewId, taking durationMs (an incremental apply: proportional). */
  const run = (viewId: number, durationMs: number, extra: { proportional?: boolean } = {}) => {
    s.started(due.filter((j) => j.viewId === viewId).at(-1)!);
    vi.advanceTimersByTime(durationMs);
    s.finished(viewId, { kind: 'done', refreshed: true, durationMs, ...extra });
  };
  return { s, due, unknown, misses, targets, run };
}

/** Advances the clock by ms: no job becomes due before its last millisecond, exactly one at it. */
function expectOneDueAfter(due: unknown[], ms: number) {
  const before = due.length;
  vi.advanceTimersByTime(ms - 1);
  expect(due).toHaveLength(before);
  vi.advanceTimersByTime(1);
  expect(due).toHaveLength(before + 1);
}

/** `count` NOTIFY events for view 1, one every `periodMs`. */
function notifyEvery(s: Scheduler, periodMs: number, count: number) {
  for (let i = 0; i < count; i += 1) {
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(periodMs);
  }
}

/** planRefresh for a view dirty since 0, planned at 0 with a 20% budget and no refresh started yet. */
const plan = (input: Partial<Parameters<typeof planRefresh>[0]>) =>
  planRefresh({
    now: 0,
    dirtySince: 0,
    targetMs: TARGET,
    budget: BUDGET,
    expectedMs: 0,
    costMs: 0,
    lastStartAt: undefined,
    ...input,
  });

beforeEach(() => {
  vi.useFakeTimers({ now: 100_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('planRefresh', () => {
  it('waits as long as the target allows: d + headroom x target - expected', () => {
    const p = plan({ targetMs: 10_000, expectedMs: 500, costMs: 500 });
    expect(p.at).toBe(10_000 * TARGET_HEADROOM - 500);
    expect(p.conflict).toBe(false);
    expect(p.minIntervalMs).toBe(2500);
    expect(p.achievableMs).toBe(3000);
  });

  it('never starts earlier than the budget allows after the last start; the budget wins a conflict', () => {
    const p = plan({
      now: 1000,
      dirtySince: 900,
      targetMs: 2000,
      expectedMs: 800,
      costMs: 800,
      lastStartAt: 0,
    });
    expect(p.at).toBe(4000);
    expect(p.conflict).toBe(true);
    expect(describeConflict(800, 0.2, 2000)).toBe(
      'refresh takes 800 ms; within a 20% budget it can run every 4 s; target 2 s not met: a write can wait 4.8 s (that interval plus the refresh)',
    );
  });

  it('starts at once when the view has been dirty longer than the target allows', () => {
    const p = plan({ now: 50_000, targetMs: 1000, expectedMs: 10, costMs: 10, lastStartAt: 0 });
    expect(p.at).toBe(50_000);
  });

  it('plans by the pessimistic estimate for the target and spaces by the mean cost for the budget', () => {
    // a cheap view whose p90 caught a slow refresh: 300 ms expected, 40 ms on average
    const p = plan({ targetMs: 1000, expectedMs: 300, costMs: 40, lastStartAt: -500, lastCostMs: 20 });
    // by the target (850 - 300), not by 300 / 20% after the last start
    expect(p.at).toBe(1000 * TARGET_HEADROOM - 300);
    expect(p.minIntervalMs).toBe(200);
    expect(p.achievableMs).toBe(500);
    expect(p.conflict).toBe(false);
    // the last cycle's own cost counts when it was higher than the mean
    expect(plan({ targetMs: 1000, expectedMs: 300, costMs: 40, lastStartAt: -500, lastCostMs: 300 }).at).toBe(
      1000,
    );
  });

  it('estimates a refresh by the larger of an EWMA and the recent p90, seeded from the last duration', () => {
    const e = new DurationEstimate(400);
    expect(e.expectedMs).toBe(400);
    for (let i = 0; i < 9; i += 1) e.add(100);
    // one slow refresh in ten keeps the estimate up: p90 of the window
    expect(e.expectedMs).toBeGreaterThanOrEqual(100);
    e.add(900);
    e.add(900);
    expect(e.expectedMs).toBe(900);
    // the mean (EWMA) stays below: the budget counts it
    expect(e.meanMs).toBeLessThan(900);
    expect(e.meanMs).toBeGreaterThan(100);
    expect(new DurationEstimate(null).expectedMs).toBe(0);
  });
});

describe('the per-view scheduler', () => {
  it('refreshes a dirty view once its target (less the expected refresh) is near, covering every write since', () => {
    const { s, due } = scheduler();
    const t0 = Date.now();
    notifyEvery(s, 100, 5);
    vi.advanceTimersByTime(byTarget(t0) - Date.now() - 1);
    expect(due).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(due).toEqual([
      expect.objectContaining({ viewId: 1, cause: 'notify', force: false, at: byTarget(t0) }),
    ]);
    s.stop();
  });

  it('never lets a stream of events postpone a refresh', () => {
    const { s, due } = scheduler();
    const t0 = Date.now();
    notifyEvery(s, 50, 60);
    expect(due[0]!.at).toBe(byTarget(t0));
    s.stop();
  });

  it('keeps one job per view, and plans the next refresh of a busy view by target and budget', () => {
    const { s, due, run } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due).toHaveLength(1);
    // queued: the refresh has not started and will see these writes
    s.schedule(1, 'notify');
    s.schedule(1, 'sweep');
    vi.advanceTimersByTime(1000);
    expect(due).toHaveLength(1);
    // a 300 ms refresh; writes arrive while it runs (the first one 10 ms after it started)
    s.started(due.at(-1)!);
    const start = Date.now();
    vi.advanceTimersByTime(10);
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(290);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 300 });
    // target: start + 10 + 850 - 300 = start + 560; budget: start + 300 / 0.2 = start + 1500: the budget wins
    expect(due).toHaveLength(1);
    expectOneDueAfter(due, start + 1500 - Date.now());
    run(1, 300);
    vi.advanceTimersByTime(60_000);
    expect(due).toHaveLength(2);
    s.stop();
  });

  it('reports a budget that cannot meet the target, and the refreshes that miss it, with their numbers', () => {
    const { s, due, misses, targets, run } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    run(1, 800);
    expect(targets).toEqual([
      expect.objectContaining({
        view: 'public.v1',
        met: false,
        expectedMs: 800,
        budget: 0.2,
        minIntervalMs: 4000,
      }),
    ]);
    // under a stream of writes: refreshes every 4 s, each about 4.8 s after the write it covers
    for (let i = 0; i < 3; i += 1) {
      s.schedule(1, 'notify');
      vi.advanceTimersByTime(4000);
      run(1, 800);
    }
    expect(due).toHaveLength(4);
    expect(misses.length).toBeGreaterThanOrEqual(3);
    expect(misses.at(-1)).toMatchObject({ view: 'public.v1', targetMs: TARGET, budget: 0.2 });
    expect(misses.at(-1)!.stalenessMs).toBeGreaterThan(TARGET);
    expect(s.describe(1)).toMatchObject({ targetMet: false, minIntervalMs: 4000 });
    // cheaper refreshes end the conflict, and say so
    for (let i = 0; i < 25; i += 1) {
      s.schedule(1, 'notify');
      vi.advanceTimersByTime(5000);
      run(1, 10);
    }
    expect(targets.at(-1)).toMatchObject({ met: true });
    expect(s.describe(1)?.targetMet).toBe(true);
    s.stop();
  });

  it('keeps the staleness clock and the budget across a restart (dirty_since and last refresh from the database)', () => {
    // the previous process refreshed v1 (800 ms) 1 s ago; the sweep finds it dirty for 3 s already
    const { s, due } = scheduler([
      view(1, { lastDurationMs: 800, lastRefreshedAgoMs: 1000, maxStalenessMs: 2000 }),
    ]);
    const now = Date.now();
    s.schedule(1, 'sweep', now - 3000);
    // overdue by its target, but the budget allows the next start 4 s after the last one (1.8 s ago)
    expect(due).toHaveLength(0);
    expectOneDueAfter(due, now - 1800 + 4000 - Date.now());
    s.stop();
  });

  it('refreshes a view found by the sweep at once when it has been dirty longer than its target', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'sweep', Date.now() - 60_000);
    vi.advanceTimersByTime(0);
    expect(due).toHaveLength(1);
    // a notification that arrives later does not move the clock forward
    s.stop();
  });

  it('retries after the delay a failure asks for, not sooner than the budget, and keeps the staleness clock', () => {
    const { s, due, misses } = scheduler();
    // written 5 s after the daemon started (writes from before it count no miss)
    vi.advanceTimersByTime(10_000);
    s.schedule(1, 'sweep', Date.now() - 5000);
    vi.advanceTimersByTime(0);
    s.started(due.at(-1)!);
    vi.advanceTimersByTime(400);
    s.finished(1, { kind: 'retry', afterMs: 100, durationMs: 400 });
    s.schedule(1, 'notify');
    // backoff says 100 ms, the budget 400 / 0.2 = 2000 ms after the start
    vi.advanceTimersByTime(1599);
    expect(due).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(due).toHaveLength(2);
    expect(due[1]!.cause).toBe('retry');
    s.started(due.at(-1)!);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 20 });
    expect(misses[0]!.stalenessMs).toBeGreaterThanOrEqual(7000);
    s.stop();
  });

  it('counts no target miss for a view dirty since before the daemon started (watched before it ran)', () => {
    const { s, due, misses } = scheduler();
    s.schedule(1, 'sweep', Date.now() - 60_000);
    vi.advanceTimersByTime(0);
    s.started(due.at(-1)!);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 20 });
    expect(misses).toEqual([]);
    s.stop();
  });

  it('leaves a paused view idle until an event arrives (resume notifies); a manual refresh runs at once', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    s.started(due.at(-1)!);
    s.schedule(1, 'notify');
    s.finished(1, { kind: 'paused' });
    vi.advanceTimersByTime(60_000);
    expect(due).toHaveLength(1);
    expect(s.describe(1)).toMatchObject({ paused: true, phase: 'idle' });
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due).toHaveLength(2);
    s.started(due.at(-1)!);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 5 });
    expect(s.describe(1)?.paused).toBe(false);
    s.schedule(1, 'manual');
    vi.advanceTimersByTime(0);
    expect(due[2]).toMatchObject({ cause: 'manual', force: true });
    s.stop();
  });

  it('follows only the budget for periodic refreshes, and reports unknown and forgotten views', () => {
    const { s, due, unknown, run } = scheduler();
    s.schedule(2, 'interval');
    vi.advanceTimersByTime(0);
    expect(due[0]).toMatchObject({ viewId: 2, cause: 'interval', force: true });
    run(2, 100);
    s.schedule(2, 'interval');
    vi.advanceTimersByTime(399);
    expect(due).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(due).toHaveLength(2);
    s.schedule(99, 'notify');
    expect(unknown).toEqual([99]);
    s.started(due.at(-1)!);
    s.finished(2, { kind: 'gone' });
    expect(s.knows(2)).toBe(false);
    s.stop();
  });

  it('forces a queued job when a manual or interval refresh arrives before it starts', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due).toEqual([expect.objectContaining({ viewId: 1, cause: 'notify', force: false })]);
    s.schedule(1, 'manual');
    vi.advanceTimersByTime(1000);
    expect(due).toHaveLength(1);
    expect(s.started(due[0]!)).toEqual({ cause: 'manual', force: true });
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 5 });
    vi.advanceTimersByTime(5000);
    expect(due).toHaveLength(1);
    s.stop();
  });

  it('starts a queued job with the cause and force it was due with when nothing arrived meanwhile', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    s.schedule(1, 'notify');
    expect(s.started(due[0]!)).toEqual({ cause: 'notify', force: false });
    s.stop();
  });

  it('flags a refresh longer than a tenth of the shortest target as long, while a quicker view is watched', () => {
    const heavy = view(1, { lastDurationMs: 400 });
    const cheap = view(2, { lastDurationMs: 20 });
    const { s, due } = scheduler([heavy, cheap]);
    s.schedule(1, 'notify');
    s.schedule(2, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due.map((j) => [j.viewId, j.long ?? false])).toEqual([
      [1, true],
      [2, false],
    ]);
    s.stop();
    // alone, or with only paused quicker views, a heavy view keeps every slot
    for (const views of [[heavy], [heavy, { ...cheap, paused: true }]]) {
      const { s: alone, due: dueAlone } = scheduler(views);
      alone.schedule(1, 'notify');
      vi.advanceTimersByTime(TARGET);
      expect(dueAlone.map((j) => j.long ?? false)).toEqual([false]);
      alone.stop();
    }
  });

  it('leaves no timer behind after stop()', () => {
    const { s } = scheduler();
    s.schedule(1, 'notify');
    s.schedule(2, 'notify');
    s.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('work charged outside the refresh cycles (a verify of an incremental view)', () => {
  it('counts in the budget in use and spaces the next refresh by its cost / budget, not in the estimate', () => {
    const { s, due, run } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(byTarget(0));
    run(1, 10);
    const before = s.describe(1)!;
    // a verify of 2 s ends now
    vi.advanceTimersByTime(2000);
    s.charge(1, 2000);
    const after = s.describe(1)!;
    expect(after.costMs).toBe(before.costMs);
    expect(after.budgetInUse).toBeGreaterThan(before.budgetInUse);
    const chargedAt = Date.now();
    s.schedule(1, 'notify');
    // the budget allows the next start 2 s / 20% = 10 s after the verify began
    expectOneDueAfter(due, 10_000 - 2000);
    expect(Date.now() - chargedAt).toBe(8000);
  });

  it('plans a job already planned again', () => {
    const { s, due, run } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(byTarget(0));
    run(1, 10);
    vi.advanceTimersByTime(1000);
    s.schedule(1, 'notify');
    // a verify of 1 s ends now: the job planned by its target alone is planned by the budget, 1 s / 20%
    // after the verify began
    s.charge(1, 1000);
    expectOneDueAfter(due, 5000 - 1000);
  });
});

describe('a one-off full recompute of an incremental view (TRUNCATE, drift, a batch beyond the threshold)', () => {
  it('spaces the next apply once by its cost / budget, and leaves the estimate of the applies after it alone', () => {
    const { s, due, run } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(byTarget(0));
    run(1, 10);
    const before = s.describe(1)!;
    const planned = due.length;
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due.length).toBe(planned + 1);
    s.started(due.at(-1)!);
    vi.advanceTimersByTime(4000);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 4000, oneOff: true });
    const after = s.describe(1)!;
    expect([after.costMs, after.expectedMs]).toEqual([before.costMs, before.expectedMs]);
    // its own payback: the next start 4 s / 20% = 20 s after it began
    const ended = Date.now();
    s.schedule(1, 'notify');
    expectOneDueAfter(due, 20_000 - 4000);
    expect(Date.now() - ended).toBe(16_000);
    // then the small applies again: spaced by their own cost (10 ms / 20% = 50 ms), planned by the target
    run(1, 10);
    const next = due.length;
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(TARGET);
    expect(due.length).toBe(next + 1);
  });
});

describe('an incremental view, whose applies cost in proportion to the writes they cover', () => {
  it('is planned by its target after a slow apply while its applies used at most its budget of the window', () => {
    // a 5 s catch-up apply that began 5 s ago, remembered by the mean: a fixed-cost view would wait 25 s
    const slow = { targetMs: TARGET, expectedMs: 300, costMs: 3000, lastStartAt: -5000, lastCostMs: 5000 };
    expect(plan(slow).at).toBe(-5000 + 5000 / BUDGET);
    expect(plan({ ...slow, windowBusyMs: 5000 }).at).toBe(TARGET * TARGET_HEADROOM - 300);
    // beyond the budget's share of the window (20% of 60 s): the last apply is paid back, by its own cost
    expect(plan({ ...slow, windowBusyMs: 12_001 }).at).toBe(-5000 + 5000 / BUDGET);
    expect(plan({ ...slow, lastStartAt: 200, lastCostMs: 100, windowBusyMs: 12_001 }).at).toBe(
      200 + 100 / BUDGET,
    );
  });

  it('keeps its applies after a catch-up at the target, and spaces them by cost / budget once the window is spent', () => {
    const { s, due, run } = scheduler();
    const apply = (ms: number) => run(1, ms, { proportional: true });
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(byTarget(0));
    apply(6000);
    // the next write is applied by the target (6 s of 12 s in the window; the p90 expects 6 s: at once),
    // not 30 s after the catch-up
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(0);
    expect(due).toHaveLength(2);
    apply(6500);
    // 12.5 s in the window: the last apply is paid back, 6.5 s / 20% after it began
    const began = Date.now() - 6500;
    s.schedule(1, 'notify');
    expectOneDueAfter(due, began + 6500 / BUDGET - Date.now());
    s.stop();
  });
});

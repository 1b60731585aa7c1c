/**
 * When to refresh a view, from its staleness target, its refresh budget and what its refreshes cost. Pure
 * functions of clock values (milliseconds), so that the decisions are testable without timers.
 *
 * A view that turned dirty at d is refreshed at max(d + headroom target - expected, last start + cost /
 * budget): as late as the target allows, so that one refresh covers every write in between, and never
 * more often than the budget allows. When the two conflict the budget wins: under a steady stream of
 * writes the worst staleness is then (cost / budget) + expected, which is reported with the numbers.
 * expected is pessimistic (a p90), so that the target is met when a refresh is slow; cost is the mean (an
 * EWMA), since the budget is a share of time: spacing refreshes by a p90 would spend less than the budget,
 * a cheap view's rare slow refresh (a descheduled backend on a busy server) spacing all the others.
 *
 * An incremental view's apply costs in proportion to the writes it covers, not a fixed price: spacing its
 * next apply by its last cost / budget makes that apply cover more writes and cost more in turn, so one
 * slow apply (a catch-up after an overload, a backend descheduled on a busy server) stretches the next
 * several intervals far past the target while the budget is hardly used. Such a view is spaced by the budget
 * in use instead: while its applies kept the database busy for at most its budget's share of the last
 * BUDGET_WINDOW_MS, the target alone plans the next one; above that share, the last apply is paid back
 * (its own cost / budget, not the mean: the mean remembers backlogs that are gone). Over any window the
 * applies then keep to about the budget, and a burst within it is allowed.
 */

import { minInterval } from '../../budget.js';

/** Share of the target that planning aims for: the rest absorbs queueing and the estimate's error. */
export const TARGET_HEADROOM = 0.85;
/**
 * A refresh is long when it takes on average (EWMA) more than this share of the shortest staleness target
 * among the views: waiting behind it could make another view miss its target. Long refreshes take at most
 * concurrency - 1 of the refresh slots while a short view is watched (refresher.ts), so that a cheap view
 * is never stuck behind heavy ones, and two heavy refreshes do not take every core at once.
 */
export const LONG_REFRESH_SHARE = 0.1;
/** Durations remembered per view for the estimate. */
const HISTORY = 20;
const EWMA_WEIGHT = 0.3;
/** The window over which the budget in use is measured (/views, metrics, and the spacing of applies). */
export const BUDGET_WINDOW_MS = 60_000;

export interface PlanInput {
  now: number;
  /** When the oldest write the refresh must cover was noticed; undefined: not dirty (periodic, manual). */
  dirtySince: number | undefined;
  targetMs: number;
  budget: number;
  expectedMs: number;
  /** The mean cost of a refresh cycle: what the budget counts. */
  costMs: number;
  /** Start of this view's previous refresh cycle, if any is known (also from before a restart). */
  lastStartAt: number | undefined;
  /** What that previous cycle cost, when known (a failed or slow cycle counts in the budget too). */
  lastCostMs?: number | undefined;
  /**
   * For a view whose last cycle applied changes (an incremental view's apply by key or delta): its cycles'
   * time within the last BUDGET_WINDOW_MS. Undefined: a cycle of a fixed cost (REFRESH, a full recompute).
   */
  windowBusyMs?: number | undefined;
}

export interface Plan {
  /** When to start the refresh (>= now). */
  at: number;
  /** Shortest interval between two starts that the budget allows. */
  minIntervalMs: number;
  /** Worst staleness the budget allows under a steady stream of writes. */
  achievableMs: number;
  /** The budget cannot meet the target. */
  conflict: boolean;
}

export function planRefresh(p: PlanInput): Plan {
  const minIntervalMs = minInterval(p.costMs, p.budget);
  const byBudget =
    p.lastStartAt === undefined
      ? -Infinity
      : p.windowBusyMs === undefined
        ? p.lastStartAt + minInterval(Math.max(p.costMs, p.lastCostMs ?? 0), p.budget)
        : p.windowBusyMs <= p.budget * BUDGET_WINDOW_MS
          ? p.lastStartAt + (p.lastCostMs ?? p.costMs)
          : p.lastStartAt + minInterval(p.lastCostMs ?? p.costMs, p.budget);
  const byTarget =
    p.dirtySince === undefined ? -Infinity : p.dirtySince + p.targetMs * TARGET_HEADROOM - p.expectedMs;
  const achievableMs = minIntervalMs + p.expectedMs;
  return {
    at: Math.max(p.now, byBudget, byTarget),
    minIntervalMs,
    achievableMs,
    conflict: achievableMs > p.targetMs,
  };
}

/**
 * The expected duration of a view's next refresh: the larger of an EWMA and the 90th percentile of the
 * recent durations, so that one fast refresh does not make the plan optimistic.
 */
export class DurationEstimate {
  private readonly recent: number[] = [];
  private ewma: number | undefined;

  constructor(seedMs?: number | null) {
    if (seedMs !== undefined && seedMs !== null && seedMs >= 0) this.add(seedMs);
  }

  add(ms: number): void {
    this.recent.push(ms);
    if (this.recent.length > HISTORY) this.recent.shift();
    this.ewma = this.ewma === undefined ? ms : this.ewma + EWMA_WEIGHT * (ms - this.ewma);
  }

  get known(): boolean {
    return this.ewma !== undefined;
  }

  /** The EWMA alone: the mean cost that the budget counts; 0 when nothing is known yet. */
  get meanMs(): number {
    return this.ewma ?? 0;
  }

  /** 0 when nothing is known yet: a view never refreshed is refreshed by its target alone. */
  get expectedMs(): number {
    if (this.ewma === undefined) return 0;
    const sorted = [...this.recent].sort((a, b) => a - b);
    const p90 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))]!;
    return Math.max(this.ewma, p90);
  }
}

/**
 * The shared vocabulary of mvrefresh: types and label lists that several modules speak, kept apart from the
 * modules that produce them so that none imports another only for a name (and no import circle forms).
 * This module imports nothing but types from src/db/protocol.ts, which imports nothing.
 *
 * Glossary
 * - mark: a row of mvrefresh.marks naming a view: the view has writes (or an upstream refresh) its
 *   contents do not reflect yet. A dirty view has a mark, a table mark of a table it reads, or an
 *   unfinished cycle.
 * - table mark: a row of mvrefresh.table_marks naming a table, inserted by the table's statement trigger
 *   (routines/mark_table.sql) at most once until a cycle clears it: one mark per table, whatever the
 *   number of views reading it. A cycle turns it into a mark of every view reading the table.
 * - clear: the first transaction of a cycle (tx1), which deletes the view's marks and its tables' marks;
 *   writers that commit after it add new marks. Every clear that deletes table marks draws clears_started
 *   (routines/begin_clear.sql), so that a writer's memory of a mark goes stale with it.
 * - cycle: one call of mvrefresh.refresh_view(): clear, wait for the writers that were running at the
 *   clear, REFRESH, mark the dependants. It ends with an Outcome.
 * - generation: started_gen and done_gen of view_state. A cycle increments started_gen at its clear and
 *   sets done_gen to it when its REFRESH commits: started_gen > done_gen is a cycle that did not finish
 *   (crash, lost lock, writers still running), and keeps the view dirty.
 * - sweep: the periodic read of every view's dirty flag and settings (routines/due_views.sql), which finds
 *   what notifications did not announce (LISTEN down, a pooler, mvrefresh.notify = off).
 * - drift: a difference between what a view reads (the catalog) and what mvrefresh watches for it
 *   (recorded sources, triggers): found and repaired by the drift check (routines/check_drift.sql).
 * - target: a view's staleness target (max_staleness): how long after a write its refresh should end.
 *   A refresh that ends later is a target miss, counted in view_state.target_misses.
 * - budget: the share of time a view may keep the database busy refreshing it (refresh_budget): its
 *   refreshes start at least cost / budget apart. When that interval plus a refresh exceeds the target,
 *   the budget wins and the target is reported unmet.
 */
import type { CycleOutcome } from './db/protocol.js';

/** How a cycle ended: refresh_view()'s outcomes, and ours: `gone` (the view was dropped or renamed), `error` (the cycle could not run: database unreachable). */
export type Outcome = CycleOutcome | 'gone' | 'error';

/**
 * What made a view due: a notification (a write to a source, an upstream view's refresh, watch), a log
 * poll (a write to a source that only incremental views read: src/daemon/refresh/log-poller.ts), the
 * sweep, an operator, a periodic interval, a retry after a failure. (Not an SQL trigger: those only mark
 * views dirty and notify.)
 */
export type Cause = 'notify' | 'log' | 'sweep' | 'manual' | 'interval' | 'retry';

/** Causes that report a write: a later, more specific cause replaces them in a planned job. */
export const isWriteCause = (cause: Cause): boolean => cause === 'notify' || cause === 'log';

/** One refresh of one view, as the scheduler hands it to the refresher. */
export interface Job {
  viewId: number;
  name: string;
  cause: Cause;
  /** Refresh even when the view is clean (periodic and manual refreshes). */
  force: boolean;
  /**
   * Takes on average (mean cost) longer than LONG_REFRESH_SHARE of the shortest target, while a quicker
   * view is watched: the refresher keeps a slot free of such jobs.
   */
  long?: boolean;
}

/** How a job ended, as far as scheduling cares; durationMs is the cycle's cost, counted in the budget. */
export type RunResult =
  /**
   * oneOff: a full recompute of an incremental view (a TRUNCATE, drift, a batch beyond the threshold): it
   * counts in the budget, but the applies after it are small again, so it is no estimate of their cost.
   * proportional: an incremental view's apply by key or delta, whose cost grows with the writes it covered
   * (spaced by the budget in use, plan.ts).
   */
  | { kind: 'done'; refreshed: boolean; durationMs: number; oneOff?: boolean; proportional?: boolean }
  /** failed: the refresh itself failed (not busy, not waiting): a change of the sources may fix it. */
  | { kind: 'retry'; afterMs: number; durationMs: number; failed?: boolean }
  | { kind: 'paused' }
  | { kind: 'gone' };

/**
 * Why a sweep runs: the first at start, after LISTEN is (re)established, the timer, an unknown view, a
 * drift check that changed the views' sources, watch or unwatch.
 */
export const SWEEP_REASONS = [
  'start',
  'connect',
  'reconnect',
  'interval',
  'new_view',
  'drift',
  'views_changed',
] as const;
export type SweepReason = (typeof SWEEP_REASONS)[number];

/** Why a drift check runs: at start, after the LISTEN connection came back, its timer, DDL, a retry. */
export const DRIFT_CHECK_REASONS = ['start', 'reconnect', 'interval', 'ddl', 'retry'] as const;
export type DriftCheckReason = (typeof DRIFT_CHECK_REASONS)[number];
/** How a drift check ended: ok, busy (another replica held the lock), error. */
export const DRIFT_CHECK_RESULTS = ['ok', 'busy', 'error'] as const;

import type pg from 'pg';
import { sql } from './sql.js';

/** A row of mvrefresh.status (sql.status): what `mvrefresh status` prints and the daemon's /views serves. */
export interface StatusRow {
  id: number;
  view: string;
  dirty: boolean;
  cycle_unfinished: boolean;
  dirty_since: Date | null;
  staleness_seconds: number;
  last_refreshed_at: Date | null;
  last_duration_ms: number | null;
  last_outcome: string | null;
  last_error: string | null;
  last_sqlstate: string | null;
  last_error_at: Date | null;
  consecutive_failures: number;
  next_attempt_at: Date | null;
  debounce_ms: number | null;
  max_wait_ms: number | null;
  refresh_interval_ms: number | null;
  allow_blocking_refresh: boolean;
  depth: number;
  sources: string[];
  warnings: string[];
  depends_on: string[];
  max_staleness_ms: number | null;
  refresh_budget: number | null;
  paused: boolean;
  target_misses: string;
  last_miss_staleness_ms: number | null;
  /** How changes of the sources after watch are found: at once (DDL event trigger) or periodically. */
  drift_detection: 'event_trigger' | 'periodic_check';
  /**
   * How the view is kept: 'incremental', 'full' (REFRESH), or 'full: <clause>' when `watch --incremental`
   * was refused for it (mode_reason: that clause).
   */
  mode: string;
  mode_reason: string | null;
  /** An incremental view's last apply and verify (null for any other view). */
  incremental: IncrementalStatus | null;
  /** Sessions holding the view's advisory lock: "pid N, role R, application 'A', since T" (loadStatus). */
  lock_holders: string[];
}

/** What mvrefresh.incremental says of an incremental view: its last apply and its last verify. */
export interface IncrementalStatus {
  /** 'keys' (recomputed by key) or 'full: <reason>' (truncate, drift, threshold, verify, ...). */
  last_apply_kind: string | null;
  last_apply_keys: number | null;
  last_apply_ms: number | null;
  last_apply_at: Date | null;
  /** The last full recompute's milliseconds. */
  last_full_ms: number | null;
  last_verify_at: Date | null;
  /** Verifies that found the view different from its definition (and repaired it). */
  verify_mismatches: number;
}

/** The columns of sql.status as they come, before loadStatus() nests the incremental ones. */
type StatusColumns = Omit<StatusRow, 'lock_holders' | 'incremental'> & {
  [K in keyof IncrementalStatus as `incremental_${K}`]: IncrementalStatus[K] | null;
};

function nestIncremental(r: StatusColumns): Omit<StatusRow, 'lock_holders'> {
  const {
    incremental_last_apply_kind: last_apply_kind,
    incremental_last_apply_keys: last_apply_keys,
    incremental_last_apply_ms: last_apply_ms,
    incremental_last_apply_at: last_apply_at,
    incremental_last_full_ms: last_full_ms,
    incremental_last_verify_at: last_verify_at,
    incremental_verify_mismatches: verify_mismatches,
    ...rest
  } = r;
  return {
    ...rest,
    incremental:
      r.mode === 'incremental'
        ? {
            last_apply_kind,
            last_apply_keys,
            last_apply_ms,
            last_apply_at,
            last_full_ms,
            last_verify_at,
            verify_mismatches: verify_mismatches ?? 0,
          }
        : null,
  };
}

/**
 * mvrefresh.status with the sessions holding each view's lock (from pg_locks, outside the view, so that this
 * build reads a status view of any compatible schema).
 */
export async function loadStatus(db: pg.ClientBase | pg.Pool): Promise<StatusRow[]> {
  const [{ rows }, holders] = await Promise.all([
    db.query<StatusColumns>(sql.status),
    db.query<{ view_id: number; holder: string }>(sql.viewLockHolders),
  ]);
  return rows.map((r) => ({
    ...nestIncremental(r),
    lock_holders: holders.rows.filter((h) => h.view_id === r.id).map((h) => h.holder),
  }));
}

/**
 * SQLSTATEs refresh_view() records for a watched view that no longer exists as a materialized view:
 * dropped or renamed (42P01), or replaced by another kind of relation (42809).
 */
export const GONE_SQLSTATES: ReadonlySet<string> = new Set(['42P01', '42809']);

/**
 * The view is gone (dropped or renamed): not a failure to retry or alert on, but a registration to remove
 * (`mvrefresh unwatch`) unless the application re-creates it, which the daemon then refreshes again.
 */
export function isGone(r: Pick<StatusRow, 'consecutive_failures' | 'last_sqlstate'>): boolean {
  return r.consecutive_failures > 0 && r.last_sqlstate !== null && GONE_SQLSTATES.has(r.last_sqlstate);
}

/** What a view's warnings say it cannot see (its blind spots), in a word each: clock, functions, ... */
export function blindSpots(warnings: readonly string[]): string[] {
  const spots = new Set<string>();
  for (const w of warnings) {
    if (/depends on the clock or on randomness/.test(w)) spots.add('clock');
    else if (/ calls function /.test(w)) spots.add('functions');
    else if (/ is a foreign table/.test(w)) spots.add('foreign table');
    else if (/applied by logical replication/.test(w)) spots.add('replication');
  }
  return [...spots];
}

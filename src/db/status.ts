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
  /** How changes of the sources after watch are found: at once (DDL event trigger) or periodically. */
  drift_detection: 'event_trigger' | 'periodic_check';
}

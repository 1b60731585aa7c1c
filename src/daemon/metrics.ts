import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DRIFT_KINDS } from '../db/protocol.js';
import { DRIFT_CHECK_REASONS, DRIFT_CHECK_RESULTS, SWEEP_REASONS } from '../interfaces.js';

/** Every metric the daemon exports, on a registry of its own (no global state). */
export class Metrics {
  readonly registry = new Registry();
  readonly refreshes = new Counter({
    name: 'mvrefresh_refreshes_total',
    help: 'Refresh cycles by view, outcome and cause (what made the view due).',
    labelNames: ['view', 'outcome', 'cause'] as const,
    registers: [this.registry],
  });
  readonly refreshFailures = new Counter({
    name: 'mvrefresh_refresh_failures_total',
    help: 'Failed refresh cycles by view, outcome (failed: recorded on the view; error: the database could not record it) and SQLSTATE (none when the error had none, e.g. a lost connection).',
    labelNames: ['view', 'outcome', 'sqlstate'] as const,
    registers: [this.registry],
  });
  readonly refreshDuration = new Histogram({
    name: 'mvrefresh_refresh_duration_seconds',
    help: 'Duration of the REFRESH statement of successful cycles.',
    labelNames: ['view'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly staleness = new Gauge({
    name: 'mvrefresh_view_staleness_seconds',
    help: 'Seconds since the oldest write not yet reflected in the view (0 when fresh).',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly consecutiveFailures = new Gauge({
    name: 'mvrefresh_view_consecutive_failures',
    help: 'Failed refresh cycles of the view since its last success.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly stateReadOk = new Gauge({
    name: 'mvrefresh_state_read_ok',
    help: "1 when the last read of mvrefresh's state (view_state, for the per-view staleness and failure gauges) succeeded, 0 when it failed (privileges revoked, the table locked, the database away): then those gauges are absent rather than stale.",
    registers: [this.registry],
  });
  readonly stateLastReadTimestamp = new Gauge({
    name: 'mvrefresh_state_last_read_timestamp_seconds',
    help: "When mvrefresh's state was last read successfully (Unix time); absent before the first read.",
    registers: [this.registry],
  });
  readonly failureRecordsFailed = new Counter({
    name: 'mvrefresh_failure_records_failed_total',
    help: 'Failed refresh cycles that could not be recorded in the database (read-only transactions, privileges, the table locked): mvrefresh_view_consecutive_failures does not count them.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly targetSeconds = new Gauge({
    name: 'mvrefresh_view_target_seconds',
    help: 'Staleness target of the view.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly budgetShare = new Gauge({
    name: 'mvrefresh_view_budget_share',
    help: 'Share of time the view may spend refreshing (its refresh budget).',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly budgetInUse = new Gauge({
    name: 'mvrefresh_view_budget_in_use_share',
    help: 'Share of the last minute this process spent refreshing the view (refresh time / time).',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly achievableStaleness = new Gauge({
    name: 'mvrefresh_view_achievable_staleness_seconds',
    help: 'Worst staleness the budget allows under a steady stream of writes (expected refresh time / budget + expected refresh time); above the target: the target cannot be met.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly targetMisses = new Counter({
    name: 'mvrefresh_view_target_misses_total',
    help: 'Refreshes that ended later than the staleness target after the oldest write they covered.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly lockHeldSeconds = new Gauge({
    name: 'mvrefresh_view_lock_held_seconds',
    help: "How long the view's lock has been held by another session (cycles found it busy); absent when not.",
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'mvrefresh_notifications_total',
    help: 'Notifications received, by kind: table (a table that watched views read turned dirty), view (a watched view: dependants of a refresh, watch), unknown (no known view or table), ddl (the event trigger saw DDL), reload (watch or unwatch ran), invalid (malformed payload).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly sweeps = new Counter({
    name: 'mvrefresh_sweeps_total',
    help: `Sweeps of the dirty flags, by reason (${SWEEP_REASONS.join(', ')}) and result (ok, error).`,
    labelNames: ['reason', 'result'] as const,
    registers: [this.registry],
  });
  readonly sweepDuration = new Histogram({
    name: 'mvrefresh_sweep_duration_seconds',
    help: 'Duration of the sweep query.',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly sourceDrift = new Counter({
    name: 'mvrefresh_source_drift_total',
    help: `Drift found and repaired, by view and kind (${DRIFT_KINDS.join(', ')}); each marks the view dirty.`,
    labelNames: ['view', 'kind'] as const,
    registers: [this.registry],
  });
  readonly driftChecks = new Counter({
    name: 'mvrefresh_drift_checks_total',
    help: `Checks of the views' sources against the catalog, by reason (${DRIFT_CHECK_REASONS.join(', ')}) and result (${DRIFT_CHECK_RESULTS.join(', ')}).`,
    labelNames: ['reason', 'result'] as const,
    registers: [this.registry],
  });
  readonly driftCheckLastSuccess = new Gauge({
    name: 'mvrefresh_drift_check_last_success_timestamp_seconds',
    help: 'When a drift check last completed (Unix time); set at start, so that a check that never succeeds ages it.',
    registers: [this.registry],
  });
  readonly driftCheckDuration = new Histogram({
    name: 'mvrefresh_drift_check_duration_seconds',
    help: 'Duration of a drift check (every watched view compared with the catalog).',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'mvrefresh_queue_depth',
    help: 'Refresh jobs by state: waiting (planned by target and budget, or a retry), queued, running.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly listenerConnected = new Gauge({
    name: 'mvrefresh_listener_connected',
    help: '1 while the LISTEN connection is up.',
    registers: [this.registry],
  });
  readonly listenerDelivering = new Gauge({
    name: 'mvrefresh_listener_delivering',
    help: '0 while the last heartbeat found that notifications from other sessions do not reach the LISTEN connection (a transaction pooler: refreshes wait for the sweep), else 1.',
    registers: [this.registry],
  });
  readonly listenerUndelivered = new Counter({
    name: 'mvrefresh_listener_undelivered_total',
    help: 'Heartbeats whose notification from another session never reached the LISTEN connection although it answered.',
    registers: [this.registry],
  });
  readonly listenerReconnects = new Counter({
    name: 'mvrefresh_listener_reconnects_total',
    help: 'Successful reconnections of the LISTEN connection.',
    registers: [this.registry],
  });
  readonly viewMode = new Gauge({
    name: 'mvrefresh_view_mode',
    help: "1 for the view's mode: full (REFRESH) or incremental (watch --incremental); reason: for a full view whose --incremental was refused, the clause that needs a full refresh (else empty).",
    labelNames: ['view', 'mode', 'reason'] as const,
    registers: [this.registry],
  });
  readonly applyKeys = new Histogram({
    name: 'mvrefresh_apply_keys',
    help: "Keys recomputed by each apply of an incremental view (a full recompute counts the view's keys it rewrote).",
    labelNames: ['view'] as const,
    buckets: [0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000],
    registers: [this.registry],
  });
  readonly incrementalFull = new Counter({
    name: 'mvrefresh_incremental_full_total',
    help: 'Applies of an incremental view that recomputed it in full, by reason (truncate, drift, threshold, verify, no applied snapshot, ...).',
    labelNames: ['view', 'reason'] as const,
    registers: [this.registry],
  });
  readonly incrementalVerifies = new Counter({
    name: 'mvrefresh_incremental_verifies_total',
    help: "The daemon's periodic verifies of incremental views, by result: ok, mismatch (found different and repaired), busy (the view's lock was held: skipped), error.",
    labelNames: ['view', 'result'] as const,
    registers: [this.registry],
  });
  readonly incrementalVerifyMismatch = new Counter({
    name: 'mvrefresh_incremental_verify_mismatch_total',
    help: 'Verifies that found an incremental view different from its definition (error log incremental_verify_mismatch; repaired).',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });

  readonly logVacuums = new Counter({
    name: 'mvrefresh_log_vacuums_total',
    help: "VACUUMs of an incremental view's change log by the daemon (log_vacuum), by log table.",
    labelNames: ['table'] as const,
    registers: [this.registry],
  });

  readonly autovacuumEnabled = new Gauge({
    name: 'mvrefresh_autovacuum_enabled',
    help: '1 when the server runs autovacuum (autovacuum and track_counts on), 0 when not.',
    registers: [this.registry],
  });
  readonly tableDeadRows = new Gauge({
    name: 'mvrefresh_table_dead_rows',
    help: "Dead rows of the catalogs that REFRESH ... CONCURRENTLY churns and of mvrefresh's tables (pg_stat_all_tables.n_dead_tup).",
    labelNames: ['table'] as const,
    registers: [this.registry],
  });
  readonly tableBytes = new Gauge({
    name: 'mvrefresh_table_bytes',
    help: "Size of the catalogs that REFRESH ... CONCURRENTLY churns and of mvrefresh's tables, indexes included.",
    labelNames: ['table'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'mvrefresh_' });
    // a counter's series that first appears at 1 shows no increase(): the first failed check would go
    // unseen by MvrefreshDriftCheckFailing, and the series would be absent from the scrape until then
    for (const reason of DRIFT_CHECK_REASONS)
      for (const result of DRIFT_CHECK_RESULTS) this.driftChecks.inc({ reason, result }, 0);
  }

  /**
   * Starts at 0 the per-view counters that alerts read through increase() (MvrefreshFailuresUnrecorded,
   * MvrefreshTriggerBypassed), for every watched view: otherwise the first unrecorded failure or bypassed
   * trigger of a view creates its series at 1, which increase() does not count. Idempotent.
   */
  knowViews(views: Iterable<string>): void {
    for (const view of views) {
      this.failureRecordsFailed.inc({ view }, 0);
      for (const kind of DRIFT_KINDS) this.sourceDrift.inc({ view, kind }, 0);
    }
  }

  /**
   * Starts at 0 the counters of every incremental view that alerts read through increase()
   * (MvrefreshIncrementalMismatch, MvrefreshIncrementalMostlyFull). Idempotent.
   */
  knowIncrementalViews(views: Iterable<string>): void {
    for (const view of views) {
      this.incrementalVerifyMismatch.inc({ view }, 0);
      this.incrementalFull.inc({ view, reason: 'threshold' }, 0);
    }
  }
}

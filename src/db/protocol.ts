/**
 * Constants that the TypeScript side and the SQL routines (migrations/routines/) must agree on. The routines
 * name them as {{NAME}} placeholders, filled in from sqlConstants when `migrate` loads them: this file is
 * their only home.
 */

/** First key of every advisory lock mvrefresh takes ('mvrf'); the second is a view id or one of the *_LOCK_KEYs. */
export const LOCK_NAMESPACE = 1836479078;
/**
 * The notification channel. Payloads: a view id in decimal (the view is dirty), 't' and a table's oid (a
 * writer marked the table: routines/mark_table.sql), SCHEMA_CHANGED, DDL_CHANGED or VIEWS_CHANGED.
 */
export const CHANNEL = 'mvrefresh';
/** Sent by `migrate` after it changed the schema, so that running daemons check their compatibility. */
export const SCHEMA_CHANGED = 'schema';
/**
 * Sent by the event trigger (migrations/ddl-watch/install.sql) at the commit of DDL that may change what a watched
 * view reads: running daemons run their drift check at once.
 */
export const DDL_CHANGED = 'ddl';
/**
 * Sent by `watch` and `unwatch` (the CLI, after their transaction committed): running daemons reload the
 * list of views and their settings at once instead of at the next sweep.
 */
export const VIEWS_CHANGED = 'reload';

/**
 * First key of the session advisory lock that an executor of a replace request holds while it carries it
 * out ('mvrg'); the second is the request's id (migrations/0014_replace.sql).
 */
export const REPLACE_LOCK_NAMESPACE = 1836479079;
/** The channel on which request_replace() announces a new request: daemons carry it out after the commit. */
export const REPLACE_CHANNEL = 'mvrefresh_replace';

/** Second key of the lock that serializes migrations. */
export const MIGRATION_LOCK_KEY = 0;
/** Second key of the lock that serializes watch, unwatch and the drift check (routines/watch.sql, unwatch.sql, check_drift.sql). */
export const WATCH_LOCK_KEY = -1;
/**
 * Second key of the clear lock: every transaction that deletes table marks holds it shared while it runs
 * (routines/begin_clear.sql); settle_clears() takes it exclusively, without waiting, to learn that none runs.
 */
export const CLEAR_LOCK_KEY = -2;

/**
 * How long watch / unwatch wait for a table lock to change a trigger before they fail and retry
 * (src/db/lock-retry.ts): the longest the application's writers can queue behind them.
 */
export const DDL_LOCK_TIMEOUT_MS = 200;

/**
 * How long the daemon's drift check waits for a table lock to repair a trigger: the application's writers
 * queue behind a waiting CREATE / ALTER TRIGGER, so it gives up soon and retries (src/daemon/checks/drift.ts).
 */
export const DRIFT_LOCK_TIMEOUT_MS = 200;

/**
 * How long after a session goes idle the cumulative statistics (pg_stat_user_tables) may still miss its
 * writes: PostgreSQL 15+ reports a backend's counters when it goes idle, at most once a second, within
 * 10 s. The drift check reads the write counters with this slack (routines/check_drift.sql,
 * writes_may_be_unreported.sql).
 */
export const STATS_REPORT_DELAY_MS = 15_000;

/** When to look again at a view whose lock another session holds, or whose long writers still run. */
export const RETRY_MS = 1000;
/**
 * How soon after a write a failed view is tried again instead of when its backoff ends (the write may
 * have fixed what failed).
 */
export const EARLY_RETRY_MS = 500;
/**
 * The random_page_cost (at most) of an apply by key (routines/apply_view.sql): the indexes its statements
 * probe (the view's key, the sources' keys and join columns) are touched by every apply and stay in memory,
 * and a page read at the default 4 makes the planner hash a whole table for a batch of a few thousand rows.
 * 1.1, the usual figure for data in memory or on SSD. A full recompute keeps the session's setting.
 */
export const APPLY_RANDOM_PAGE_COST = 1.1;

/** Failure backoff: the daemon's defaults, and what refresh_dirty() (no daemon, no config) uses. */
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 300_000;
/**
 * Every backoff, the database's (routines/record_failure.sql) and the daemon's (src/daemon/backoff.ts), is
 * "equal jitter": attempt n waits min(max, base * 2^(n-1)) times a factor drawn uniformly from
 * [1 - BACKOFF_JITTER, 1], so that replicas do not retry in step while none retries much sooner than
 * the exponential curve says.
 */
export const BACKOFF_JITTER = 0.5;

/** Outcomes of mvrefresh.refresh_view() (routines/refresh_view.sql). */
export const OUTCOMES = [
  'refreshed',
  'populated',
  'refreshed_blocking',
  'clean',
  'busy',
  'waiting',
  'unwatched',
  'paused',
  'failed',
] as const;
export type CycleOutcome = (typeof OUTCOMES)[number];
/** The outcomes in which the view's contents were recomputed. */
export const SUCCESS_OUTCOMES = [
  'refreshed',
  'populated',
  'refreshed_blocking',
] as const satisfies readonly CycleOutcome[];
/** Whether a cycle's outcome recomputed the view's contents. */
export const isSuccess = (outcome: string): boolean =>
  (SUCCESS_OUTCOMES as readonly string[]).includes(outcome);

/**
 * What mvrefresh.check_drift() found, one kind per change it reports (its `kinds` column), and the kind
 * label of mvrefresh_source_drift_total. The routines name each as {{DRIFT_<KIND>}}; drift_findings.kind
 * holds the event kinds (unmarked_writes, unmarked_truncate).
 *  - source_added, source_removed, definition: the view's sources changed;
 *  - trigger: a table's trigger is missing, disabled or not ENABLE ALWAYS (repaired by the check);
 *  - foreign_trigger, replica_trigger: a trigger named mvrefresh_mark that is not ours, or ENABLE REPLICA on
 *    a table this role does not own: standing conditions only the table's owner can end, found (and their
 *    views marked) at every check;
 *  - unmarked_writes, unmarked_truncate: writes or a truncate that fired no trigger;
 *  - repair_forbidden: this role may not bring a trigger in line (insufficient_privilege).
 */
export const DRIFT_KINDS = [
  'source_added',
  'source_removed',
  'definition',
  'trigger',
  'foreign_trigger',
  'replica_trigger',
  'unmarked_writes',
  'unmarked_truncate',
  'repair_forbidden',
] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

/**
 * Step 1's expression for a memo whose setting is named by the SQL expression `name` and whose hash input
 * starts with the SQL expression `prefix` (the table's part of it).
 */
const memoHit = (name: string, prefix: string) => `pg_catalog.current_setting(${name}, true)
       OPERATOR(pg_catalog.=)
       pg_catalog.sha256((${prefix}
           OPERATOR(pg_catalog.||) pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)::pg_catalog.text
           )::pg_catalog.bytea)::pg_catalog.text`;

/** The memo's setting name and the hash's prefix of the trigger's table, built from TG_RELID. */
const MEMO_NAME_OF_TRIGGER = `'mvrefresh.m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text`;
const MEMO_PREFIX_OF_TRIGGER = `'m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text OPERATOR(pg_catalog.||) ':'`;

/**
 * Step 1 of the mark step (routines/mark_table.sql): whether this session remembers a committed mark of
 * the trigger's table (TG_RELID), found while clears_started had the value it still has. One expression,
 * no query; every name qualified (the trigger functions that inline it have no SET clause). Inlined by
 * every trigger function that marks (mark_table(), capture_truncate(), the generated capture functions of
 * src/incremental/capture.ts), which call mvrefresh.mark_relid() only when it is false: memoHit() is
 * the one text of the check, so the memo that mark_relid() writes and the check that reads it cannot part.
 */
export const MARK_MEMO_HIT = memoHit(MEMO_NAME_OF_TRIGGER, MEMO_PREFIX_OF_TRIGGER);

/**
 * MARK_MEMO_HIT for a trigger function of one table only (a capture function of src/incremental/capture.ts,
 * named after its table's oid, which a table keeps for life): the same memo, with the setting's name and
 * the hash's prefix written out instead of built from TG_RELID in every statement (docs/benchmarks.md: 1-7%
 * more TPS for 8 writers at synchronous_commit on). Migration 18 rewrites capture functions generated before.
 */
export function markMemoHitOf(relid: string): string {
  if (!/^[0-9]+$/.test(relid)) throw new Error(`markMemoHitOf: not an oid: ${JSON.stringify(relid)}`);
  return memoHit(`'mvrefresh.m${relid}'`, `'m${relid}:'`);
}

/**
 * The capture triggers of an incremental view's source, per event (src/incremental/capture.ts); doctor,
 * the drift check and capture_marks() look for them by these names.
 */
export const CAPTURE_TRIGGERS = {
  ins: 'mvrefresh_cap_ins',
  upd: 'mvrefresh_cap_upd',
  del: 'mvrefresh_cap_del',
  trunc: 'mvrefresh_cap_trunc',
} as const;

export const sqlList = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

/** The values of the routines' {{NAME}} placeholders, as SQL literals. */
export const sqlConstants: Readonly<Record<string, string>> = Object.freeze({
  LOCK_NAMESPACE: String(LOCK_NAMESPACE),
  WATCH_LOCK_KEY: String(WATCH_LOCK_KEY),
  CHANNEL: `'${CHANNEL}'`,
  REPLACE_LOCK_NAMESPACE: String(REPLACE_LOCK_NAMESPACE),
  REPLACE_CHANNEL: `'${REPLACE_CHANNEL}'`,
  CLEAR_LOCK_KEY: String(CLEAR_LOCK_KEY),
  DDL_CHANGED: `'${DDL_CHANGED}'`,
  RETRY_MS: String(RETRY_MS),
  APPLY_RANDOM_PAGE_COST: String(APPLY_RANDOM_PAGE_COST),
  DDL_LOCK_TIMEOUT: `'${DDL_LOCK_TIMEOUT_MS}ms'`,
  STATS_REPORT_DELAY: `'${STATS_REPORT_DELAY_MS}ms'`,
  BACKOFF_BASE_MS: String(BACKOFF_BASE_MS),
  BACKOFF_MAX_MS: String(BACKOFF_MAX_MS),
  BACKOFF_JITTER: String(BACKOFF_JITTER),
  SUCCESS_OUTCOMES: sqlList(SUCCESS_OUTCOMES),
  MARK_MEMO_HIT,
  MEMO_NAME_OF_TRIGGER,
  MEMO_PREFIX_OF_TRIGGER,
  CAPTURE_INS: `'${CAPTURE_TRIGGERS.ins}'`,
  CAPTURE_UPD: `'${CAPTURE_TRIGGERS.upd}'`,
  CAPTURE_DEL: `'${CAPTURE_TRIGGERS.del}'`,
  CAPTURE_TRUNC: `'${CAPTURE_TRIGGERS.trunc}'`,
  ...Object.fromEntries(DRIFT_KINDS.map((kind) => [`DRIFT_${kind.toUpperCase()}`, `'${kind}'`])),
});

/**
 * Constants that the TypeScript side and the SQL routines (migrations/routines/) must agree on. The routines
 * name them as {{NAME}} placeholders, filled in from sqlConstants when `migrate` loads them: this file is
 * their only home.
 */

/** First key of every advisory lock mvrefresh takes ('mvrf'); the second is a view id, 0 or -1. */
export const LOCK_NAMESPACE = 1836479078;
/** The notification channel: payloads are a view id in decimal, or SCHEMA_CHANGED. */
export const CHANNEL = 'mvrefresh';
/** Sent by `migrate` after it changed the schema, so that running daemons check their compatibility. */
export const SCHEMA_CHANGED = 'schema';

/** Second key of the lock that serializes migrations. */
export const MIGRATION_LOCK_KEY = 0;

/**
 * How long watch / unwatch wait for a table lock to change a trigger before they fail and retry
 * (src/db/lock-retry.ts): the longest the application's writers can queue behind them.
 */
export const DDL_LOCK_TIMEOUT_MS = 200;

/** When to look again at a view whose lock another session holds, or whose long writers still run. */
export const RETRY_MS = 1000;

/** Failure backoff: the daemon's defaults, and what refresh_dirty() (no daemon, no config) uses. */
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 300_000;

/** Outcomes of mvrefresh.refresh_view(). */
export const OUTCOMES = [
  'refreshed',
  'populated',
  'refreshed_blocking',
  'clean',
  'busy',
  'waiting',
  'unwatched',
  'failed',
] as const;
export type CycleOutcome = (typeof OUTCOMES)[number];
/** The outcomes in which the view's contents were recomputed. */
export const SUCCESS_OUTCOMES = [
  'refreshed',
  'populated',
  'refreshed_blocking',
] as const satisfies readonly CycleOutcome[];

const sqlList = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

/** The values of the routines' {{NAME}} placeholders, as SQL literals. */
export const sqlConstants: Readonly<Record<string, string>> = Object.freeze({
  LOCK_NAMESPACE: String(LOCK_NAMESPACE),
  CHANNEL: `'${CHANNEL}'`,
  RETRY_MS: String(RETRY_MS),
  DDL_LOCK_TIMEOUT: `'${DDL_LOCK_TIMEOUT_MS}ms'`,
  BACKOFF_BASE_MS: String(BACKOFF_BASE_MS),
  BACKOFF_MAX_MS: String(BACKOFF_MAX_MS),
  SUCCESS_OUTCOMES: sqlList(SUCCESS_OUTCOMES),
});

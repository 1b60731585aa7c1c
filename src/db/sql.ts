import { LOCK_NAMESPACE, MIGRATION_LOCK_KEY } from './protocol.js';

/**
 * Every SQL statement the TypeScript side sends, in one place. Identifiers never come from input: view
 * names are bound as values and resolved by the functions of migrations/.
 */
export const sql = {
  // migrations
  migrationLock: `SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${MIGRATION_LOCK_KEY})`,
  setLocalLockTimeout: "SELECT set_config('lock_timeout', $1, true)",
  createSchema: 'CREATE SCHEMA IF NOT EXISTS mvrefresh',
  createMigrationsTable: `CREATE TABLE IF NOT EXISTS mvrefresh.migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      breaking boolean NOT NULL DEFAULT false)`,
  // version 4 added the column; a database migrated by an earlier build has the table without it
  addMigrationsBreaking:
    'ALTER TABLE mvrefresh.migrations ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT false',
  appliedMigrations: 'SELECT version FROM mvrefresh.migrations ORDER BY version',
  recordMigration: 'INSERT INTO mvrefresh.migrations (version, name, breaking) VALUES ($1, $2, $3)',
  appliedRoutines: 'SELECT name, sha256 FROM mvrefresh.routines',
  recordRoutine: `INSERT INTO mvrefresh.routines (name, sha256) VALUES ($1, $2)
                  ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()`,
  notify: 'SELECT pg_notify($1, $2)',
  syncTableTriggers: 'SELECT mvrefresh.sync_table_triggers()',
  installDdlWatch: 'SELECT mvrefresh.install_ddl_watch() AS installed',
  /** The newest version, and the newest that breaks daemons of earlier versions (0: none). */
  schemaCompatibility: `SELECT max(version) AS version,
                               COALESCE(max(version) FILTER (WHERE breaking), 0) AS breaking_version
                          FROM mvrefresh.migrations`,
  schemaInstalled: "SELECT to_regclass('mvrefresh.migrations') IS NOT NULL AS installed",
  schemaVersion: 'SELECT max(version) AS version FROM mvrefresh.migrations',
  inRecovery: 'SELECT pg_is_in_recovery() AS in_recovery',

  // watch / unwatch / status
  watch: 'SELECT mvrefresh.watch($1, $2, $3, $4, $5, $6) AS report',
  unwatch: 'SELECT mvrefresh.unwatch($1) AS report',
  unwatchAll: 'SELECT mvrefresh.unwatch_all() AS report',
  status: `SELECT id, view, dirty, cycle_unfinished, dirty_since, staleness_seconds, last_refreshed_at,
                  last_duration_ms, last_outcome, last_error, last_sqlstate, last_error_at,
                  consecutive_failures, next_attempt_at, debounce_ms, max_wait_ms, refresh_interval_ms,
                  allow_blocking_refresh, depth, sources, warnings, depends_on, drift_detection
             FROM mvrefresh.status ORDER BY depth, view`,

  // the daemon
  listViews: `SELECT s.id, s.view, s.debounce_ms, s.max_wait_ms, s.refresh_interval_ms,
                     v.source_relids::text[] AS source_relids
                FROM mvrefresh.status s JOIN mvrefresh.view_state v ON v.id = s.id ORDER BY s.depth, s.id`,
  dueViews: 'SELECT view_id, reason FROM mvrefresh.due_views()',
  checkDrift: 'SELECT view_id, view, changes, triggers_synced FROM mvrefresh.check_drift($1)',
  refreshView:
    'CALL mvrefresh.refresh_view($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)',
  recordFailure: 'SELECT mvrefresh.record_failure($1, $2, $3, $4, $5, $6) AS retry_in_ms',
  cancelBackend: 'SELECT pg_cancel_backend($1)',
  serverVersion: "SELECT current_setting('server_version_num')::integer AS version",
  ping: 'SELECT 1',
} as const;

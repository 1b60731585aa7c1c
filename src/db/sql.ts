import pg from 'pg';
import { CAPTURE_TRIGGERS, LOCK_NAMESPACE, MIGRATION_LOCK_KEY, sqlList } from './protocol.js';

const { escapeIdentifier } = pg;

/** How much of a lock holder's current query a report shows. */
const LOCK_HOLDER_QUERY_CHARS = 200;

/** The capture triggers' names as an SQL list. */
const CAPTURE_LIST = sqlList(Object.values(CAPTURE_TRIGGERS));

/**
 * Every SQL statement the TypeScript side sends, in one place. Identifiers never come from input: view
 * names are bound as values and resolved by the functions of migrations/.
 */
export const sql = {
  // migrations
  migrationLock: `SELECT pg_catalog.pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${MIGRATION_LOCK_KEY})`,
  setLocalLockTimeout: "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
  createSchema: 'CREATE SCHEMA IF NOT EXISTS mvrefresh',
  // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a DDL role given
  // the schema (mvrefresh grants) has no such privilege
  schemaExists: "SELECT pg_catalog.to_regnamespace('mvrefresh') IS NOT NULL AS exists",
  createMigrationsTable: `CREATE TABLE IF NOT EXISTS mvrefresh.migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
      breaking boolean NOT NULL DEFAULT false)`,
  // version 4 added the column; a database migrated by an earlier build has the table without it
  addMigrationsBreaking:
    'ALTER TABLE mvrefresh.migrations ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT false',
  appliedMigrations: 'SELECT version FROM mvrefresh.migrations ORDER BY version',
  recordMigration: 'INSERT INTO mvrefresh.migrations (version, name, breaking) VALUES ($1, $2, $3)',
  appliedRoutines: 'SELECT name, sha256 FROM mvrefresh.routines',
  recordRoutine: `INSERT INTO mvrefresh.routines (name, sha256) VALUES ($1, $2)
                  ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = pg_catalog.now()`,
  notify: 'SELECT pg_catalog.pg_notify($1, $2)',
  syncTableTriggers: 'SELECT mvrefresh.sync_table_triggers()',
  settleClears: 'SELECT mvrefresh.settle_clears()',
  /**
   * Whether both DDL event triggers are enabled and execute the function that migrations/ddl-watch/install.sql
   * creates, in the schema the installer owns (not a function of schema mvrefresh, which the DDL role owns).
   */
  ddlWatchInPlace: `SELECT pg_catalog.count(*) = 2 AS in_place
                      FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
                      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                     WHERE e.evtname IN ('mvrefresh_ddl', 'mvrefresh_drop') AND e.evtenabled <> 'D'
                       AND n.nspname = 'mvrefresh_ddl_watch' AND p.proname = 'ddl_changed'
                       AND n.nspowner = p.proowner AND e.evtowner = p.proowner
                       AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger r
                                    WHERE r.evtname = 'mvrefresh_refresh' AND r.evtenabled <> 'D' AND r.evtfoid =
                                          pg_catalog.to_regprocedure('mvrefresh_ddl_watch.refresh_guard()'))`,
  /**
   * A superuser about to migrate a schema that a role without superuser owns: migrate would execute that
   * role's functions (sync_table_triggers(), any routine whose recorded hash it forged) with superuser rights.
   */
  schemaOwnerBelowMigrator: `SELECT r.rolname AS owner
                               FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                              WHERE n.nspname = 'mvrefresh' AND NOT r.rolsuper
                                AND (SELECT m.rolsuper FROM pg_catalog.pg_roles m WHERE m.rolname = CURRENT_USER)`,
  /** The session's search_path: where the names a user types are looked up. */
  searchPath: "SELECT pg_catalog.current_setting('search_path') AS search_path",
  /** Sets search_path ($1) for the session ($2 false) or the transaction ($2 true): see SAFE_SEARCH_PATH. */
  pinSearchPath: "SELECT pg_catalog.set_config('search_path', $1, $2)",
  /** The newest version, and the newest that breaks daemons of earlier versions (0: none). */
  schemaCompatibility: `SELECT pg_catalog.max(version) AS version,
                               COALESCE(pg_catalog.max(version) FILTER (WHERE breaking), 0) AS breaking_version
                          FROM mvrefresh.migrations`,
  schemaInstalled: "SELECT pg_catalog.to_regclass('mvrefresh.migrations') IS NOT NULL AS installed",
  schemaVersion: 'SELECT pg_catalog.max(version) AS version FROM mvrefresh.migrations',
  inRecovery: 'SELECT pg_catalog.pg_is_in_recovery() AS in_recovery',

  /**
   * What `mvrefresh grants --view` grants on: the materialized views named ($1) and those they read, and
   * every table they read through plain and materialized views, with partitions and inheritance children
   * (watch installs triggers on all of them). Names come back quoted (format %I).
   */
  grantTargets: `WITH RECURSIVE walk(rel) AS (
                   SELECT pg_catalog.to_regclass(n)::oid FROM pg_catalog.unnest($1::text[]) n
                   UNION
                   SELECT d.refobjid FROM walk w
                     JOIN pg_class wc ON wc.oid = w.rel AND wc.relkind IN ('v', 'm')
                     JOIN pg_rewrite r ON r.ev_class = w.rel
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                     AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.rel),
                 tree(rel) AS (
                   SELECT rel FROM walk
                   UNION
                   SELECT i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel)
                 SELECT DISTINCT c.relkind AS kind, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
                        pg_catalog.quote_ident(n.nspname) AS schema
                   FROM tree t JOIN pg_class c ON c.oid = t.rel JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p', 'f', 'm')
                  ORDER BY 2`,
  unresolvedViews: `SELECT n FROM pg_catalog.unnest($1::text[]) n WHERE pg_catalog.to_regclass(n) IS NULL`,

  // watch / unwatch / status
  // the last argument: the search_path in which the user's name ($1) is looked up; NULL: this session's
  watch: `SELECT mvrefresh.watch($1, $2, $3, $4, $5, $6, $7, $8,
                                 COALESCE($9, pg_catalog.current_setting('search_path'))) AS report`,
  setSettings: `SELECT mvrefresh.set_settings($1, $2, $3, $4, COALESCE($5, pg_catalog.current_setting('search_path')))
                  AS report`,
  setPaused: `SELECT mvrefresh.set_paused($1, $2, COALESCE($3, pg_catalog.current_setting('search_path')))
                AS report`,
  unwatch: "SELECT mvrefresh.unwatch($1, COALESCE($2, pg_catalog.current_setting('search_path'))) AS report",
  unwatchAll: 'SELECT mvrefresh.unwatch_all() AS report',
  status: `SELECT id, view, dirty, cycle_unfinished, dirty_since, staleness_seconds, last_refreshed_at,
                  last_duration_ms, last_outcome, last_error, last_sqlstate, last_error_at,
                  consecutive_failures, next_attempt_at, debounce_ms, max_wait_ms, refresh_interval_ms,
                  allow_blocking_refresh, depth, sources, warnings, depends_on, max_staleness_ms,
                  refresh_budget, paused, target_misses, last_miss_staleness_ms, drift_detection, mode,
                  mode_reason, incremental_last_apply_kind, incremental_last_apply_keys,
                  incremental_last_apply_ms, incremental_last_apply_at, incremental_last_full_ms,
                  incremental_last_verify_at, incremental_verify_mismatches::float8
             FROM mvrefresh.status ORDER BY depth, view`,
  /** Sessions holding a view's advisory lock (second key: the view id), for status and /views. */
  viewLockHolders: `SELECT l.objid::bigint::integer AS view_id,
                           pg_catalog.format('pid %s, role %s, application %s, since %s', l.pid, COALESCE(a.usename, '?'),
                                  pg_catalog.quote_literal(COALESCE(a.application_name, '')),
                                  COALESCE(a.xact_start, a.backend_start)) AS holder
                      FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = pg_catalog.current_database())
                       AND l.classid = ${LOCK_NAMESPACE}::bigint::oid AND l.objid::bigint BETWEEN 1 AND 2147483647
                     ORDER BY l.pid`,
  /**
   * Sessions holding one of mvrefresh's advisory locks (namespace, $1): a view id, the migration, watch or
   * clear key; only exclusive holders when $3 (those that block a shared request). Two-int4 keys appear in
   * pg_locks as classid, objid (unsigned) and objsubid 2. The query is cut short: it is for a human to
   * recognize the session, and other roles' queries read '<insufficient privilege>' anyway.
   */
  lockHolders: `SELECT l.pid, COALESCE(a.usename, '?') AS role, COALESCE(a.application_name, '') AS application,
                       COALESCE(a.xact_start, a.backend_start) AS since, a.state,
                       pg_catalog.left(a.query, ${LOCK_HOLDER_QUERY_CHARS}) AS query,
                       COALESCE(a.usename = current_user AND a.application_name = $2, false) AS ours
                  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.pid <> pg_catalog.pg_backend_pid()
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = pg_catalog.current_database())
                   AND l.classid = ${LOCK_NAMESPACE}::bigint::oid AND l.objid = ($1::bigint & 4294967295)::oid
                   AND (NOT $3::boolean OR l.mode = 'ExclusiveLock')
                 ORDER BY l.pid`,
  adminSession: `SELECT pg_catalog.set_config('lock_timeout', $1, false),
                        CASE WHEN pg_catalog.current_setting('server_version_num')::integer >= 140000
                             THEN pg_catalog.set_config('client_connection_check_interval', $2, false) END`,

  // vacuum health (mvrefresh doctor, the daemon's VacuumCheck): the catalogs that REFRESH ... CONCURRENTLY
  // churns ($1) and mvrefresh's own tables
  vacuumSettings: `SELECT pg_catalog.current_setting('autovacuum') = 'on' AS autovacuum,
                          pg_catalog.current_setting('track_counts') = 'on' AS track_counts,
                          extract(epoch FROM pg_catalog.current_setting('autovacuum_naptime')::interval)::float8 AS naptime_s`,
  tableHealth: `SELECT CASE WHEN s.schemaname = 'pg_catalog' THEN s.relname::text
                            ELSE pg_catalog.format('%I.%I', s.schemaname, s.relname) END AS table,
                       s.n_live_tup::float8 AS live, s.n_dead_tup::float8 AS dead,
                       pg_catalog.pg_total_relation_size(s.relid)::float8 AS bytes,
                       extract(epoch FROM pg_catalog.clock_timestamp() - GREATEST(s.last_vacuum, s.last_autovacuum))::float8
                         AS vacuumed_ago_s,
                       NOT COALESCE('autovacuum_enabled=false' = ANY (c.reloptions)
                                    OR 'autovacuum_enabled=off' = ANY (c.reloptions), false) AS autovacuum_enabled
                  FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid
                 WHERE s.relid = ANY ($1::regclass[]::oid[]) OR (s.schemaname = 'mvrefresh' AND c.relkind = 'r')
                 ORDER BY 1`,

  // the daemon's LogVacuum: incremental views' change logs with at least $1 dead rows, more than their live
  // ones; allowed: whether this role may VACUUM it (PostgreSQL 17: MAINTAIN; before: the owner's rights)
  logVacuumCandidates: `SELECT pg_catalog.format('%I.%I', s.schemaname, s.relname) AS log,
                               s.n_dead_tup::float8 AS dead, s.n_live_tup::float8 AS live,
                               CASE WHEN pg_catalog.current_setting('server_version_num')::integer >= 170000
                                    THEN pg_catalog.has_table_privilege(s.relid, 'MAINTAIN')
                                    ELSE pg_catalog.pg_has_role(c.relowner, 'USAGE') END AS allowed
                          FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid
                         WHERE s.schemaname = 'mvrefresh' AND c.relkind = 'r' AND s.relname ~ '^log_[0-9]+$'
                           AND s.n_dead_tup >= $1 AND s.n_dead_tup > s.n_live_tup
                         ORDER BY s.n_dead_tup DESC`,

  // mvrefresh doctor
  doctorServer: `SELECT pg_catalog.current_setting('server_version_num')::integer AS version_num,
                        pg_catalog.current_setting('server_version') AS version, pg_catalog.pg_is_in_recovery() AS in_recovery,
                        pg_catalog.current_setting('max_connections')::integer AS max_connections,
                        (SELECT pg_catalog.count(*) FROM pg_stat_activity)::integer AS connections,
                        current_user AS current_role`,
  /** Watched views that REFRESH ... CONCURRENTLY cannot refresh, or that fail. */
  doctorViews: `SELECT pg_catalog.format('%I.%I', v.view_schema, v.view_name) AS view, c.relkind::text AS kind,
                       c.relispopulated AS populated, v.allow_blocking_refresh AS blocking_allowed, v.paused,
                       v.consecutive_failures AS failures, v.last_error, v.last_sqlstate,
                       EXISTS (SELECT FROM pg_index i
                                WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                                  AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_index,
                       c.oid IS NULL OR pg_catalog.pg_has_role($1::name, c.relowner, 'USAGE')
                         -- MAINTAIN is unknown before 17: CASE keeps it from being evaluated there; an
                         -- incremental view's apply writes as its owner: MAINTAIN is not enough
                         OR CASE WHEN $2::boolean AND c.relkind = 'm'
                                 THEN pg_catalog.has_table_privilege($1::name, c.oid, 'MAINTAIN')
                                 ELSE false END AS can_refresh,
                       EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = v.id AND i.state = 'active')
                         AS incremental
                  FROM mvrefresh.view_state v
                  LEFT JOIN pg_namespace n ON n.nspname = v.view_schema
                  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
                 ORDER BY 1`,
  /**
   * Tables a watched view reads whose mvrefresh_mark trigger is missing, disabled, ENABLE REPLICA (fires only
   * under session_replication_role = replica), or not ours (another function behind our trigger's name).
   * A table that only incremental views read has none (logged_only(), routines/capture_logs.sql). A schema
   * of versions 15 to 18 (doctorMarkRule says which) has capture_marks() instead, true where the capture
   * triggers marked the table; one older still counts the four capture triggers by name.
   */
  doctorTriggers: (rule: 'logged' | 'marks' | 'count') => `SELECT DISTINCT r.relid::regclass::text AS table,
                          t.tgenabled::text AS enabled,
                          t.oid IS NOT NULL AND t.tgfoid OPERATOR(pg_catalog.<>) 'mvrefresh.mark_table()'::pg_catalog.regprocedure AS foreign,
                          t.tgfoid::pg_catalog.regprocedure::text AS function,
                          c.relowner::pg_catalog.regrole::text AS owner
                     FROM mvrefresh.view_state v CROSS JOIN LATERAL pg_catalog.unnest(v.source_relids) AS r(relid)
                     JOIN pg_class c ON c.oid = r.relid AND c.relkind IN ('r', 'p')
                     LEFT JOIN pg_trigger t ON t.tgrelid = r.relid AND t.tgname = 'mvrefresh_mark'
                    WHERE (t.oid IS NULL OR t.tgenabled IN ('D', 'R')
                           OR t.tgfoid <> 'mvrefresh.mark_table()'::pg_catalog.regprocedure)
                      AND ${
                        rule === 'logged'
                          ? 'NOT mvrefresh.logged_only(r.relid)'
                          : rule === 'marks'
                            ? 'NOT mvrefresh.capture_marks(r.relid)'
                            : `(SELECT pg_catalog.count(*) FROM pg_trigger ct
                            WHERE ct.tgrelid = r.relid
                              AND ct.tgname IN (${CAPTURE_LIST})) OPERATOR(pg_catalog.<>) 4`
                      }
                    ORDER BY 1`,
  /** Which rule says where mvrefresh_mark belongs: logged_only() (version 19), capture_marks() (15 to 18). */
  doctorMarkRule: `SELECT pg_catalog.to_regprocedure('mvrefresh.logged_only(pg_catalog.oid)') IS NOT NULL AS logged,
                          pg_catalog.to_regprocedure('mvrefresh.capture_marks(pg_catalog.oid)') IS NOT NULL AS marks`,
  /**
   * Capture triggers of incremental views' sources that do not fire for ordinary writes (disabled, ENABLE
   * REPLICA): those writes log nothing until the drift check enables them again and recomputes the views.
   */
  doctorCaptureTriggers: `SELECT t.tgrelid::regclass::text AS table, t.tgname::text AS trigger, t.tgenabled::text AS enabled,
                                 c.relowner::pg_catalog.regrole::text AS owner
                            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                           WHERE t.tgname IN (${CAPTURE_LIST})
                             AND t.tgenabled IN ('D', 'R')
                           ORDER BY 1, 2`,
  /** Whether the schema has the drift check's state (version 10 on). */
  doctorDriftPresent: `SELECT pg_catalog.to_regclass('mvrefresh.drift_check_state') IS NOT NULL AS present`,
  /** The drift check's last success and failure (routines/check_drift.sql, record_drift_failure.sql). */
  doctorDriftState: `SELECT last_ok_at, last_failed_at, last_error,
                            last_failed_at IS NOT NULL AND last_failed_at > COALESCE(last_ok_at, '-infinity') AS failing
                       FROM mvrefresh.drift_check_state`,
  /** Writes or truncates that fired no trigger, as the drift check found them (kept a day). */
  doctorDriftFindings: `SELECT kind, detail, last_seen FROM mvrefresh.drift_findings ORDER BY last_seen DESC, relid, kind`,
  /** Event triggers in place as ddlWatchInPlace says: enabled, executing the installer's function. */
  doctorEventTriggers: `SELECT pg_catalog.count(*)::integer AS enabled
                          FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
                          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                         WHERE e.evtname IN ('mvrefresh_ddl', 'mvrefresh_drop') AND e.evtenabled <> 'D'
                           AND n.nspname = 'mvrefresh_ddl_watch' AND p.proname = 'ddl_changed'
                           AND n.nspowner = p.proowner AND e.evtowner = p.proowner`,
  /** What the role ($1) running the daemon needs on the schema (docs/operations.md, "Privileges"). */
  doctorPrivileges: `SELECT pg_catalog.has_schema_privilege($1::name, 'mvrefresh', 'USAGE') AS schema_usage,
                            (SELECT COALESCE(pg_catalog.array_agg(pg_catalog.format('%I.%I', schemaname, tablename) ORDER BY tablename), '{}')
                               FROM pg_tables WHERE schemaname = 'mvrefresh'
                                AND NOT pg_catalog.has_table_privilege($1::name, pg_catalog.format('%I.%I', schemaname, tablename),
                                                            'SELECT, INSERT, UPDATE, DELETE')) AS tables_missing,
                            (SELECT COALESCE(pg_catalog.array_agg(p.oid::regprocedure::text ORDER BY p.proname), '{}')
                               FROM pg_proc p WHERE p.pronamespace = 'mvrefresh'::regnamespace
                                AND NOT pg_catalog.has_function_privilege($1::name, p.oid, 'EXECUTE')) AS routines_missing`,
  /** What keeps vacuum from removing dead rows: old transactions, prepared transactions, replication slots. */
  doctorHorizon: `SELECT 'transaction' AS kind, pg_catalog.format('pid %s (%s, %s)', pid, COALESCE(usename, '?'),
                                                      pg_catalog.quote_literal(COALESCE(application_name, ''))) AS what,
                         extract(epoch FROM pg_catalog.clock_timestamp() - xact_start)::float8 AS age_s
                    FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND xact_start IS NOT NULL
                     AND pid <> pg_catalog.pg_backend_pid()
                  UNION ALL
                  SELECT 'prepared transaction', pg_catalog.quote_literal(gid),
                         extract(epoch FROM pg_catalog.clock_timestamp() - prepared)::float8 FROM pg_prepared_xacts
                  UNION ALL
                  SELECT 'replication slot', pg_catalog.quote_literal(slot_name::text) || CASE WHEN active THEN '' ELSE ' (inactive)' END,
                         NULL FROM pg_replication_slots
                   WHERE NOT active AND (xmin IS NOT NULL OR catalog_xmin IS NOT NULL)
                  ORDER BY age_s DESC NULLS FIRST`,

  // the daemon
  // ages instead of timestamps: the daemon's clock and the server's need not agree
  listViews: `SELECT s.id, s.view, s.max_staleness_ms, s.refresh_budget, s.paused, s.refresh_interval_ms,
                     s.last_duration_ms,
                     (extract(epoch FROM pg_catalog.clock_timestamp() - s.last_refreshed_at) * 1000)::float8
                       AS refreshed_ago_ms,
                     v.source_relids::text[] AS source_relids, s.mode
                FROM mvrefresh.status s JOIN mvrefresh.view_state v ON v.id = s.id ORDER BY s.depth, s.id`,
  dueViews: `SELECT view_id, reason,
                    (extract(epoch FROM pg_catalog.clock_timestamp() - dirty_since) * 1000)::float8 AS dirty_for_ms
               FROM mvrefresh.due_views()`,
  /**
   * The given incremental views that their logs show behind (routines/capture_logs.sql), with how long ago
   * the oldest write they do not show began (ms).
   */
  logDue: `SELECT view_id, (extract(epoch FROM pg_catalog.clock_timestamp() - dirty_since) * 1000)::float8 AS dirty_for_ms
             FROM mvrefresh.log_due($1::pg_catalog.int4[])`,
  /**
   * In how many ms each periodic view's next refresh falls due (negative: due already; NULL: never
   * refreshed), counted from the start of its last REFRESH, or its retry after a failure, whichever is later.
   */
  periodicDueIn: `SELECT v.id, v.refresh_interval_ms,
                         (extract(epoch FROM GREATEST(v.last_refreshed_at
                                                        + (v.refresh_interval_ms - COALESCE(v.last_duration_ms, 0))
                                                          * interval '1 millisecond',
                                                      v.next_attempt_at) - clock_timestamp())
                           * 1000)::float8 AS due_in_ms
                    FROM mvrefresh.view_state v
                   WHERE v.refresh_interval_ms IS NOT NULL AND NOT v.paused`,
  recordTargetMiss: 'SELECT mvrefresh.record_target_miss($1, $2)',
  checkDrift: 'SELECT view_id, view, changes, kinds, triggers_synced FROM mvrefresh.check_drift($1)',
  recordDriftFailure: 'SELECT mvrefresh.record_drift_failure($1)',
  refreshView:
    'CALL mvrefresh.refresh_view($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)',
  recordFailure: 'SELECT mvrefresh.record_failure($1, $2, $3, $4, $5, $6) AS retry_in_ms',
  /** What an incremental view's last apply did (apply_view.sql), read after its cycle for the log. */
  lastApply: `SELECT last_apply_kind AS kind, last_apply_keys AS keys, last_apply_ms AS ms
                FROM mvrefresh.incremental WHERE view_id = $1`,
  /**
   * The active incremental view verified longest ago (never verified first), and how long ago any was last
   * verified by any daemon (or, for views never verified, made incremental): the periodic verify runs one
   * view per interval across restarts and replicas.
   */
  nextVerify: `SELECT i.view_id, v.view_schema AS schema, v.view_name AS name,
                      pg_catalog.format('%I.%I', v.view_schema, v.view_name) AS view,
                      (extract(epoch FROM pg_catalog.clock_timestamp()
                         - (SELECT pg_catalog.max(COALESCE(a.last_verify_at, a.created_at))
                              FROM mvrefresh.incremental a WHERE a.state = 'active')) * 1000)::float8 AS since_ms
                 FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
                WHERE i.state = 'active' AND NOT v.paused
                ORDER BY i.last_verify_at NULLS FIRST, i.view_id LIMIT 1`,
  /**
   * Ends a refresh backend at shutdown: its transaction rolls back, and nothing records a failure. Only a
   * refresh session of this role: behind a pooler the pid a client knows is the pooler's made-up key, which
   * may be any backend's pid.
   */
  terminateBackend: `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE pid = $1 AND application_name = $2 AND usename = current_user`,
  /** Whether the statement_timeout sent at connection start-up ($1) is the session's: a pooler may drop it. */
  startupSettingApplied:
    "SELECT pg_catalog.current_setting('statement_timeout')::interval = $1::interval AS applied",
  serverVersion: "SELECT pg_catalog.current_setting('server_version_num')::integer AS version",
  /** LISTEN takes no bound parameter: the channel is quoted here (callers pass names they made). */
  listen: (channel: string) => `LISTEN ${escapeIdentifier(channel)}`,
  ping: 'SELECT 1',
  /** Whether a backend waits for a heavyweight lock now (LockWaitMeter). */
  backendWaitsOnLock:
    "SELECT wait_event_type = 'Lock' AS waiting FROM pg_catalog.pg_stat_activity WHERE pid = $1",
} as const;

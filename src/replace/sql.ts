/**
 * The statements of `mvrefresh replace` (src/replace/). Identifiers the statements build from names are
 * quoted with format('%I') or pg.escapeIdentifier; values are bound. Every session that runs them has
 * search_path = pg_catalog, pg_temp (prepareAdminSession), so that pg_get_viewdef() and pg_get_indexdef()
 * qualify every name they print.
 */
export const replaceSql = {
  /** One relation's properties that a replacement keeps: the MV itself, or a dependant. */
  capture: `
    SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
           pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS printed,
           pg_catalog.pg_get_userbyid(c.relowner) AS owner,
           c.relacl IS NOT NULL AS has_acl,
           COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                              'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
                              'privilege', a.privilege_type, 'grantable', a.is_grantable))
                       FROM pg_catalog.aclexplode(c.relacl) a), '[]') AS acl,
           COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                              'column', at.attname,
                              'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
                              'privilege', a.privilege_type, 'grantable', a.is_grantable))
                       FROM pg_catalog.pg_attribute at CROSS JOIN LATERAL pg_catalog.aclexplode(at.attacl) a
                      WHERE at.attrelid = c.oid AND at.attnum > 0 AND NOT at.attisdropped), '[]') AS column_acl,
           pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
           COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                              'column', at.attname, 'type', pg_catalog.format_type(at.atttypid, at.atttypmod),
                              'comment', pg_catalog.col_description(c.oid, at.attnum)) ORDER BY at.attnum)
                       FROM pg_catalog.pg_attribute at
                      WHERE at.attrelid = c.oid AND at.attnum > 0 AND NOT at.attisdropped), '[]') AS columns,
           COALESCE(c.reloptions, '{}') AS reloptions,
           COALESCE((SELECT t.reloptions FROM pg_catalog.pg_class t WHERE t.oid = c.reltoastrelid), '{}')
             AS toast_options,
           (SELECT s.spcname FROM pg_catalog.pg_tablespace s WHERE s.oid = c.reltablespace) AS tablespace,
           (SELECT am.amname FROM pg_catalog.pg_am am WHERE am.oid = c.relam) AS access_method,
           pg_catalog.pg_get_viewdef(c.oid) AS definition,
           COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                              'name', ic.relname, 'printed', pg_catalog.quote_ident(ic.relname), 'def', pg_catalog.pg_get_indexdef(i.indexrelid),
                              'comment', pg_catalog.obj_description(i.indexrelid, 'pg_class'),
                              'tablespace', (SELECT s.spcname FROM pg_catalog.pg_tablespace s
                                              WHERE s.oid = ic.reltablespace),
                              'clustered', i.indisclustered) ORDER BY ic.relname)
                       FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                      WHERE i.indrelid = c.oid), '[]') AS indexes,
           COALESCE((SELECT pg_catalog.json_agg(pg_catalog.pg_get_triggerdef(tg.oid) ORDER BY tg.tgname)
                       FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), '[]')
             AS triggers,
           (SELECT pg_catalog.count(*) FROM pg_catalog.pg_rewrite r
             WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')::int AS other_rules
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = $1`,

  /** The views and materialized views that read $1, directly or through others, the shallowest first. */
  dependants: `
    WITH RECURSIVE deps(oid, depth) AS (
        SELECT r.ev_class, 1
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.refobjid = $1 AND r.ev_class <> $1
        UNION
        SELECT r.ev_class, deps.depth + 1
          FROM deps
          JOIN pg_catalog.pg_depend d ON d.refobjid = deps.oid
               AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
          JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND r.ev_class <> deps.oid
    )
    SELECT deps.oid::int8 AS oid, pg_catalog.max(deps.depth) AS depth
      FROM deps GROUP BY deps.oid ORDER BY 2, 1`,

  /** The columns of $1 that each view or materialized view reading it directly uses. */
  usedColumns: `
    SELECT DISTINCT r.ev_class::pg_catalog.regclass::text AS dependant, a.attname AS column,
           pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid = $1 AND d.refobjsubid > 0 AND r.ev_class <> $1
     ORDER BY 1, 2`,

  /** The relation named $1.$2 and its kind, or nothing. */
  relation: `
    SELECT c.oid::int8 AS oid, c.relkind AS kind
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2`,

  /** The watch settings of $1.$2, or nothing when it is not watched. */
  watched: `
    SELECT v.id, v.debounce_ms, v.max_wait_ms, v.refresh_interval_ms, v.allow_blocking_refresh,
           v.max_staleness_ms, v.refresh_budget
      FROM mvrefresh.view_state v WHERE v.view_schema = $1 AND v.view_name = $2`,

  /** Watches $1 again with its own settings: triggers, sources and dependencies from its new definition. */
  rewatch: `
    SELECT mvrefresh.watch(pg_catalog.format('%I.%I', $1::text, $2::text), $3, $4, $5, $6, false, $7, $8)`,

  /** The build is long by nature: no role default statement_timeout cuts it (the swap has its lock_timeout). */
  executorSession: "SELECT pg_catalog.set_config('statement_timeout', '0', false)",
  viewLock: 'SELECT pg_catalog.pg_advisory_xact_lock($1, $2)',
  notify: 'SELECT pg_catalog.pg_notify($1, $2)',
  setLockTimeout: "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
  setSearchPath: "SELECT pg_catalog.set_config('search_path', $1, true)",

  requestReplace: 'SELECT mvrefresh.request_replace($1, $2, $3, $4) AS id',
  markCli: "UPDATE mvrefresh.replace_requests SET origin = 'cli' WHERE id = $1",

  /** Unfinished requests ($1: one id, or NULL for any; $2: the origins this executor carries out). */
  candidates: `
    SELECT r.id::int8 AS id, r.view_schema, r.view_name, r.definition, r.status, r.temp_name, r.origin,
           r.search_path, r.lock_timeout_ms
      FROM mvrefresh.replace_requests r
     WHERE r.status IN ('pending', 'running') AND ($1::int8 IS NULL OR r.id = $1)
       AND ($2::text[] IS NULL OR r.origin = ANY ($2::text[]))
       AND ($3::name IS NULL OR (r.view_schema = $3 AND r.view_name = $4))
     ORDER BY r.id
       FOR UPDATE SKIP LOCKED`,
  tryLock: 'SELECT pg_catalog.pg_try_advisory_lock($1, $2::int4) AS locked',
  unlock: 'SELECT pg_catalog.pg_advisory_unlock($1, $2::int4)',
  start: `
    UPDATE mvrefresh.replace_requests
       SET status = 'running', step = NULL, attempts = attempts + 1, claimed_by = $2, started_at = pg_catalog.now(),
           error = NULL
     WHERE id = $1`,
  step: 'UPDATE mvrefresh.replace_requests SET step = $2, temp_name = COALESCE($3, temp_name) WHERE id = $1',
  finish: `
    UPDATE mvrefresh.replace_requests
       SET status = $2, step = CASE WHEN $2 = 'done' THEN 'done' ELSE step END, error = $3,
           temp_name = NULL, finished_at = pg_catalog.now()
     WHERE id = $1`,
  /** Back to pending, for another executor: this one is stopping (daemon shutdown), not failing. */
  requeue: `
    UPDATE mvrefresh.replace_requests SET status = 'pending', step = NULL, temp_name = NULL, claimed_by = NULL
     WHERE id = $1`,

  /** Requests left running by an executor that died (its advisory lock is gone). */
  orphans: `
    SELECT r.id::int8 AS id, r.view_schema, r.view_name, r.temp_name, r.origin
      FROM mvrefresh.replace_requests r
     WHERE r.status = 'running'
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_locks l
                        WHERE l.locktype = 'advisory' AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                                                         WHERE d.datname = pg_catalog.current_database())
                          AND l.classid::int8 = $1 AND l.objid::int8 = r.id AND l.objsubid = 2 AND l.granted)
     ORDER BY r.id`,
} as const;

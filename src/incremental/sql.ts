import { CAPTURE_TRIGGERS, sqlList } from '../db/protocol.js';

/**
 * The statements of incremental views (src/incremental/). Names built into statements are quoted with
 * pg.escapeIdentifier; values are bound. The sessions that run them have search_path = pg_catalog, pg_temp,
 * so that pg_get_viewdef() and format_type() qualify every name they print.
 */
export const incrementalSql = {
  setSearchPath: `SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)`,
  /** The view's definition, columns and key (its unique index on plain columns with the fewest columns). */
  viewCatalog: `
    SELECT c.oid::int8::text AS oid, n.nspname AS schema, c.relname AS name,
           pg_catalog.pg_get_viewdef(c.oid) AS definition,
           (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                       'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
              FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           (SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                          ORDER BY k.ord)
              FROM pg_catalog.pg_index i
             WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
             ORDER BY i.indnatts, i.indexrelid LIMIT 1) AS key
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = $1::pg_catalog.oid`,
  relations: `
    SELECT c.oid::int8::text AS oid, c.relkind::text AS kind, n.nspname AS schema, c.relname AS name,
           (c.relkind = 'p' OR c.relhassubclass
            OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)) AS "hasChildren"
      FROM unnest($1::text[], $2::text[]) u(s, r)
      JOIN pg_catalog.pg_namespace n ON n.nspname = u.s
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = u.r`,
  viewDefinition: `SELECT pg_catalog.pg_get_viewdef($1::pg_catalog.oid) AS def`,
  /** Per called name (schema.name, or a bare name of pg_catalog): volatility, built in, aggregate. */
  functions: `
    SELECT u.n AS name, bool_or(p.provolatile = 'v') AS volatile,
           bool_and(p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace) AS builtin,
           bool_or(p.prokind = 'a') AS aggregate
      FROM unnest($1::text[]) u(n)
      JOIN pg_catalog.pg_namespace ns
        ON ns.nspname = CASE WHEN pg_catalog.strpos(u.n, '.') > 0 THEN pg_catalog.split_part(u.n, '.', 1) ELSE 'pg_catalog' END
      JOIN pg_catalog.pg_proc p
        ON p.pronamespace = ns.oid
       AND p.proname = CASE WHEN pg_catalog.strpos(u.n, '.') > 0 THEN pg_catalog.split_part(u.n, '.', 2) ELSE u.n END
     GROUP BY u.n`,
  /**
   * The functions the rules of the given relations call: the oids of FuncExpr, OpExpr (and kin), Aggref
   * and WindowFunc nodes in their stored query trees.
   */
  calledFunctions: `
    WITH rules AS (SELECT r.ev_action::text AS tree FROM pg_catalog.pg_rewrite r WHERE r.ev_class = ANY ($1::pg_catalog.oid[])),
    ids AS (
      SELECT m[1]::pg_catalog.oid AS f
        FROM rules CROSS JOIN LATERAL pg_catalog.regexp_matches(rules.tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
      UNION
      SELECT o.oprcode::pg_catalog.oid
        FROM rules CROSS JOIN LATERAL pg_catalog.regexp_matches(rules.tree, ':opno ([0-9]+)', 'g') m
        JOIN pg_catalog.pg_operator o ON o.oid = m[1]::pg_catalog.oid)
    SELECT DISTINCT pg_catalog.format('%s.%s', p.pronamespace::pg_catalog.regnamespace, p.proname) AS name,
           p.provolatile = 'v' AS volatile, p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AS builtin
      FROM ids JOIN pg_catalog.pg_proc p ON p.oid = ids.f`,
  /** The columns the rules of the view and of the plain views it reads depend on, per table. */
  readColumns: `
    SELECT DISTINCT d.refobjid::int8::text AS oid, a.attname::text AS name,
           pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnum
      FROM pg_catalog.pg_rewrite r
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjsubid > 0
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE r.ev_class = $1::pg_catalog.oid OR r.ev_class = ANY ($2::pg_catalog.oid[])
     ORDER BY 1, a.attnum`,
  /**
   * Whether the table has a valid btree index, without predicate or expression before its n-th column,
   * whose first n columns are the n given ones in any order (a probe of them reads only matching rows).
   */
  probeIndex: `
    SELECT EXISTS (
      SELECT FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname = 'btree'
       WHERE i.indrelid = $1::pg_catalog.oid AND i.indisvalid AND i.indpred IS NULL
         AND i.indnkeyatts >= pg_catalog.cardinality($2::pg_catalog.text[])
         AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attname)
                FROM pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:pg_catalog.cardinality($2::pg_catalog.text[]) - 1]) k(attnum)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
             = (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest($2::pg_catalog.text[]) x)
    ) AS found`,
  /**
   * Whether a row-level security policy of one of the tables applies to the owner of the view $1 (as
   * check_enable_rls() decides it for that role: not a superuser or BYPASSRLS role, and not the table's
   * owner unless the table forces it).
   */
  ownerUnderPolicy: `
    SELECT EXISTS (
      SELECT FROM pg_catalog.pg_class v JOIN pg_catalog.pg_roles r ON r.oid = v.relowner,
                  pg_catalog.pg_class t
       WHERE v.oid = $1::pg_catalog.oid AND t.oid = ANY ($2::pg_catalog.oid[]) AND t.relrowsecurity
         AND NOT r.rolsuper AND NOT r.rolbypassrls
         AND (t.relforcerowsecurity OR NOT pg_catalog.pg_has_role(v.relowner, t.relowner, 'USAGE'))
    ) AS found`,
  /** oid.column of every NOT NULL column of the given tables. */
  notNullColumns: `
    SELECT a.attrelid::int8::text || '.' || a.attname AS c FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = ANY ($1::pg_catalog.oid[]) AND a.attnum > 0 AND a.attnotnull AND NOT a.attisdropped`,
  /** Every incremental view's needs: the union of the columns read per source. */
  needs: `SELECT view_id, state, source_columns FROM mvrefresh.incremental`,
  incremental: `
    SELECT i.view_id, i.state, i.definition, i.key_columns, i.sources::text[] AS sources, i.source_columns,
           v.view_schema, v.view_name
      FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
     WHERE v.view_schema = $1 AND v.view_name = $2`,
  register: `
    INSERT INTO mvrefresh.incremental (view_id, definition, key_columns, sources, source_columns, statements,
                                       applied_snapshot)
    VALUES ($1, $2, $3, $4::pg_catalog.oid[], $5, $6, pg_catalog.pg_current_snapshot())
    ON CONFLICT (view_id) DO UPDATE
       SET state = 'building', definition = EXCLUDED.definition, key_columns = EXCLUDED.key_columns,
           sources = EXCLUDED.sources, source_columns = EXCLUDED.source_columns, statements = EXCLUDED.statements,
           applied_snapshot = EXCLUDED.applied_snapshot, needs_full = false, full_reason = NULL`,
  populated: `UPDATE mvrefresh.incremental SET applied_snapshot = pg_catalog.pg_current_snapshot() WHERE view_id = $1`,
  activate: `UPDATE mvrefresh.incremental SET state = 'active' WHERE view_id = $1`,
  /** The baseline of check_drift()'s comparison for an incremental view (routines/check_drift.sql). */
  storeFingerprint: `SELECT mvrefresh.store_incremental_fingerprint($1)`,
  forget: `DELETE FROM mvrefresh.incremental WHERE view_id = $1`,
  setModeReason: `UPDATE mvrefresh.view_state SET mode_reason = $2 WHERE id = $1`,
  watchedId: `SELECT id FROM mvrefresh.view_state WHERE view_schema = $1 AND view_name = $2`,
  mark: `INSERT INTO mvrefresh.marks (view_id) SELECT $1 WHERE NOT EXISTS (SELECT FROM mvrefresh.marks WHERE view_id = $1)`,
  lockShare: (table: string) => `LOCK TABLE ${table} IN SHARE ROW EXCLUSIVE MODE`,
  triggers: `
    SELECT tg.tgname AS name, tg.tgenabled AS enabled
      FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = $1::pg_catalog.oid AND tg.tgname IN (${sqlList(Object.values(CAPTURE_TRIGGERS))})`,
  ownsTable: `SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid`,
  tableName: `SELECT $1::pg_catalog.oid::pg_catalog.regclass::text AS name`,
  /** The planner's row count of a relation (-1: never counted). */
  reltuples: `SELECT c.reltuples::pg_catalog.float8 AS n FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid`,
  countRows: (table: string) => `SELECT pg_catalog.count(*)::pg_catalog.float8 AS n FROM ${table}`,
  /** Fills a multiset (analyze.ts, DistinctStatements) from its definition; returns in the owner's role. */
  rebuildMultiset: `SELECT mvrefresh.apply_distinct($1::pg_catalog.jsonb, $2, true)`,
  /** The multiset tables (analyze.ts, DistinctStatements) of views no longer registered. */
  orphanMultisets: `
    SELECT pg_catalog.format('%I.%I', 'mvrefresh', c.relname) AS name FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'mvrefresh'::pg_catalog.regnamespace AND c.relkind = 'r' AND c.relname ~ '^distinct_[0-9]+$'
       AND NOT EXISTS (SELECT FROM mvrefresh.incremental i WHERE 'distinct_' || i.view_id = c.relname)`,
  setRole: `SELECT pg_catalog.set_config('role', $1, true)`,
  resetRole: `SELECT pg_catalog.set_config('role', 'none', true)`,
  /** The setting an apply by key is planned with (routines/apply_view.sql), for a plan shown as it would be. */
  applyPlanning: `SELECT pg_catalog.set_config('random_page_cost',
      LEAST(pg_catalog.current_setting('random_page_cost')::pg_catalog.float8, $1::pg_catalog.float8)::pg_catalog.text, true)`,
  /** A key of the view, one of its rows (`table`, `key`: quoted): the recompute's plan needs real values. */
  sampleKey: (table: string, key: string[]) =>
    `SELECT ${key.join(', ')} FROM ${table} WHERE ${key.map((k) => `${k} IS NOT NULL`).join(' AND ')} LIMIT 1`,
  /** The plan of recomputing one key from the definition, as an apply by key does (statements.ts `insert`); VERBOSE names each scanned relation's schema. */
  explainRecompute: (definition: string, key: string[]) =>
    `EXPLAIN (FORMAT JSON, VERBOSE) SELECT q.* FROM (${definition}) q WHERE ${key.map((k, i) => `q.${k} = $${i + 1}`).join(' AND ')}`,
  /** Estimated rows of tables (pg_class.reltuples; -1 before the first ANALYZE or VACUUM). */
  tableRows: `SELECT c.oid::pg_catalog.int8::pg_catalog.text AS oid, c.reltuples::pg_catalog.float8 AS n
      FROM pg_catalog.pg_class c WHERE c.oid = ANY ($1::pg_catalog.oid[])`,
} as const;

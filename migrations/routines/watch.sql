-- Watches a materialized view: registers it, installs its triggers and records its dependencies.
-- Idempotent; running it again after the view's definition changed brings the triggers in line.
-- Returns a report: id, view, tables, dependencies, warnings, created, added (what --with-dependencies
-- watched). p_debounce_ms and p_max_wait_ms are
-- kept for callers of earlier versions and no longer read by the daemon; p_max_staleness_ms (staleness
-- target) and p_refresh_budget (share of time spent refreshing) override the daemon's defaults.
-- p_search_path: where an unqualified p_name is looked up (the caller's, by default; resolve_view()).
CREATE OR REPLACE FUNCTION mvrefresh.watch(
    p_name text,
    p_debounce_ms integer DEFAULT NULL,
    p_max_wait_ms integer DEFAULT NULL,
    p_refresh_interval_ms integer DEFAULT NULL,
    p_allow_blocking_refresh boolean DEFAULT false,
    p_with_dependencies boolean DEFAULT false,
    p_max_staleness_ms integer DEFAULT NULL,
    p_refresh_budget double precision DEFAULT NULL,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    schema_name name;
    rel_name name;
    vid integer;
    created boolean := false;
    dep record;
    dep_ids integer[] := '{}';
    dep_names text[] := '{}';
    dep_report jsonb;
    -- the dependencies this call watched, deepest first: view, tables their triggers went on, warnings
    added jsonb := '[]';
    warn text[] := '{}';
    tables text[];
    view_depth integer := 0;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'the database is a standby (in recovery): watch needs the primary'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    IF p_debounce_ms < 0 OR p_max_wait_ms < 0 THEN
        RAISE EXCEPTION 'debounce and max wait must be >= 0 (milliseconds)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM mvrefresh.check_settings(p_refresh_interval_ms, p_max_staleness_ms, p_refresh_budget);
    PERFORM pg_advisory_xact_lock({{LOCK_NAMESPACE}}, {{WATCH_LOCK_KEY}});
    rel := mvrefresh.resolve_view(p_name, p_search_path);
    SELECT n.nspname, c.relname INTO schema_name, rel_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;

    IF NOT mvrefresh.can_refresh(rel) THEN
        RAISE EXCEPTION 'role % cannot refresh %: REFRESH needs the owner (%)%', current_user, rel,
            (SELECT relowner::regrole FROM pg_class WHERE oid = rel),
            CASE WHEN current_setting('server_version_num')::integer >= 170000
                 THEN ' or the MAINTAIN privilege' ELSE '' END
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Run watch (and the daemon) as a member of role %s.',
                                (SELECT relowner::regrole FROM pg_class WHERE oid = rel));
    END IF;

    IF NOT p_allow_blocking_refresh AND NOT EXISTS (
        SELECT FROM pg_index i WHERE i.indrelid = rel AND i.indisunique AND i.indisvalid
                                 AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
        RAISE EXCEPTION '% has no unique index on plain columns, so it cannot be refreshed CONCURRENTLY', rel
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Create one on the columns that identify a row, e.g. CREATE UNIQUE INDEX ON %s (%s); '
                                'or pass --allow-blocking-refresh to accept refreshes that block readers.',
                                rel, (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                                        FROM pg_attribute WHERE attrelid = rel AND attnum > 0
                                         AND NOT attisdropped));
    END IF;

    -- materialized views it reads must be watched first (REFRESH fires no triggers)
    FOR dep IN SELECT s.relid FROM mvrefresh.view_sources(rel) s WHERE s.relkind = 'm' LOOP
        vid := mvrefresh.watched_id(dep.relid);
        IF vid IS NULL THEN
            IF NOT p_with_dependencies THEN
                RAISE EXCEPTION '% reads materialized view %, which is not watched', rel, dep.relid::regclass
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Watch it first, or pass --with-dependencies to watch it as well.';
            END IF;
            dep_report := mvrefresh.watch(format('%I.%I', (SELECT nspname FROM pg_namespace n JOIN pg_class c
                                                           ON c.relnamespace = n.oid WHERE c.oid = dep.relid),
                                                 (SELECT relname FROM pg_class WHERE oid = dep.relid)),
                                          p_debounce_ms, p_max_wait_ms, NULL, p_allow_blocking_refresh, true,
                                          p_max_staleness_ms, p_refresh_budget);
            vid := (dep_report ->> 'id')::integer;
            added := added || COALESCE(dep_report -> 'added', '[]')
                     || jsonb_build_array(jsonb_build_object('view', dep_report -> 'view',
                                                            'tables', dep_report -> 'tables',
                                                            'warnings', dep_report -> 'warnings'));
        END IF;
        dep_ids := dep_ids || vid;
        dep_names := dep_names || dep.relid::regclass::text;
        vid := NULL;
    END LOOP;

    FOR dep IN SELECT s.relid FROM mvrefresh.view_sources(rel) s WHERE s.relkind = 'f' LOOP
        warn := warn || format('%s is a foreign table: writes made elsewhere fire no trigger here%s',
                               dep.relid::regclass,
                               CASE WHEN p_refresh_interval_ms IS NULL
                                    THEN '; pass --refresh-interval-ms to refresh it periodically' ELSE '' END);
    END LOOP;
    -- functions that read tables the triggers do not cover, the clock, randomness
    warn := warn || mvrefresh.view_warnings(rel, p_refresh_interval_ms IS NOT NULL);
    -- a FOR ALL TABLES publication also publishes this schema's tables (README, "Logical replication")
    warn := warn || ARRAY(
        SELECT format('publication %I is FOR ALL TABLES: it publishes the mvrefresh schema''s tables too, which '
                      'a subscriber running mvrefresh must not receive; publish the application''s tables by '
                      'name or schema instead', p.pubname)
          FROM pg_publication p WHERE p.puballtables ORDER BY p.pubname);

    SELECT COALESCE(max(depth) + 1, 0) INTO view_depth FROM mvrefresh.view_state WHERE id = ANY (dep_ids);

    INSERT INTO mvrefresh.view_state AS v (view_schema, view_name, debounce_ms, max_wait_ms,
                                           refresh_interval_ms, allow_blocking_refresh, depth,
                                           max_staleness_ms, refresh_budget)
    VALUES (schema_name, rel_name, p_debounce_ms, p_max_wait_ms, p_refresh_interval_ms,
            p_allow_blocking_refresh, view_depth, p_max_staleness_ms, p_refresh_budget)
    ON CONFLICT (view_schema, view_name) DO UPDATE
        SET debounce_ms = EXCLUDED.debounce_ms,
            max_wait_ms = EXCLUDED.max_wait_ms,
            refresh_interval_ms = EXCLUDED.refresh_interval_ms,
            allow_blocking_refresh = EXCLUDED.allow_blocking_refresh,
            depth = EXCLUDED.depth,
            max_staleness_ms = EXCLUDED.max_staleness_ms,
            refresh_budget = EXCLUDED.refresh_budget
    RETURNING id, (xmax = 0) INTO vid, created;
    -- refreshed once now: the view may be stale, or its definition may have changed
    INSERT INTO mvrefresh.marks (view_id) VALUES (vid);

    DELETE FROM mvrefresh.view_deps WHERE view_id = vid AND depends_on <> ALL (dep_ids);
    INSERT INTO mvrefresh.view_deps (view_id, depends_on)
    SELECT vid, d FROM unnest(dep_ids) d ON CONFLICT DO NOTHING;

    UPDATE mvrefresh.view_state
       SET source_relids = ARRAY(SELECT s.relid FROM mvrefresh.view_sources(rel) s ORDER BY s.relid)
     WHERE id = vid;
    -- what check_drift() compares the catalog with from now on
    INSERT INTO mvrefresh.source_fingerprints (view_id, fingerprint)
    SELECT vid, mvrefresh.source_fingerprint(rel, v.source_relids) FROM mvrefresh.view_state v WHERE v.id = vid
    ON CONFLICT (view_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint;
    -- CREATE TRIGGER waits for a SHARE ROW EXCLUSIVE lock: fail soon (the caller retries) rather than queue
    -- the application's writers behind it
    PERFORM set_config('lock_timeout', {{DDL_LOCK_TIMEOUT}}, true);
    PERFORM mvrefresh.sync_table_triggers();
    tables := ARRAY(SELECT s.relid::regclass::text FROM mvrefresh.view_sources(rel) s
                     WHERE s.relkind IN ('r', 'p') ORDER BY s.relid);
    -- triggers this role cannot repair (a table it does not own)
    warn := warn || ARRAY(SELECT w FROM mvrefresh.view_sources(rel) s, mvrefresh.trigger_warning(s.relid) w
                           WHERE w IS NOT NULL ORDER BY s.relid);
    UPDATE mvrefresh.view_state SET sources = tables, warnings = warn WHERE id = vid;
    -- a running daemon refreshes it once now and reloads its settings
    PERFORM pg_notify({{CHANNEL}}, vid::text);
    RETURN jsonb_build_object('id', vid, 'view', rel::text, 'created', created, 'tables', to_jsonb(tables),
                              'dependencies', to_jsonb(dep_names), 'warnings', to_jsonb(warn),
                              'added', added);
END
$$;

-- watch / unwatch: dependency discovery through the catalog and trigger installation.

-- Every relation a materialized view reads, following plain views down to their tables (pg_rewrite +
-- pg_depend), with the columns read where the catalog says which. Materialized views are reported, not
-- followed: they are dependencies with triggers of their own. Inheritance children and partitions of a
-- table are included, since writes addressed to them fire only their own triggers.
-- columns is NULL when the whole row matters (a whole-row or system-column reference somewhere in the
-- chain, or a table reached only through inheritance).
CREATE FUNCTION mvrefresh.view_sources(p_view regclass)
    RETURNS TABLE (relid oid, relkind "char", columns name[])
    LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH RECURSIVE walk(rel, path) AS (
        SELECT p_view::oid, ARRAY[p_view::oid]
        UNION ALL
        -- a rule depends on the columns it reads (refobjsubid > 0), or on the relation alone (0) when it
        -- reads none of them
        SELECT d.refobjid, w.path || d.refobjid
          FROM walk w
          JOIN pg_class wc ON wc.oid = w.rel
          JOIN pg_rewrite r ON r.ev_class = w.rel
          CROSS JOIN LATERAL (SELECT DISTINCT dep.refobjid FROM pg_depend dep
                               WHERE dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                                 AND dep.refclassid = 'pg_class'::regclass) d
         WHERE (w.rel = p_view::oid OR wc.relkind = 'v')
           AND d.refobjid <> ALL (w.path)
    ),
    rules AS (
        SELECT r.oid AS rule_oid, r.ev_action::text ~ ':varattno (0|-)' AS whole_row
          FROM walk w JOIN pg_class c ON c.oid = w.rel JOIN pg_rewrite r ON r.ev_class = w.rel
         WHERE w.rel = p_view::oid OR c.relkind = 'v'
    ),
    direct AS (
        SELECT DISTINCT d.refobjid AS relid
          FROM rules JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                                     AND d.refclassid = 'pg_class'::regclass
         WHERE d.refobjid <> p_view::oid
    ),
    cols AS (
        SELECT d.refobjid AS relid,
               CASE WHEN bool_or(rules.whole_row) THEN NULL
                    ELSE array_agg(DISTINCT a.attname ORDER BY a.attname) FILTER (WHERE a.attname IS NOT NULL)
               END AS columns
          FROM rules
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                          AND d.refclassid = 'pg_class'::regclass
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                  AND d.refobjsubid > 0 AND NOT a.attisdropped
         GROUP BY d.refobjid
    ),
    descendants(relid, root) AS (
        SELECT direct.relid, direct.relid FROM direct
        UNION
        SELECT i.inhrelid, descendants.root FROM descendants JOIN pg_inherits i ON i.inhparent = descendants.relid
    )
    SELECT c.oid, c.relkind,
           CASE WHEN dsc.relid = dsc.root THEN cols.columns
                ELSE (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = ANY (cols.columns)
                         AND a.attnum > 0 AND NOT a.attisdropped)
           END
      FROM descendants dsc
      JOIN pg_class c ON c.oid = dsc.relid
      JOIN cols ON cols.relid = dsc.root
     WHERE c.relkind IN ('r', 'p', 'f', 'm')
     ORDER BY c.oid;
END;

-- Resolves a user-supplied name (quoted, qualified or not) to a materialized view, or raises an error
-- that names the object.
CREATE FUNCTION mvrefresh.resolve_view(p_name text) RETURNS regclass
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    rel regclass;
    kind "char";
BEGIN
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        RAISE EXCEPTION 'a materialized view name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rel := to_regclass(p_name);
    IF rel IS NULL THEN
        RAISE EXCEPTION 'materialized view "%" does not exist', p_name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Names are resolved with the search_path; quote mixed-case names: ''"MyView"''.';
    END IF;
    SELECT relkind INTO kind FROM pg_class WHERE oid = rel;
    IF kind <> 'm' THEN
        RAISE EXCEPTION '% is not a materialized view (it is a %)', rel,
            CASE kind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'p' THEN 'partitioned table'
                      WHEN 'f' THEN 'foreign table' ELSE 'relation of kind ' || kind::text END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN rel;
END
$$;

-- Whether the current role may refresh the view: its owner (or a member of the owner role), or, from
-- PostgreSQL 17, a holder of MAINTAIN.
CREATE FUNCTION mvrefresh.can_refresh(p_view regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = p_view), 'USAGE') THEN
        RETURN true;
    END IF;
    IF current_setting('server_version_num')::integer >= 170000 THEN
        RETURN has_table_privilege(p_view, 'MAINTAIN');
    END IF;
    RETURN false;
END
$$;

-- Installs or brings in line the triggers of one watched view. Returns the tables that carry them.
CREATE FUNCTION mvrefresh.sync_triggers(p_view_id integer, p_view regclass)
    RETURNS text[]
    LANGUAGE plpgsql
AS $$
DECLARE
    src record;
    existing record;
    tg_name name := 'mvrefresh_' || p_view_id;
    wanted_attrs int2[];
    have_attrs int2[];
    tables text[] := '{}';
BEGIN
    -- drop triggers on tables the view no longer reads
    FOR existing IN
        SELECT t.tgrelid FROM pg_trigger t
         WHERE t.tgname = tg_name AND t.tgfoid = 'mvrefresh.mark_dirty()'::regprocedure
           AND t.tgrelid NOT IN (SELECT s.relid FROM mvrefresh.view_sources(p_view) s
                                  WHERE s.relkind IN ('r', 'p'))
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg_name, existing.tgrelid::regclass);
    END LOOP;

    FOR src IN SELECT * FROM mvrefresh.view_sources(p_view) s WHERE s.relkind IN ('r', 'p') LOOP
        tables := tables || src.relid::regclass::text;
        SELECT array_agg(a.attnum ORDER BY a.attnum) INTO wanted_attrs
          FROM pg_attribute a WHERE a.attrelid = src.relid AND a.attname = ANY (src.columns);
        -- a BEFORE UPDATE row trigger can change columns the UPDATE does not name, which a column-specific
        -- trigger does not see: no narrowing on a table that has one, or whose partitions or children have
        -- one (one added later is taken into account when watch runs again)
        IF EXISTS (WITH RECURSIVE tree(rel) AS (
                       SELECT src.relid
                       UNION
                       SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel)
                   SELECT FROM pg_trigger t JOIN tree ON t.tgrelid = tree.rel
                    WHERE t.tgtype::integer & 19 = 19) THEN -- ROW (1) | BEFORE (2) | UPDATE (16)
            wanted_attrs := NULL;
        END IF;
        SELECT array_agg(k ORDER BY k) INTO have_attrs
          FROM pg_trigger t, unnest(t.tgattr::int2[]) k
         WHERE t.tgrelid = src.relid AND t.tgname = tg_name;
        IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = src.relid AND t.tgname = tg_name
                     AND t.tgfoid = 'mvrefresh.mark_dirty()'::regprocedure AND t.tgtype = 60
                     AND t.tgargs = convert_to(p_view_id::text, 'SQL_ASCII') || '\x00'::bytea)
           AND have_attrs IS NOT DISTINCT FROM wanted_attrs THEN
            CONTINUE;
        END IF;
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I AFTER INSERT OR UPDATE%s OR DELETE OR TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.mark_dirty(%L)',
            tg_name,
            CASE WHEN wanted_attrs IS NULL THEN ''
                 ELSE ' OF ' || (SELECT string_agg(quote_ident(c), ', ' ORDER BY c) FROM unnest(src.columns) c) END,
            src.relid::regclass, p_view_id::text);
    END LOOP;
    RETURN tables;
END
$$;

-- Watches a materialized view: registers it, installs its triggers and records its dependencies.
-- Idempotent; running it again after the view's definition changed brings the triggers in line.
-- Returns a report: id, view, tables, dependencies, warnings, created.
CREATE FUNCTION mvrefresh.watch(
    p_name text,
    p_debounce_ms integer DEFAULT NULL,
    p_max_wait_ms integer DEFAULT NULL,
    p_refresh_interval_ms integer DEFAULT NULL,
    p_allow_blocking_refresh boolean DEFAULT false,
    p_with_dependencies boolean DEFAULT false)
    RETURNS jsonb
    LANGUAGE plpgsql
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
    warn text[] := '{}';
    tables text[];
    view_depth integer := 0;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'the database is a standby (in recovery): watch needs the primary'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    IF p_debounce_ms < 0 OR p_max_wait_ms < 0 OR p_refresh_interval_ms <= 0 THEN
        RAISE EXCEPTION 'debounce and max wait must be >= 0 and the refresh interval > 0 (milliseconds)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(mvrefresh.lock_namespace(), -1);
    rel := mvrefresh.resolve_view(p_name);
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
        SELECT v.id INTO vid FROM mvrefresh.view_state v JOIN pg_namespace n ON n.nspname = v.view_schema
          JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name WHERE c.oid = dep.relid;
        IF vid IS NULL THEN
            IF NOT p_with_dependencies THEN
                RAISE EXCEPTION '% reads materialized view %, which is not watched', rel, dep.relid::regclass
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Watch it first, or pass --with-dependencies to watch it as well.';
            END IF;
            dep_report := mvrefresh.watch(format('%I.%I', (SELECT nspname FROM pg_namespace n JOIN pg_class c
                                                           ON c.relnamespace = n.oid WHERE c.oid = dep.relid),
                                                 (SELECT relname FROM pg_class WHERE oid = dep.relid)),
                                          p_debounce_ms, p_max_wait_ms, NULL, p_allow_blocking_refresh, true);
            vid := (dep_report ->> 'id')::integer;
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
    IF EXISTS (SELECT FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
                 AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass WHERE r.ev_class = rel) THEN
        warn := warn || format('%s calls user-defined functions: tables they read are not watched%s', rel,
                               CASE WHEN p_refresh_interval_ms IS NULL
                                    THEN '; pass --refresh-interval-ms if they read changing data' ELSE '' END);
    END IF;

    SELECT COALESCE(max(depth) + 1, 0) INTO view_depth FROM mvrefresh.view_state WHERE id = ANY (dep_ids);

    INSERT INTO mvrefresh.view_state AS v (view_schema, view_name, debounce_ms, max_wait_ms,
                                           refresh_interval_ms, allow_blocking_refresh, depth)
    VALUES (schema_name, rel_name, p_debounce_ms, p_max_wait_ms, p_refresh_interval_ms,
            p_allow_blocking_refresh, view_depth)
    ON CONFLICT (view_schema, view_name) DO UPDATE
        SET debounce_ms = EXCLUDED.debounce_ms,
            max_wait_ms = EXCLUDED.max_wait_ms,
            refresh_interval_ms = EXCLUDED.refresh_interval_ms,
            allow_blocking_refresh = EXCLUDED.allow_blocking_refresh,
            depth = EXCLUDED.depth
    RETURNING id, (xmax = 0) INTO vid, created;
    -- refreshed once now: the view may be stale, or its definition may have changed
    INSERT INTO mvrefresh.marks (view_id) VALUES (vid);

    DELETE FROM mvrefresh.view_deps WHERE view_id = vid AND depends_on <> ALL (dep_ids);
    INSERT INTO mvrefresh.view_deps (view_id, depends_on)
    SELECT vid, d FROM unnest(dep_ids) d ON CONFLICT DO NOTHING;

    tables := mvrefresh.sync_triggers(vid, rel);
    UPDATE mvrefresh.view_state
       SET sources = tables,
           warnings = warn,
           source_relids = ARRAY(SELECT s.relid FROM mvrefresh.view_sources(rel) s ORDER BY s.relid)
     WHERE id = vid;
    -- a running daemon refreshes it once now and reloads its settings
    PERFORM pg_notify('mvrefresh', vid::text);
    RETURN jsonb_build_object('id', vid, 'view', rel::text, 'created', created, 'tables', to_jsonb(tables),
                              'dependencies', to_jsonb(dep_names), 'warnings', to_jsonb(warn));
END
$$;

-- Finds a watched view by the name the user gives, even when the view itself is gone.
CREATE FUNCTION mvrefresh.find_watched(p_name text) RETURNS integer
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    rel regclass;
    parts text[];
    found_id integer;
BEGIN
    rel := to_regclass(p_name);
    IF rel IS NOT NULL THEN
        SELECT v.id INTO found_id FROM mvrefresh.view_state v
          JOIN pg_namespace n ON n.nspname = v.view_schema
          JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
         WHERE c.oid = rel;
        IF found_id IS NOT NULL THEN
            RETURN found_id;
        END IF;
    END IF;
    parts := parse_ident(p_name);
    IF cardinality(parts) = 2 THEN
        SELECT id INTO found_id FROM mvrefresh.view_state WHERE view_schema = parts[1] AND view_name = parts[2];
    ELSIF cardinality(parts) = 1 THEN
        SELECT id INTO found_id FROM mvrefresh.view_state
         WHERE view_name = parts[1] AND view_schema = ANY (current_schemas(false))
         ORDER BY array_position(current_schemas(false), view_schema::text) LIMIT 1;
    END IF;
    RETURN found_id;
END
$$;

-- Stops watching a view: its triggers and its registration go; tables read by other watched views keep
-- their own triggers. Refuses while another watched view reads it.
CREATE FUNCTION mvrefresh.unwatch(p_name text) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    vid integer;
    t record;
    tables text[] := '{}';
    readers text;
    label text;
BEGIN
    PERFORM pg_advisory_xact_lock(mvrefresh.lock_namespace(), -1);
    vid := mvrefresh.find_watched(p_name);
    IF vid IS NULL THEN
        RAISE EXCEPTION 'materialized view "%" is not watched', p_name USING ERRCODE = 'undefined_object';
    END IF;
    SELECT string_agg(format('%I.%I', v.view_schema, v.view_name), ', ') INTO readers
      FROM mvrefresh.view_deps d JOIN mvrefresh.view_state v ON v.id = d.view_id WHERE d.depends_on = vid;
    SELECT format('%I.%I', view_schema, view_name) INTO label FROM mvrefresh.view_state WHERE id = vid;
    IF readers IS NOT NULL THEN
        RAISE EXCEPTION '% is read by watched view(s) %', label, readers
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Unwatch those first.';
    END IF;
    FOR t IN SELECT tgrelid FROM pg_trigger WHERE tgname = 'mvrefresh_' || vid
                                             AND tgfoid = 'mvrefresh.mark_dirty()'::regprocedure LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', 'mvrefresh_' || vid, t.tgrelid::regclass);
        tables := tables || t.tgrelid::regclass::text;
    END LOOP;
    DELETE FROM mvrefresh.marks WHERE view_id = vid;
    DELETE FROM mvrefresh.view_state WHERE id = vid;
    RETURN jsonb_build_object('id', vid, 'view', label, 'tables', to_jsonb(tables));
END
$$;

-- Unwatches every view, dependants first.
CREATE FUNCTION mvrefresh.unwatch_all() RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v record;
    reports jsonb := '[]';
BEGIN
    FOR v IN SELECT format('%I.%I', view_schema, view_name) AS name FROM mvrefresh.view_state
              ORDER BY depth DESC, id LOOP
        reports := reports || mvrefresh.unwatch(v.name);
    END LOOP;
    RETURN reports;
END
$$;

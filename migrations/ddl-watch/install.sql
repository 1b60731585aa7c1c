-- The DDL event triggers, mvrefresh_ddl (ddl_command_end) and mvrefresh_drop (sql_drop): they tell running
-- daemons, at the commit of the application's DDL, to compare the watched views' sources with the catalog
-- now (check_drift()) instead of at their next periodic check.
-- Run by `mvrefresh install-ddl-watch` (and by migrate where its role may create event triggers) as the
-- installer: a superuser, or a managed service's event-trigger role. An event trigger executes its function
-- as whoever runs the DDL, superusers included, so the function must be one that no less privileged role
-- can replace, rename or shadow: it lives in schema mvrefresh_ddl_watch, owned by the installer, with no
-- privilege for anyone else (event triggers need none to execute it), never in schema mvrefresh, which
-- the DDL role owns. This file executes nothing stored in the database except the catalog's own functions.
-- The function only notifies, with every name schema-qualified and search_path pinned: the catalog work
-- and the trigger changes happen in the daemon's own transaction, never inside the application's
-- migration, which they could slow down or make fail. It never raises, for the same reason.
-- Not reported: what REFRESH ... CONCURRENTLY does internally (its temporary table: no command collected,
-- temporary objects dropped), the mvrefresh schema's own objects, and the triggers sync_table_triggers()
-- changes (it sets mvrefresh.syncing while it does): none of them changes what a view reads.
-- The third, mvrefresh_refresh (ddl_command_start of REFRESH MATERIALIZED VIEW), gives code that still
-- refreshes an incremental view (a table under the view's name, src/incremental/convert.ts) an error that
-- names mvrefresh instead of PostgreSQL's "is not a materialized view". It raises only where that
-- statement would fail anyway: no materialized view has the name, and a table of that name carries the
-- guard trigger of an incremental view. It reads the catalog alone (the query text, pg_class, pg_trigger),
-- never a table of schema mvrefresh, which the DDL role could replace with a view calling its own code.
-- first, so that no statement below fires triggers that may execute a replaceable function (earlier
-- versions executed mvrefresh.ddl_changed())
DROP EVENT TRIGGER IF EXISTS mvrefresh_ddl;
DROP EVENT TRIGGER IF EXISTS mvrefresh_drop;
DROP EVENT TRIGGER IF EXISTS mvrefresh_refresh;
CREATE SCHEMA IF NOT EXISTS mvrefresh_ddl_watch;
DO $$
BEGIN
    -- a schema of that name created beforehand by another role would let that role replace the function
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'mvrefresh_ddl_watch')
       OPERATOR(pg_catalog.<>) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION 'schema mvrefresh_ddl_watch belongs to another role: drop it, then install again'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
REVOKE ALL ON SCHEMA mvrefresh_ddl_watch FROM PUBLIC;
CREATE OR REPLACE FUNCTION mvrefresh_ddl_watch.ddl_changed() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('mvrefresh.syncing', true) OPERATOR(pg_catalog.=) 'on' THEN
        RETURN;
    END IF;
    IF TG_EVENT OPERATOR(pg_catalog.=) 'sql_drop' THEN
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() o
                        WHERE NOT o.is_temporary
                          AND o.schema_name IS DISTINCT FROM 'mvrefresh') THEN
            RETURN;
        END IF;
    ELSIF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_ddl_commands() c
                       WHERE c.schema_name IS DISTINCT FROM 'mvrefresh'
                         AND c.schema_name NOT LIKE 'pg\_temp%') THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_notify({{CHANNEL}}, {{DDL_CHANGED}});
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh_ddl_watch.ddl_changed() FROM PUBLIC;
CREATE EVENT TRIGGER mvrefresh_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP TABLE', 'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW',
                 'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'DROP MATERIALIZED VIEW',
                 'CREATE TRIGGER', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE RULE', 'DROP RULE',
                 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE')
    EXECUTE FUNCTION mvrefresh_ddl_watch.ddl_changed();
-- DROP reports nothing to ddl_command_end's command list: dropped partitions, tables, views
CREATE EVENT TRIGGER mvrefresh_drop ON sql_drop
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP VIEW', 'DROP MATERIALIZED VIEW', 'DROP TRIGGER',
                 'DROP RULE', 'DROP FOREIGN TABLE')
    EXECUTE FUNCTION mvrefresh_ddl_watch.ddl_changed();
CREATE OR REPLACE FUNCTION mvrefresh_ddl_watch.refresh_guard() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m pg_catalog.text[];
    parts pg_catalog.text[];
    target pg_catalog.regclass;
BEGIN
    FOR m IN SELECT pg_catalog.regexp_matches(pg_catalog.current_query(),
                 '\mREFRESH\s+MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?((?:"(?:[^"]|"")+"|[[:alpha:]_][[:alnum:]_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[[:alpha:]_][[:alnum:]_$]*))?)',
                 'gi') LOOP
        BEGIN
            parts := pg_catalog.parse_ident(m[1]);
        EXCEPTION WHEN OTHERS THEN
            CONTINUE;
        END;
        CONTINUE WHEN EXISTS (
            SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'm' AND c.relname = parts[pg_catalog.cardinality(parts)]
               AND (pg_catalog.cardinality(parts) = 1 OR n.nspname = parts[1]));
        SELECT c.oid INTO target
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'mvrefresh_guard'
          JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid AND p.proname = 'refuse_write'
          JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace AND pn.nspname = 'mvrefresh'
         WHERE c.relkind = 'r' AND c.relname = parts[pg_catalog.cardinality(parts)]
           AND (pg_catalog.cardinality(parts) = 1 OR n.nspname = parts[1])
         LIMIT 1;
        IF target IS NOT NULL THEN
            RAISE EXCEPTION '% is an incremental view kept by mvrefresh, not a materialized view: it is never refreshed', target
                USING ERRCODE = 'wrong_object_type',
                      HINT = 'mvrefresh applies each change as it commits (mvrefresh status shows how stale the view is): '
                             'drop the REFRESH, or make it a materialized view again with mvrefresh unwatch.';
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh_ddl_watch.refresh_guard() FROM PUBLIC;
-- a REFRESH of an incremental view's name: an error naming mvrefresh (above)
CREATE EVENT TRIGGER mvrefresh_refresh ON ddl_command_start
    WHEN TAG IN ('REFRESH MATERIALIZED VIEW')
    EXECUTE FUNCTION mvrefresh_ddl_watch.refresh_guard();

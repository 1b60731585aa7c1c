-- The event triggers' function (mvrefresh_ddl on ddl_command_end, mvrefresh_drop on sql_drop, installed
-- by install_ddl_watch() where the role may create event triggers): tells running daemons, at the commit
-- of the application's DDL, to compare the watched views' sources with the catalog now (check_drift())
-- instead of at their next periodic check. It only notifies: the catalog work and the trigger changes
-- happen in the daemon's own transaction, never inside the application's migration, which they could
-- slow down or make fail. It never raises, for the same reason.
-- Not reported: what REFRESH ... CONCURRENTLY does internally (its temporary table: no command collected,
-- temporary objects dropped), the mvrefresh schema's own objects, and the triggers sync_table_triggers()
-- changes (it sets mvrefresh.syncing while it does): none of them changes what a view reads.
CREATE OR REPLACE FUNCTION mvrefresh.ddl_changed() RETURNS event_trigger
    LANGUAGE plpgsql
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

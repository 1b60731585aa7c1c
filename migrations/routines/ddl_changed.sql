-- The event trigger's function (mvrefresh_ddl on ddl_command_end, installed by install_ddl_watch() where
-- the role may create event triggers): tells running daemons, at the commit of the application's DDL, to
-- compare the watched views' sources with the catalog now (check_drift()) instead of at their next
-- periodic check. It only notifies: the catalog work and the trigger changes happen in the daemon's own
-- transaction, never inside the application's migration, which they could slow down or make fail.
-- It never raises, for the same reason.
CREATE OR REPLACE FUNCTION mvrefresh.ddl_changed() RETURNS event_trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify({{CHANNEL}}, {{DDL_CHANGED}});
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

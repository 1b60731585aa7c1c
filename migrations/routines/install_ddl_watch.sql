-- Installs the event trigger mvrefresh_ddl (routines/ddl_changed.sql) when this role may create one
-- (superuser; on managed services the role they grant event-trigger rights), and says whether it is in
-- place. Without it the daemon's periodic check (driftCheckIntervalMs) is the only way drift is found.
-- migrate calls it; the status view's drift_detection column says which of the two is in force.
CREATE OR REPLACE FUNCTION mvrefresh.install_ddl_watch() RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'mvrefresh_ddl') THEN
        RETURN true;
    END IF;
    BEGIN
        CREATE EVENT TRIGGER mvrefresh_ddl ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP TABLE', 'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW',
                         'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'DROP MATERIALIZED VIEW',
                         'CREATE TRIGGER', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE RULE', 'DROP RULE',
                         'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE')
            EXECUTE FUNCTION mvrefresh.ddl_changed();
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END
$$;

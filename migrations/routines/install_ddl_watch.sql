-- Installs the event triggers mvrefresh_ddl and mvrefresh_drop (routines/ddl_changed.sql) when this role
-- may create them
-- (superuser; on managed services the role they grant event-trigger rights), and says whether it is in
-- place. Without them the daemon's periodic check (driftCheckIntervalMs) is the only way drift is found.
-- migrate calls it; the status view's drift_detection column says which of the two is in force.
CREATE OR REPLACE FUNCTION mvrefresh.install_ddl_watch() RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'mvrefresh_ddl')
       AND EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'mvrefresh_drop') THEN
        RETURN true;
    END IF;
    BEGIN
        DROP EVENT TRIGGER IF EXISTS mvrefresh_ddl;
        DROP EVENT TRIGGER IF EXISTS mvrefresh_drop;
        CREATE EVENT TRIGGER mvrefresh_ddl ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP TABLE', 'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW',
                         'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'DROP MATERIALIZED VIEW',
                         'CREATE TRIGGER', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE RULE', 'DROP RULE',
                         'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE')
            EXECUTE FUNCTION mvrefresh.ddl_changed();
        -- DROP reports nothing to ddl_command_end's command list: dropped partitions, tables, views
        CREATE EVENT TRIGGER mvrefresh_drop ON sql_drop
            WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP VIEW', 'DROP MATERIALIZED VIEW', 'DROP TRIGGER',
                         'DROP RULE', 'DROP FOREIGN TABLE')
            EXECUTE FUNCTION mvrefresh.ddl_changed();
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END
$$;

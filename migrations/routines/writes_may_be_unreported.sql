-- Whether writes that other sessions committed before now may still be missing from the cumulative
-- statistics (pg_stat_user_tables): PostgreSQL 15+ reports a backend's counters when it goes idle, at most
-- once a second and within 10 s, and when it ends; so only a session of this database that is running, in
-- a transaction, or idle for less than the reporting delay may hold some. A session whose state this role
-- may not see is taken to. PostgreSQL 14 reports an idle session's counters only with its next transaction:
-- any other session may hold some. This session's own are read with pg_stat_get_xact_*().
CREATE OR REPLACE FUNCTION mvrefresh.writes_may_be_unreported() RETURNS boolean
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    STABLE
AS $$
    SELECT EXISTS (SELECT FROM pg_stat_activity a
                    WHERE a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                      AND a.pid <> pg_backend_pid() AND a.backend_type <> 'autovacuum worker'
                      AND (a.state IS DISTINCT FROM 'idle'
                           OR a.state_change > now() - {{STATS_REPORT_DELAY}}::interval
                           OR current_setting('server_version_num')::integer < 150000))
$$;

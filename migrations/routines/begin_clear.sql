-- Called by every transaction that deletes table marks (refresh_view()'s tx1, sync_table_triggers()),
-- before it deletes them: holds the clear lock shared until the transaction ends, then draws a new value of
-- clears_started. A READ COMMITTED writer that found a committed mark of its table remembers the value of
-- clears_started it read before looking; while that value is still current and no clear was running when
-- it looked (routines/settle_clears.sql), no transaction that deletes marks has started since, so the mark
-- is there, or a clear that deletes it commits after the writer's statement (which holds a write lock on
-- the table) and the cycle's wait covers the writer (routines/mark_table.sql).
-- The lock is waited for behind settle_clears(), which holds it for microseconds; a session of another
-- role that holds it for longer makes the clear fail after the lock timeout, not hang.
CREATE OR REPLACE FUNCTION mvrefresh.begin_clear() RETURNS void
    LANGUAGE plpgsql
    SET lock_timeout = {{DDL_LOCK_TIMEOUT}}
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({{LOCK_NAMESPACE}}, {{CLEAR_LOCK_KEY}});
    PERFORM nextval('mvrefresh.clears_started');
END
$$;

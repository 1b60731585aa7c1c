-- Called by every transaction that deletes table marks (clear_table_marks(), once its DELETE took some),
-- before it commits: holds the clear lock shared until the transaction ends, then draws a new value of
-- clears_started (invariant D of routines/mark_table.sql).
-- A READ COMMITTED writer that found a committed mark of its table remembers the value of clears_started
-- it read before looking; while that value is still current and no clear was running when it looked
-- (routines/settle_clears.sql), no transaction that deletes marks has drawn since, so none that deleted
-- the mark has committed: the mark is there, or the clear that deletes it commits after the writer's
-- statement (which holds a write lock on the table) and the cycle's wait covers the writer. Where in the
-- transaction the draw happens does not matter, only that it precedes the commit: a writer's probe that
-- still sees the mark predates that commit, and either read clears_started before the draw (its memo goes
-- stale with it) or after (then the clear held the lock when the writer read clears_settled, which
-- therefore lagged, and nothing was remembered).
-- The lock is waited for behind settle_clears(), which holds it for microseconds; a session of another
-- role that holds it for longer makes the clear fail after the lock timeout, not hang.
CREATE OR REPLACE FUNCTION mvrefresh.begin_clear() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = {{DDL_LOCK_TIMEOUT}}
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({{LOCK_NAMESPACE}}, {{CLEAR_LOCK_KEY}});
    PERFORM nextval('mvrefresh.clears_started');
END
$$;

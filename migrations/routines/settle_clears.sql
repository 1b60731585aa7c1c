-- Sets clears_settled to the value of clears_started when no transaction that deletes table marks is
-- running (none holds the clear lock: routines/begin_clear.sql). Every clear that drew a value up to it has
-- then ended, committed or not, so a writer that reads both counters equal before its probe knows that no
-- clear was in flight while it looked (invariant S of routines/mark_table.sql). Without waiting: when a
-- clear runs, it settles after it ends. refresh_view() calls it in a transaction of its own after every
-- tx1 that cleared; a clear that failed leaves the counters apart until the next cycle settles them
-- (writers probe meanwhile). Every other transaction that can clear (sync_table_triggers(): watch, unwatch,
-- capture changes, migrate, the drift check) is followed by a call from its caller or by the daemon's
-- sweep, which calls it whenever the counters differ: while they do, every writer of every watched table
-- probes on every statement (step 2 of mark_table.sql) instead of trusting its memo.
CREATE OR REPLACE FUNCTION mvrefresh.settle_clears() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- nothing here needs to survive a crash: a lost value leaves the counters apart, and writers probe
    PERFORM set_config('synchronous_commit', 'off', true);
    -- settled already: no lock, no sequence write (the sweep calls this every time)
    IF pg_sequence_last_value('mvrefresh.clears_started') = pg_sequence_last_value('mvrefresh.clears_settled') THEN
        RETURN;
    END IF;
    IF pg_try_advisory_xact_lock({{LOCK_NAMESPACE}}, {{CLEAR_LOCK_KEY}}) THEN
        PERFORM setval('mvrefresh.clears_settled', pg_sequence_last_value('mvrefresh.clears_started'), true);
    END IF;
END
$$;

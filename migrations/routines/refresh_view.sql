-- One refresh cycle of one view: the protocol that keeps every committed write reflected. Called by the
-- daemon and by refresh_dirty().
--
-- A view is dirty while it has rows in mvrefresh.marks, while a table it reads has rows in
-- mvrefresh.table_marks, while a cycle is unfinished (below), or (an incremental view) while its logs hold
-- a committed row its applied snapshot does not show (routines/capture_logs.sql: a table that only
-- incremental views read has no marks; what follows about marks concerns the others). Writers only ever INSERT table marks, never
-- UPDATE a shared row: no writer waits for another writer, for a long transaction that marked the table
-- first, or for the daemon. One trigger per table (routines/mark_table.sql), whatever the number of views.
--
--   writer (statement trigger on table T)      daemon / refresh_dirty()  (this procedure, view V)
--   ----------------------------------------   -----------------------------------------------------
--   READ COMMITTED, T has a mark  -> nothing   tx1: try advisory lock; DELETE the marks of V's tables,
--   (found now, or remembered                       which become marks of every view reading them; when
--    while no clear drew since)                     it deleted any, begin_clear(); nothing due: 'clean';
--   no xid yet (nothing written)  -> nothing        started_gen + 1; DELETE V's marks; COMMIT (new
--   otherwise: INSERT a mark of T,                  writers now find no table mark and add one);
--              pg_notify('t' || T's oid)            settle_clears() when it cleared; COMMIT
--              (unless mvrefresh.notify = off)
--                                              wait: every xid of this database running after tx1's
--                                                    commit and holding a write lock on a source of V
--                                                    (and every prepared one) finishes, or the wait
--                                                    times out (xids kept)
--                                              tx2: try advisory lock; REFRESH [CONCURRENTLY];
--                                                   done_gen := started_gen (unless xids still run);
--                                                   dependants get a mark; COMMIT
--
-- What must hold (W, D, S, R and F are the writer's side, stated in routines/mark_table.sql):
--  V  Every committed table mark of V's sources that tx1's DELETE takes becomes a view mark of every view
--     reading that table, in the same transaction: a view refreshed later keeps its claim. A writer whose
--     mark is not committed yet is invisible to the DELETE: its mark survives the cycle.
--  W  A writer that skipped holds a write lock on a source of V until it ends; if it looked before tx1's
--     commit, it is running at that commit and the wait covers it, so tx2's snapshot contains its writes
--     (or the wait times out and its xid keeps the view due). Otherwise it found no mark and added one.
--  D  tx1 never deletes table marks without drawing clears_started before it commits: the DELETE's own
--     result decides the draw, so a mark committed after any earlier look is either deleted and drawn
--     for, or left for a later cycle. A writer that remembered a mark (R) thus sees its memo go stale
--     before the mark's deletion commits, and probes again. settle_clears() runs only after tx1 ended.
--  G  started_gen > done_gen means a cycle did not finish (crash, lost lock, long writer): the sweep treats
--     it as dirty.
--  Writers at REPEATABLE READ or SERIALIZABLE read with their transaction snapshot, which can predate a
--  clear although they had no xid then: they never skip for a probe, and add a mark once per transaction
--  and table.
--  Names: every transaction of the cycle sets search_path to pg_catalog, pg_temp first (a procedure with a
--  SET clause could not COMMIT), and the declarations are qualified (resolved with the caller's path).
--
-- Asynchronous commits of tx1 (the clear) and tx2 (the refresh) keep every guarantee, because WAL is
-- flushed in order and a crash loses only a tail of it:
--  * tx1 lost: its marks come back and started_gen is unchanged, so the view is still dirty. A writer that
--    found no mark because tx1 had cleared it commits after tx1: if that writer's commit survived, so did
--    tx1, and so did the writer's own mark.
--  * tx2 lost: the view's contents, done_gen and the dependants' marks are lost together; started_gen >
--    done_gen makes the sweep run the cycle again.
-- A synchronous commit waits for a flush of its own (on a busy server, behind the writers' group commits)
-- and bought nothing: the refreshed contents are derived data that the next cycle recomputes.
--
-- An incremental view (apply_view.sql) runs its apply as tx2, at REPEATABLE READ; the cycle is the same.
-- Outcomes: refreshed (for an incremental view: applied), populated (first, plain refresh of a view never populated), refreshed_blocking
-- (plain refresh allowed by the view's settings), clean (nothing to do), busy (another session holds the
-- view's lock), paused (the view is paused: nothing changes, its marks stay), waiting (nothing new: only
-- writers an earlier cycle gave up on are pending, and they still run), unwatched, failed. retry_in_ms,
-- when set, says when to call again. wait_ms is the wait for writers, cycle_ms the whole cycle's time in
-- the server.
CREATE OR REPLACE PROCEDURE mvrefresh.refresh_view(
    p_view_id integer,
    p_force boolean,
    p_wait_timeout_ms integer,
    p_lock_timeout_ms integer,
    p_backoff_base_ms integer,
    p_backoff_cap_ms integer,
    OUT outcome text,
    OUT duration_ms double precision,
    OUT err_sqlstate text,
    OUT err_message text,
    OUT retry_in_ms integer,
    OUT dependants integer[],
    OUT wait_ms double precision,
    OUT cycle_ms double precision)
    LANGUAGE plpgsql
AS $$
DECLARE
    s mvrefresh.view_state;
    gen pg_catalog.int8;
    xids pg_catalog.xid8[];
    old_xids pg_catalog.xid8[];
    has_marks pg_catalog.bool;
    deadline pg_catalog.timestamptz;
    nap pg_catalog.float8 := 0.001;
    t0 pg_catalog.timestamptz;
    rel pg_catalog.record;
    concurrent_ok pg_catalog.bool;
    target pg_catalog.text;
    notify_id pg_catalog.int4;
    cycle_t0 pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    wait_t0 pg_catalog.timestamptz;
    cleared pg_catalog.bool;
    is_incremental pg_catalog.bool;
    applied pg_catalog.record;
BEGIN
    -- every transaction of the cycle resolves names in pg_catalog first (a procedure cannot have a SET
    -- clause and COMMIT): set again after each COMMIT
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- tx1: claim the cycle
    SELECT * INTO s FROM mvrefresh.view_state WHERE id = p_view_id;
    IF NOT FOUND THEN
        outcome := 'unwatched';
        RETURN;
    END IF;
    IF s.paused THEN
        outcome := 'paused';
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock({{LOCK_NAMESPACE}}, p_view_id) THEN
        outcome := 'busy';
        RETURN;
    END IF;
    -- V, D: the marks of the tables it reads become marks of every view reading them, drawn for before this
    -- transaction commits (routines/clear_table_marks.sql). Nothing deleted: no draw, nothing to settle (a
    -- clean view costs one index scan).
    cleared := mvrefresh.clear_table_marks(s.source_relids);
    has_marks := EXISTS (SELECT FROM mvrefresh.marks WHERE view_id = p_view_id);
    -- an incremental view is also due from its logs (routines/capture_logs.sql): a committed log row its
    -- applied snapshot does not show, seen in this statement's snapshot, is in tx2's, taken later
    has_marks := has_marks OR mvrefresh.log_pending(p_view_id);
    IF NOT (p_force OR has_marks OR s.started_gen > s.done_gen) THEN
        outcome := 'clean';
    ELSE
        -- the only thing due is the long-running writers of the last cycle, which refreshed (wait_gen: no
        -- cycle started since, so nothing else is unreflected), and every one of them is still running:
        -- refreshing again before one of them ends would show nothing new
        SELECT array_agg(x) INTO old_xids FROM unnest(s.wait_xids) x WHERE pg_xact_status(x) = 'in progress';
        IF old_xids IS NOT NULL AND cardinality(old_xids) = cardinality(s.wait_xids)
           AND s.wait_gen = s.started_gen AND NOT (p_force OR has_marks) THEN
            outcome := 'waiting';
            retry_in_ms := {{RETRY_MS}};
        END IF;
    END IF;
    -- no cycle: what tx1 cleared is settled
    IF outcome IS NOT NULL THEN
        IF cleared THEN
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            PERFORM mvrefresh.settle_clears();
        END IF;
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE mvrefresh.view_state
       SET cycle_since = LEAST(cycle_since, (SELECT min(marked_at) FROM mvrefresh.marks WHERE view_id = p_view_id)),
           started_gen = started_gen + 1,
           cycle_started_at = now()
     WHERE id = p_view_id
    RETURNING started_gen INTO gen;
    DELETE FROM mvrefresh.marks WHERE view_id = p_view_id;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF cleared THEN
        PERFORM mvrefresh.settle_clears();
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;

    -- wait: writers that may have looked for a mark before tx1 committed. Such a writer holds a write
    -- lock on a relation the view reads until it ends (its trigger fired there), so only transactions
    -- holding one are waited for, with prepared transactions and any xid no backend of this server
    -- accounts for. Writers an earlier cycle already gave up on are not waited for again: they are
    -- carried over, and the view stays due until they end.
    -- The generic plan is the custom one (hashed subplans over the activity and lock functions), but its
    -- estimate is higher, so the plan cache planned the query afresh in every cycle (0.5-1 ms): the
    -- setting holds until this transaction's COMMIT, over the wait's simple statements
    PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
    SELECT array_agg(x) INTO xids
      FROM pg_snapshot_xip(pg_current_snapshot()) x
     WHERE x <> ALL (COALESCE(old_xids, '{}'))
       AND (EXISTS (SELECT FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                     WHERE a.backend_xid = x::xid AND l.locktype = 'relation'
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.relation = ANY (s.source_relids)
                       AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                      'AccessExclusiveLock'))
            OR x::xid IN (SELECT p.transaction FROM pg_prepared_xacts p)
            OR NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_xid = x::xid));
    wait_t0 := clock_timestamp();
    deadline := wait_t0 + p_wait_timeout_ms * interval '1 millisecond';
    WHILE xids IS NOT NULL LOOP
        SELECT array_agg(x) INTO xids FROM unnest(xids) x WHERE pg_xact_status(x) = 'in progress';
        EXIT WHEN xids IS NULL OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(nap);
        nap := LEAST(nap * 2, 0.05);
    END LOOP;
    SELECT array_agg(x) INTO xids
      FROM unnest(COALESCE(xids, '{}') || COALESCE(old_xids, '{}')) x WHERE pg_xact_status(x) = 'in progress';
    wait_ms := extract(epoch FROM clock_timestamp() - wait_t0) * 1000;
    -- an incremental view's tx2 is its apply (apply_view.sql), which reads the logs and the sources in one
    -- snapshot: REPEATABLE READ, set before the next transaction's first query
    is_incremental := EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = p_view_id AND i.state = 'active');
    IF is_incremental THEN
        COMMIT;
        SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ELSE
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;

    -- tx2: refresh, in a snapshot taken after the wait
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    PERFORM set_config('synchronous_commit', 'off', true);
    IF NOT pg_try_advisory_xact_lock({{LOCK_NAMESPACE}}, p_view_id) THEN
        -- the unfinished cycle (started_gen > done_gen) keeps the view due for the lock holder or a sweep
        outcome := 'busy';
        RETURN;
    END IF;
    t0 := clock_timestamp();
    SELECT c.oid, c.relkind, c.relispopulated, c.relowner INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = s.view_schema AND c.relname = s.view_name;
    IF FOUND AND rel.relkind = 'r' AND is_incremental THEN
        BEGIN
            SELECT * INTO applied FROM mvrefresh.apply_view(p_view_id, rel.oid, rel.relowner) a;
            outcome := 'refreshed';
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS err_sqlstate = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT;
        END;
    ELSIF NOT FOUND OR rel.relkind <> 'm' THEN
        err_sqlstate := CASE WHEN rel IS NULL THEN '42P01' ELSE '42809' END;
        err_message := format('%I.%I is %s', s.view_schema, s.view_name,
                              CASE WHEN rel IS NULL THEN 'gone: the materialized view was dropped or renamed'
                                   ELSE 'no longer a materialized view' END);
    ELSE
        target := format('%I.%I', s.view_schema, s.view_name);
        concurrent_ok := EXISTS (SELECT FROM pg_index i
                                  WHERE i.indrelid = rel.oid AND i.indisunique AND i.indisvalid
                                    AND i.indpred IS NULL AND i.indexprs IS NULL);
        BEGIN
            -- the view's functions see the owner's search_path, as in a REFRESH run by hand (before 17;
            -- routines/refresh_search_path.sql); undone by the block's rollback on failure, else below
            PERFORM pg_catalog.set_config('search_path', mvrefresh.refresh_search_path(rel.relowner), true);
            IF NOT rel.relispopulated THEN
                EXECUTE 'REFRESH MATERIALIZED VIEW ' || target;
                outcome := 'populated';
            ELSIF NOT concurrent_ok AND s.allow_blocking_refresh THEN
                EXECUTE 'REFRESH MATERIALIZED VIEW ' || target;
                outcome := 'refreshed_blocking';
            ELSE
                EXECUTE 'REFRESH MATERIALIZED VIEW CONCURRENTLY ' || target;
                outcome := 'refreshed';
            END IF;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS err_sqlstate = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT;
            -- duplicate rows: the message names none; record which keys (routines/duplicate_keys.sql)
            IF err_sqlstate = '21000' THEN
                err_message := err_message || mvrefresh.duplicate_keys(rel.oid);
            END IF;
        END;
    END IF;
    duration_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;

    -- At REPEATABLE READ (an incremental view's tx2) the view's row cannot be updated once another
    -- transaction (another replica's or caller's tx1, the drift check, a target miss) updated it after the
    -- apply's snapshot. The apply is kept all the same (A holds by itself) and the cycle's row left as it
    -- was, as if the cycle had not run: unfinished (done_gen unchanged), so the view stays due, and the next
    -- cycle, whose apply finds only what came since, finishes it. Writes are not lost: done_gen does not move
    IF err_sqlstate IS NOT NULL THEN
        outcome := 'failed';
        BEGIN
            retry_in_ms := mvrefresh.record_failure(p_view_id, err_sqlstate, err_message, duration_ms,
                                                    p_backoff_base_ms, p_backoff_cap_ms);
        EXCEPTION WHEN serialization_failure THEN
            retry_in_ms := {{RETRY_MS}};
        END;
        cycle_ms := extract(epoch FROM clock_timestamp() - cycle_t0) * 1000;
        COMMIT;
        RETURN;
    END IF;

    BEGIN
        UPDATE mvrefresh.view_state
           SET done_gen = CASE WHEN xids IS NULL THEN GREATEST(done_gen, gen) ELSE done_gen END,
               wait_xids = xids,
               wait_gen = gen,
               cycle_since = CASE WHEN xids IS NULL THEN NULL ELSE cycle_since END,
               cycle_started_at = NULL,
               last_refreshed_at = clock_timestamp(),
               last_duration_ms = duration_ms,
               last_outcome = outcome,
               last_error = NULL,
               last_sqlstate = NULL,
               consecutive_failures = 0,
               next_attempt_at = NULL
         WHERE id = p_view_id;
    EXCEPTION WHEN serialization_failure THEN
        retry_in_ms := {{RETRY_MS}};
    END;
    IF xids IS NOT NULL THEN
        retry_in_ms := {{RETRY_MS}};
    END IF;

    -- dependants read what this transaction wrote: they are marked in it, like any writer's view
    SELECT array_agg(d.view_id ORDER BY d.view_id) INTO dependants
      FROM mvrefresh.view_deps d WHERE d.depends_on = p_view_id;
    FOR notify_id IN
        INSERT INTO mvrefresh.marks (view_id)
        SELECT d.view_id FROM mvrefresh.view_deps d
         WHERE d.depends_on = p_view_id
           AND NOT EXISTS (SELECT FROM mvrefresh.marks m WHERE m.view_id = d.view_id)
        RETURNING view_id
    LOOP
        PERFORM pg_notify({{CHANNEL}}, notify_id::text);
    END LOOP;
    cycle_ms := extract(epoch FROM clock_timestamp() - cycle_t0) * 1000;
    COMMIT;
END
$$;

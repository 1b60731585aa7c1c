-- mvrefresh schema, version 3: a refresh cycle's transactions commit without waiting for the WAL flush,
-- the trigger does one SPI query less, and a cycle reports how long it waited for writers (wait_ms) and its
-- whole time in the server (cycle_ms).
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

-- The trigger of version 1, with one statement less per transaction: set_config() as an assignment (a
-- plain expression evaluation) rather than PERFORM (an SPI query). CREATE OR REPLACE keeps its ACL.
CREATE OR REPLACE FUNCTION mvrefresh.mark_dirty() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    seen text := 'mvrefresh.v' OPERATOR(pg_catalog.||) TG_ARGV[0];
    ignored text;
BEGIN
    IF pg_catalog.current_setting(seen, true) OPERATOR(pg_catalog.=) '1'
       OR pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    ignored := pg_catalog.set_config(seen, '1', true);
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed'
       AND EXISTS (SELECT FROM mvrefresh.marks
                    WHERE view_id OPERATOR(pg_catalog.=) TG_ARGV[0]::pg_catalog.int4) THEN
        RETURN NULL;
    END IF;
    INSERT INTO mvrefresh.marks (view_id) VALUES (TG_ARGV[0]::pg_catalog.int4);
    PERFORM pg_catalog.pg_notify('mvrefresh', TG_ARGV[0]);
    RETURN NULL;
END
$$;

DROP PROCEDURE mvrefresh.refresh_view;

-- One refresh cycle of one view, the protocol of 0001's header. Outcomes as in version 1.
CREATE PROCEDURE mvrefresh.refresh_view(
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
    gen bigint;
    xids xid8[];
    old_xids xid8[];
    has_marks boolean;
    deadline timestamptz;
    nap double precision := 0.001;
    t0 timestamptz;
    rel record;
    concurrent_ok boolean;
    target text;
    notify_id integer;
    cycle_t0 timestamptz := clock_timestamp();
    wait_t0 timestamptz;
BEGIN
    -- tx1: claim the cycle
    SELECT * INTO s FROM mvrefresh.view_state WHERE id = p_view_id;
    IF NOT FOUND THEN
        outcome := 'unwatched';
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock(mvrefresh.lock_namespace(), p_view_id) THEN
        outcome := 'busy';
        RETURN;
    END IF;
    has_marks := EXISTS (SELECT FROM mvrefresh.marks WHERE view_id = p_view_id);
    IF NOT (p_force OR has_marks OR s.started_gen > s.done_gen) THEN
        outcome := 'clean';
        RETURN;
    END IF;
    -- the only thing due is the long-running writers of the last cycle, which refreshed (wait_gen: no cycle
    -- started since, so nothing else is unreflected), and every one of them is still running: refreshing
    -- again before one of them ends would show nothing new
    SELECT array_agg(x) INTO old_xids FROM unnest(s.wait_xids) x WHERE pg_xact_status(x) = 'in progress';
    IF old_xids IS NOT NULL AND cardinality(old_xids) = cardinality(s.wait_xids) AND s.wait_gen = s.started_gen
       AND NOT (p_force OR has_marks) THEN
        outcome := 'waiting';
        retry_in_ms := 1000;
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

    -- wait: writers that may have looked for a mark before tx1 committed. Such a writer holds a write
    -- lock on a relation the view reads until it ends (its trigger fired there), so only transactions
    -- holding one are waited for, with prepared transactions and any xid no backend of this server
    -- accounts for. Writers an earlier cycle already gave up on are not waited for again: they are
    -- carried over, and the view stays due until they end.
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
    COMMIT;

    -- tx2: refresh, in a snapshot taken after the wait
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    PERFORM set_config('synchronous_commit', 'off', true);
    IF NOT pg_try_advisory_xact_lock(mvrefresh.lock_namespace(), p_view_id) THEN
        -- the unfinished cycle (started_gen > done_gen) keeps the view due for the lock holder or a sweep
        outcome := 'busy';
        RETURN;
    END IF;
    t0 := clock_timestamp();
    SELECT c.oid, c.relkind, c.relispopulated INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = s.view_schema AND c.relname = s.view_name;
    IF NOT FOUND OR rel.relkind <> 'm' THEN
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
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS err_sqlstate = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT;
        END;
    END IF;
    duration_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;

    IF err_sqlstate IS NOT NULL THEN
        outcome := 'failed';
        retry_in_ms := mvrefresh.record_failure(p_view_id, err_sqlstate, err_message, duration_ms,
                                                p_backoff_base_ms, p_backoff_cap_ms);
        cycle_ms := extract(epoch FROM clock_timestamp() - cycle_t0) * 1000;
        COMMIT;
        RETURN;
    END IF;

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
    IF xids IS NOT NULL THEN
        retry_in_ms := 1000;
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
        PERFORM pg_notify('mvrefresh', notify_id::text);
    END LOOP;
    cycle_ms := extract(epoch FROM clock_timestamp() - cycle_t0) * 1000;
    COMMIT;
END
$$;

-- refresh_dirty() calls the new signature.
CREATE OR REPLACE PROCEDURE mvrefresh.refresh_dirty(
    p_wait_timeout_ms integer DEFAULT 2000,
    p_lock_timeout_ms integer DEFAULT 5000,
    p_max_passes integer DEFAULT 8)
    LANGUAGE plpgsql
AS $$
DECLARE
    due record;
    pass integer := 0;
    progressed boolean := true;
    o_outcome text;
    o_duration double precision;
    o_sqlstate text;
    o_message text;
    o_retry integer;
    o_dependants integer[];
    o_wait double precision;
    o_cycle double precision;
BEGIN
    WHILE progressed AND pass < p_max_passes LOOP
        pass := pass + 1;
        progressed := false;
        FOR due IN SELECT * FROM mvrefresh.due_views() LOOP
            CALL mvrefresh.refresh_view(due.view_id, due.reason = 'interval', p_wait_timeout_ms,
                                        p_lock_timeout_ms, 1000, 300000, o_outcome, o_duration,
                                        o_sqlstate, o_message, o_retry, o_dependants,
                                        o_wait, o_cycle);
            IF o_outcome = 'failed' THEN
                RAISE WARNING 'mvrefresh: refresh of view % failed: % (SQLSTATE %)',
                    due.view_id, o_message, o_sqlstate;
            ELSIF o_outcome IN ('refreshed', 'populated', 'refreshed_blocking') THEN
                progressed := progressed OR o_dependants IS NOT NULL;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- mvrefresh schema, version 1.
--
-- A view is dirty while it has rows in mvrefresh.marks (or an unfinished cycle, below). Writers only ever
-- INSERT marks, never UPDATE a shared row: no writer waits for another writer, for a long transaction that
-- marked the view first, or for the daemon.
--
--   writer (statement trigger)                 daemon / refresh_dirty()  (procedure refresh_view)
--   ----------------------------------------   -----------------------------------------------------
--   READ COMMITTED, a mark exists -> nothing   tx1: try advisory lock; nothing due: 'clean';
--   no xid yet (nothing written)  -> nothing        started_gen + 1; DELETE the view's marks; COMMIT
--   otherwise: INSERT a mark, pg_notify(id)         (new writers now find no mark and add one)
--                                              wait: every xid of this database running after tx1's
--                                                    commit finishes, or the wait times out (xids kept)
--                                              tx2: try advisory lock; REFRESH [CONCURRENTLY];
--                                                   done_gen := started_gen (unless xids still run);
--                                                   dependants get a mark; COMMIT
--
-- What must hold:
--  * A READ COMMITTED writer that skipped found a mark with a snapshot taken after it had written, so it
--    had an xid; if that snapshot predates tx1's commit, the xid is in the wait list, and tx2's snapshot
--    (taken after the wait) contains its writes. Otherwise it found no mark and added one.
--  * A writer whose mark is not committed yet is invisible to tx1's DELETE: its mark survives the cycle.
--  * started_gen > done_gen means a cycle did not finish (crash, lost lock, long writer): the sweep treats
--    it as dirty.
--  * Writers at REPEATABLE READ or SERIALIZABLE read with their transaction snapshot, which can predate a
--    clear although they had no xid then: they never skip, and add a mark once per transaction and view.

CREATE SCHEMA IF NOT EXISTS mvrefresh;

CREATE TABLE mvrefresh.view_state (
    id                     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view_schema            name NOT NULL,
    view_name              name NOT NULL,
    -- the oldest unreflected write covered by the cycle in progress
    cycle_since            timestamptz,
    started_gen            bigint NOT NULL DEFAULT 0,
    done_gen               bigint NOT NULL DEFAULT 0,
    cycle_started_at       timestamptz,
    -- writers still running when cycle wait_gen, which refreshed, gave up waiting for them
    wait_xids              xid8[],
    wait_gen               bigint,
    -- per-view settings (NULL: the daemon's defaults)
    debounce_ms            integer CHECK (debounce_ms >= 0),
    max_wait_ms            integer CHECK (max_wait_ms >= 0),
    refresh_interval_ms    integer CHECK (refresh_interval_ms > 0),
    allow_blocking_refresh boolean NOT NULL DEFAULT false,
    -- 0 for a view that reads no watched materialized view, else 1 + the deepest dependency
    depth                  integer NOT NULL DEFAULT 0,
    sources                text[] NOT NULL DEFAULT '{}',
    -- every relation the view reads whose writers can mark it (tables, partitions, upstream views)
    source_relids          oid[] NOT NULL DEFAULT '{}',
    warnings               text[] NOT NULL DEFAULT '{}',
    last_refreshed_at      timestamptz,
    last_duration_ms       double precision,
    last_outcome           text,
    last_error             text,
    last_sqlstate          text,
    last_error_at          timestamptz,
    consecutive_failures   integer NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (view_schema, view_name)
) WITH (fillfactor = 50);

COMMENT ON TABLE mvrefresh.view_state IS 'One row per materialized view watched by mvrefresh.';

-- The sweep reads only views that need work: its cost does not grow with the number of clean views.
CREATE INDEX view_state_unfinished ON mvrefresh.view_state (id) WHERE started_gen > done_gen;
CREATE INDEX view_state_periodic ON mvrefresh.view_state (id) WHERE refresh_interval_ms IS NOT NULL;

-- The dirty marks. No foreign key: a writer's insert must not lock the view's state row.
CREATE TABLE mvrefresh.marks (
    view_id   integer NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX marks_view_id ON mvrefresh.marks (view_id);

-- view_id reads the watched materialized view depends_on: refresh depends_on first.
CREATE TABLE mvrefresh.view_deps (
    view_id    integer NOT NULL REFERENCES mvrefresh.view_state (id) ON DELETE CASCADE,
    depends_on integer NOT NULL REFERENCES mvrefresh.view_state (id) ON DELETE RESTRICT,
    PRIMARY KEY (view_id, depends_on)
);
CREATE INDEX view_deps_depends_on ON mvrefresh.view_deps (depends_on);

-- Advisory lock keys: (1836479078 = 'mvrf', view id) for a view's refresh, (1836479078, 0) for
-- migrations, (1836479078, -1) for watch / unwatch.
CREATE FUNCTION mvrefresh.lock_namespace() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 1836479078;

-- The trigger. It runs in every writing statement of the application, so it does as little as it can:
-- once per transaction and view (remembered in a transaction-local setting, undone with a rolled-back
-- savepoint), and only once the transaction has written something (it has an xid). At READ COMMITTED, one
-- index probe for a mark; only when there is none, insert one and notify. Writers at REPEATABLE READ or
-- SERIALIZABLE cannot trust what their snapshot says about marks: they add one.
-- Skipping later statements is safe: from its first write on, the transaction holds a write lock on a
-- table the view reads until it ends, so the refresh cycle that consumes the mark it saw waits for it (or
-- keeps the view due until it ends). SECURITY DEFINER so that writers need no privileges on this schema;
-- without a SET clause (it would cost a GUC nest level per call and undo set_config(..., true)), so every
-- function and operator is schema-qualified against search_path tricks.
CREATE FUNCTION mvrefresh.mark_dirty() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    seen text := 'mvrefresh.v' OPERATOR(pg_catalog.||) TG_ARGV[0];
BEGIN
    IF pg_catalog.current_setting(seen, true) OPERATOR(pg_catalog.=) '1'
       OR pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.set_config(seen, '1', true);
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
REVOKE ALL ON FUNCTION mvrefresh.mark_dirty() FROM PUBLIC;

-- Views that need a refresh cycle now: marked dirty, an unfinished cycle, or a periodic refresh due; not
-- while backing off after a failure. Upstream first. A view may appear twice (dirty and interval).
CREATE FUNCTION mvrefresh.due_views()
    RETURNS TABLE (view_id integer, depth integer, reason text)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT s.id, s.depth, due.reason
      FROM (SELECT v.id AS view_id, 'dirty' AS reason FROM mvrefresh.view_state v
             WHERE v.started_gen > v.done_gen
            UNION ALL
            SELECT DISTINCT m.view_id, 'dirty' FROM mvrefresh.marks m
            UNION ALL
            SELECT v.id, 'interval' FROM mvrefresh.view_state v
             WHERE v.refresh_interval_ms IS NOT NULL
               AND COALESCE(v.last_refreshed_at, '-infinity')
                   + v.refresh_interval_ms * interval '1 millisecond' <= now()) AS due
      JOIN mvrefresh.view_state s ON s.id = due.view_id
     WHERE s.next_attempt_at IS NULL OR s.next_attempt_at <= now()
     ORDER BY s.depth, s.id;
END;

-- Records a failed cycle: the view stays dirty, and the next attempt backs off exponentially (capped,
-- jittered so that replicas spread out). Returns the delay in milliseconds.
CREATE FUNCTION mvrefresh.record_failure(
    p_view_id integer, p_sqlstate text, p_message text, p_duration_ms double precision,
    p_backoff_base_ms integer, p_backoff_cap_ms integer)
    RETURNS integer
    LANGUAGE plpgsql
AS $$
DECLARE
    failures integer;
    delay_ms integer;
BEGIN
    -- the view stays dirty, with the age of the oldest write it has not reflected
    INSERT INTO mvrefresh.marks (view_id, marked_at)
    SELECT id, COALESCE(cycle_since, now()) FROM mvrefresh.view_state WHERE id = p_view_id;
    UPDATE mvrefresh.view_state
       SET cycle_since = NULL,
           done_gen = started_gen,
           consecutive_failures = consecutive_failures + 1,
           last_outcome = 'failed',
           last_error = p_message,
           last_sqlstate = p_sqlstate,
           last_error_at = now(),
           last_duration_ms = p_duration_ms
     WHERE id = p_view_id
    RETURNING consecutive_failures INTO failures;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    delay_ms := LEAST(p_backoff_cap_ms::double precision,
                      p_backoff_base_ms * power(2, LEAST(failures - 1, 30)))
                * (0.75 + random() / 4);
    UPDATE mvrefresh.view_state
       SET next_attempt_at = now() + delay_ms * interval '1 millisecond'
     WHERE id = p_view_id;
    RETURN delay_ms;
END
$$;

-- One refresh cycle of one view, the protocol of the header. Called by the daemon and by refresh_dirty().
-- Outcomes: refreshed, populated (first, plain refresh of a view never populated), refreshed_blocking
-- (plain refresh allowed by the view's settings), clean (nothing to do), busy (another session holds the
-- view's lock), waiting (nothing new: only writers an earlier cycle gave up on are pending, and they still
-- run), unwatched, failed. retry_in_ms, when set, says when to call again.
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
    OUT dependants integer[])
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
    deadline := clock_timestamp() + p_wait_timeout_ms * interval '1 millisecond';
    WHILE xids IS NOT NULL LOOP
        SELECT array_agg(x) INTO xids FROM unnest(xids) x WHERE pg_xact_status(x) = 'in progress';
        EXIT WHEN xids IS NULL OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(nap);
        nap := LEAST(nap * 2, 0.05);
    END LOOP;
    SELECT array_agg(x) INTO xids
      FROM unnest(COALESCE(xids, '{}') || COALESCE(old_xids, '{}')) x WHERE pg_xact_status(x) = 'in progress';
    COMMIT;

    -- tx2: refresh, in a snapshot taken after the wait
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
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
    COMMIT;
END
$$;

-- For those who cannot run the daemon (pg_cron: CALL mvrefresh.refresh_dirty()): every due view, upstream
-- first, each in its own cycle; dependants dirtied by a refresh are picked up by the next pass.
CREATE PROCEDURE mvrefresh.refresh_dirty(
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
BEGIN
    WHILE progressed AND pass < p_max_passes LOOP
        pass := pass + 1;
        progressed := false;
        FOR due IN SELECT * FROM mvrefresh.due_views() LOOP
            CALL mvrefresh.refresh_view(due.view_id, due.reason = 'interval', p_wait_timeout_ms,
                                        p_lock_timeout_ms, 1000, 300000, o_outcome, o_duration,
                                        o_sqlstate, o_message, o_retry, o_dependants);
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

-- What `mvrefresh status` and the daemon's /views show.
CREATE VIEW mvrefresh.status AS
SELECT s.id,
       format('%I.%I', s.view_schema, s.view_name) AS view,
       s.view_schema,
       s.view_name,
       (m.oldest IS NOT NULL OR s.started_gen > s.done_gen) AS dirty,
       s.started_gen > s.done_gen AS cycle_unfinished,
       LEAST(m.oldest, s.cycle_since) AS dirty_since,
       CASE WHEN m.oldest IS NOT NULL OR s.started_gen > s.done_gen
            THEN extract(epoch FROM now() - COALESCE(LEAST(m.oldest, s.cycle_since), now()))
            ELSE 0 END::double precision AS staleness_seconds,
       s.last_refreshed_at,
       s.last_duration_ms,
       s.last_outcome,
       s.last_error,
       s.last_sqlstate,
       s.last_error_at,
       s.consecutive_failures,
       s.next_attempt_at,
       s.debounce_ms,
       s.max_wait_ms,
       s.refresh_interval_ms,
       s.allow_blocking_refresh,
       s.depth,
       s.sources,
       s.warnings,
       ARRAY(SELECT format('%I.%I', u.view_schema, u.view_name)
               FROM mvrefresh.view_deps d JOIN mvrefresh.view_state u ON u.id = d.depends_on
              WHERE d.view_id = s.id ORDER BY 1) AS depends_on
  FROM mvrefresh.view_state s
  LEFT JOIN LATERAL (SELECT min(marked_at) AS oldest FROM mvrefresh.marks WHERE view_id = s.id) m ON true;

-- Dueness from the logs (docs/design/incremental.md 10.1): an incremental view is behind while a log of a
-- source it reads holds a committed row whose transaction its applied snapshot (S_a) does not show. Such a
-- view needs no mark: a table that only incremental views read has no mvrefresh_mark (logged_only()), and
-- its capture functions write the log row alone. The daemon polls log_due() (src/daemon/refresh/
-- log-poller.ts); due_views() (the sweep, refresh_dirty()) and status read log_behind(), the cycle's
-- tx1 (refresh_view.sql) log_pending(). This file sorts before the routines whose SQL bodies call these.
--
-- What must hold (with L, C and pruning of apply_view.sql):
--  Liveness: a committed write w left a log row (L). Until an apply whose snapshot shows w commits, S_a
--     does not show w and the row is not pruned (pruning needs it visible in every S_a), so every look
--     that starts after w committed finds the view behind; the cycle it starts takes its apply's snapshot
--     after that look, so the apply shows w and C consumes it. Nothing is cleared, so no writer skips
--     anything and W, D, S and R of mark_table.sql have nothing to guard.
--  A look runs in its own statement's snapshot: a row it sees is committed (an uncommitted writer's row is
--     invisible, and its commit is seen by the next look).
-- The clock: mvr_at, the writer's transaction start (now(), as a mark's marked_at), of the unapplied row
-- with the least transaction id. An upper bound of the age of every unapplied write: a transaction gets
-- its id at its first write, after its start, and commits after that, so a write whose id is the same or
-- greater committed after that start. (The least mvr_at of all unapplied rows would need them all read:
-- after a bulk load, the whole load, at every look at a view behind it, status and the sweep included.)

-- The clock of an active incremental view (above): with p_first, that of the first source log found
-- with an unapplied row, else the least of its sources' logs'; NULL when it is not behind by its logs.
-- A transaction id below a snapshot's xmin is visible in it, so only the log rows at or above
-- xmin(S_a) can be unapplied: each look is a range scan of the log's index on mvr_xid (migration 20),
-- bounded by what is new to the view (and by the transactions running when S_a was taken), not by
-- what slower views reading the table have left in the log. enable_seqscan is off because the planner's
-- statistics of a log are those of before its last bulk load until autovacuum analyzes it, and would
-- then read the load whole; a range that is most of the log still gets a bitmap scan.
CREATE OR REPLACE FUNCTION mvrefresh.log_scan(p_view_id integer, p_first boolean) RETURNS timestamptz
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    SET enable_seqscan = off
AS $$
DECLARE
    inc record;
    src oid;
    oldest timestamptz;
    here timestamptz;
BEGIN
    SELECT i.sources, i.applied_snapshot INTO inc
      FROM mvrefresh.incremental i WHERE i.view_id = p_view_id AND i.state = 'active';
    IF NOT FOUND OR inc.applied_snapshot IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH src IN ARRAY inc.sources LOOP
        CONTINUE WHEN to_regclass(format('mvrefresh.%I', 'log_' || src)) IS NULL;
        EXECUTE format('SELECT l.mvr_at FROM mvrefresh.%I l WHERE l.mvr_xid >= pg_snapshot_xmin($1) '
                       'AND NOT pg_visible_in_snapshot(l.mvr_xid, $1) ORDER BY l.mvr_xid LIMIT 1', 'log_' || src)
           INTO here USING inc.applied_snapshot;
        IF p_first AND here IS NOT NULL THEN
            RETURN here;
        END IF;
        oldest := LEAST(oldest, here);
    END LOOP;
    RETURN oldest;
END
$$;

-- The clock of an active incremental view (above): the start of its oldest unapplied committed write, or
-- one before it; NULL when it is not behind by its logs.
CREATE OR REPLACE FUNCTION mvrefresh.log_behind(p_view_id integer) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT mvrefresh.log_scan(p_view_id, false);
END;

-- Whether log_behind() is not NULL, without reading the logs whole: the cycle's tx1 (refresh_view.sql),
-- and due_views() deciding which views are due.
CREATE OR REPLACE FUNCTION mvrefresh.log_pending(p_view_id integer) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT mvrefresh.log_scan(p_view_id, true) IS NOT NULL;
END;

-- log_behind() of each of the given views, per source log: one query of each log for all of them (the
-- daemon's poll looks at every idle incremental view every logPollIntervalMs; a query per view and source,
-- each planned afresh by EXECUTE, grew with the views reading a table). NULL for a view the log shows
-- nothing unapplied of. Same range and planner setting as log_scan().
CREATE OR REPLACE FUNCTION mvrefresh.log_since(p_view_ids integer[])
    RETURNS TABLE (view_id integer, since timestamptz)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    SET enable_seqscan = off
AS $$
DECLARE
    src record;
BEGIN
    FOR src IN
        SELECT s.oid, array_agg(i.view_id) AS ids, array_agg(i.applied_snapshot) AS snaps
          FROM mvrefresh.incremental i, unnest(i.sources) s(oid)
         WHERE i.view_id = ANY (p_view_ids) AND i.state = 'active' AND i.applied_snapshot IS NOT NULL
           AND to_regclass(format('mvrefresh.%I', 'log_' || s.oid)) IS NOT NULL
         GROUP BY s.oid
    LOOP
        RETURN QUERY EXECUTE format(
            'SELECT v.id, (SELECT l.mvr_at FROM mvrefresh.%I l WHERE l.mvr_xid >= pg_snapshot_xmin(v.snap) '
            'AND NOT pg_visible_in_snapshot(l.mvr_xid, v.snap) ORDER BY l.mvr_xid LIMIT 1) '
            'FROM unnest($1, $2) v(id, snap)', 'log_' || src.oid)
            USING src.ids, src.snaps;
    END LOOP;
END
$$;

-- log_behind() of each of the given views that may run a cycle now (not paused, not backing off): the
-- daemon's poll, which passes the views it holds no job for.
CREATE OR REPLACE FUNCTION mvrefresh.log_due(p_view_ids integer[])
    RETURNS TABLE (view_id integer, dirty_since timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT l.view_id, min(l.since)
      FROM mvrefresh.log_since(ARRAY(
               SELECT s.id FROM mvrefresh.view_state s
                WHERE s.id = ANY (p_view_ids) AND NOT s.paused
                  AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now()))) l
     GROUP BY l.view_id
    HAVING min(l.since) IS NOT NULL
     ORDER BY l.view_id;
END;

-- Whether the table's writes reach every watched view reading it through its log: its four capture
-- triggers are ours, and every watched view that reads it is an active incremental view with the table
-- among its sources. Such a table needs no mvrefresh_mark (sync_table_triggers.sql); a table also read by
-- a materialized view (or by an incremental view still being built) keeps it, beside the capture triggers.
CREATE OR REPLACE FUNCTION mvrefresh.logged_only(p_relid oid) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT (SELECT count(*)
              FROM (VALUES ({{CAPTURE_INS}}, format('cap_%s_ins', p_relid)),
                           ({{CAPTURE_UPD}}, format('cap_%s_upd', p_relid)),
                           ({{CAPTURE_DEL}}, format('cap_%s_del', p_relid)),
                           ({{CAPTURE_TRUNC}}, 'capture_truncate')) e(tgname, proname)
              JOIN pg_trigger tg ON tg.tgrelid = p_relid AND tg.tgname = e.tgname
              JOIN pg_proc p ON p.oid = tg.tgfoid AND p.proname = e.proname
                            AND p.pronamespace = 'mvrefresh'::regnamespace AND p.pronargs = 0) = 4
       AND EXISTS (SELECT FROM mvrefresh.view_state v WHERE p_relid = ANY (v.source_relids))
       AND NOT EXISTS (SELECT FROM mvrefresh.view_state v
                        WHERE p_relid = ANY (v.source_relids)
                          AND NOT EXISTS (SELECT FROM mvrefresh.incremental i
                                           WHERE i.view_id = v.id AND i.state = 'active'
                                             AND p_relid = ANY (i.sources)));
END;

-- Views that need a refresh cycle now: marked dirty (or a table they read is), behind their logs (an
-- incremental view, routines/capture_logs.sql), an unfinished cycle, or a periodic refresh due; not while
-- backing off after a failure, nor while paused. Upstream first. A view may appear twice (dirty and
-- interval). dirty_since is the oldest write the view does not reflect (NULL for a periodic refresh of a
-- clean view): the staleness clock, which a restarted daemon reads here instead of starting it again.
CREATE OR REPLACE FUNCTION mvrefresh.due_views()
    RETURNS TABLE (view_id integer, depth integer, reason text, dirty_since timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.id, s.depth, due.reason,
           CASE WHEN due.reason = 'dirty'
                THEN LEAST((SELECT min(m.marked_at) FROM mvrefresh.marks m WHERE m.view_id = s.id),
                           (SELECT min(t.marked_at) FROM mvrefresh.table_marks t
                             WHERE t.relid = ANY (s.source_relids)),
                           s.cycle_since, s.cycle_started_at, mvrefresh.log_behind(s.id))
           END
      FROM (SELECT v.id AS view_id, 'dirty' AS reason FROM mvrefresh.view_state v
             WHERE v.started_gen > v.done_gen
            UNION
            SELECT DISTINCT m.view_id, 'dirty' FROM mvrefresh.marks m
            UNION
            SELECT DISTINCT v.id, 'dirty' FROM mvrefresh.table_marks t
              JOIN mvrefresh.view_state v ON t.relid = ANY (v.source_relids)
            UNION
            SELECT i.view_id, 'dirty' FROM mvrefresh.incremental i
             WHERE i.state = 'active' AND mvrefresh.log_pending(i.view_id)
            UNION ALL
            SELECT v.id, 'interval' FROM mvrefresh.view_state v
             WHERE v.refresh_interval_ms IS NOT NULL
               AND COALESCE(v.last_refreshed_at, '-infinity')
                   + v.refresh_interval_ms * interval '1 millisecond' <= now()) AS due
      JOIN mvrefresh.view_state s ON s.id = due.view_id
     WHERE (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
       AND NOT s.paused
     ORDER BY s.depth, s.id;
END;

-- Views that need a refresh cycle now: marked dirty (or a table they read is), an unfinished cycle, or a periodic refresh due; not
-- while backing off after a failure. Upstream first. A view may appear twice (dirty and interval).
CREATE OR REPLACE FUNCTION mvrefresh.due_views()
    RETURNS TABLE (view_id integer, depth integer, reason text)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT s.id, s.depth, due.reason
      FROM (SELECT v.id AS view_id, 'dirty' AS reason FROM mvrefresh.view_state v
             WHERE v.started_gen > v.done_gen
            UNION ALL
            SELECT DISTINCT m.view_id, 'dirty' FROM mvrefresh.marks m
            UNION ALL
            SELECT DISTINCT v.id, 'dirty' FROM mvrefresh.table_marks t
              JOIN mvrefresh.view_state v ON t.relid = ANY (v.source_relids)
            UNION ALL
            SELECT v.id, 'interval' FROM mvrefresh.view_state v
             WHERE v.refresh_interval_ms IS NOT NULL
               AND COALESCE(v.last_refreshed_at, '-infinity')
                   + v.refresh_interval_ms * interval '1 millisecond' <= now()) AS due
      JOIN mvrefresh.view_state s ON s.id = due.view_id
     WHERE s.next_attempt_at IS NULL OR s.next_attempt_at <= now()
     ORDER BY s.depth, s.id;
END;

-- Counts a refresh that ended later than the view's staleness target allowed (the budget, a failure or
-- the queue held it back), with the staleness it reached: `mvrefresh status` shows both.
CREATE OR REPLACE FUNCTION mvrefresh.record_target_miss(p_view_id integer, p_staleness_ms double precision)
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE mvrefresh.view_state
       SET target_misses = target_misses + 1,
           last_miss_staleness_ms = p_staleness_ms
     WHERE id = p_view_id;
END;

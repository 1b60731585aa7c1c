-- Deletes the committed table marks of p_relids, which become marks of every view reading those tables
-- (invariant V of routines/refresh_view.sql: a view refreshed later keeps its claim), and, when it deleted
-- any, draws a clear before its transaction commits (begin_clear(); invariant D): the DELETE's own result
-- decides the draw, never an earlier look in another snapshot, which would miss a mark committed in
-- between. Marks are taken in one order, so that clears of views sharing tables do not deadlock; a
-- writer's mark that is not committed yet is invisible to the DELETE and survives. Every transaction that
-- deletes table marks does it here (refresh_view()'s tx1, sync_table_triggers()). Returns whether it
-- deleted any: the caller then runs settle_clears() after its transaction ended.
CREATE OR REPLACE FUNCTION mvrefresh.clear_table_marks(p_relids oid[]) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cleared boolean;
BEGIN
    WITH taken AS (
        DELETE FROM mvrefresh.table_marks m
         WHERE m.ctid = ANY (ARRAY(SELECT t.ctid FROM mvrefresh.table_marks t
                                    WHERE t.relid = ANY (p_relids)
                                    ORDER BY t.relid, t.ctid FOR UPDATE))
        RETURNING m.relid, m.marked_at),
    -- evidence for check_drift() that the table's trigger fires: writes counted without it are reported
    noted AS (
        UPDATE mvrefresh.table_writes w SET last_mark_at = now()
         WHERE w.relid IN (SELECT taken.relid FROM taken)),
    given AS (
        INSERT INTO mvrefresh.marks (view_id, marked_at)
        SELECT v.id, min(taken.marked_at)
          FROM taken JOIN mvrefresh.view_state v ON taken.relid = ANY (v.source_relids)
         GROUP BY v.id)
    SELECT count(*) > 0 INTO cleared FROM taken;
    IF cleared THEN
        PERFORM mvrefresh.begin_clear();
    END IF;
    RETURN cleared;
END
$$;

-- The TRUNCATE trigger of a source of incremental views (src/incremental/capture.ts): a TRUNCATE logs one
-- row that makes every incremental view reading the table recompute in full at its next apply, and marks
-- the table (routines/mark_table.sql: the table has no mvrefresh_mark while its capture triggers mark it),
-- which schedules that apply. SECURITY DEFINER: writers have no privilege on the log.
CREATE OR REPLACE FUNCTION mvrefresh.capture_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('INSERT INTO mvrefresh.%I (mvr_trunc) VALUES (true)', 'log_' || TG_RELID);
    -- the mark step: step 1, then mark_relid() when it misses
    IF {{MARK_MEMO_HIT}} THEN
        RETURN NULL;
    END IF;
    PERFORM mvrefresh.mark_relid(TG_RELID);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.capture_truncate() FROM PUBLIC;

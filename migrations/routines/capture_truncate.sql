-- The TRUNCATE trigger of a source of incremental views (src/incremental/capture.ts): a TRUNCATE logs one
-- row that makes every incremental view reading the table recompute in full at its next apply; the row
-- makes them due (routines/capture_logs.sql), as any log row does. A table that a materialized view reads
-- too has mvrefresh_mark beside it, which marks. SECURITY DEFINER: writers have no privilege on the log.
CREATE OR REPLACE FUNCTION mvrefresh.capture_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('INSERT INTO mvrefresh.%I (mvr_trunc) VALUES (true)', 'log_' || TG_RELID);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.capture_truncate() FROM PUBLIC;

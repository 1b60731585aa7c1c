-- Records that a drift check failed (routines/check_drift.sql rolled back, so it cannot say so itself):
-- `doctor` reports a check whose last failure is newer than its last success. Called by the daemon in a
-- transaction of its own; a failure to record is logged there, and the metrics still count the failure.
CREATE OR REPLACE FUNCTION mvrefresh.record_drift_failure(p_error text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE mvrefresh.drift_check_state SET last_failed_at = now(), last_error = p_error WHERE id
$$;

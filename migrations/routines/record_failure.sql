-- Records a failed cycle: the view stays dirty, and the next attempt backs off exponentially (capped,
-- with equal jitter so that replicas spread out: the daemon's formula, src/db/protocol.ts BACKOFF_JITTER).
-- Returns the delay in milliseconds.
CREATE OR REPLACE FUNCTION mvrefresh.record_failure(
    p_view_id integer, p_sqlstate text, p_message text, p_duration_ms double precision,
    p_backoff_base_ms integer, p_backoff_cap_ms integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
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
                * (1 - {{BACKOFF_JITTER}} * random());
    UPDATE mvrefresh.view_state
       SET next_attempt_at = now() + delay_ms * interval '1 millisecond'
     WHERE id = p_view_id;
    RETURN delay_ms;
END
$$;

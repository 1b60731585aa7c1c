-- For those who cannot run the daemon (pg_cron: CALL mvrefresh.refresh_dirty()): every due view, upstream
-- first, each in its own cycle; dependants dirtied by a refresh are picked up by the next pass.
CREATE OR REPLACE PROCEDURE mvrefresh.refresh_dirty(
    p_wait_timeout_ms integer DEFAULT 2000,
    p_lock_timeout_ms integer DEFAULT 5000,
    p_max_passes integer DEFAULT 8)
    LANGUAGE plpgsql
AS $$
DECLARE
    due pg_catalog.record;
    pass pg_catalog.int4 := 0;
    progressed pg_catalog.bool := true;
    o_outcome pg_catalog.text;
    o_duration pg_catalog.float8;
    o_sqlstate pg_catalog.text;
    o_message pg_catalog.text;
    o_retry pg_catalog.int4;
    o_dependants pg_catalog.int4[];
    o_wait pg_catalog.float8;
    o_cycle pg_catalog.float8;
BEGIN
    -- names resolve in pg_catalog first; set again after each cycle, whose COMMITs end the transaction
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    WHILE progressed AND pass < p_max_passes LOOP
        pass := pass + 1;
        progressed := false;
        FOR due IN SELECT * FROM mvrefresh.due_views() LOOP
            CALL mvrefresh.refresh_view(due.view_id, due.reason = 'interval', p_wait_timeout_ms,
                                        p_lock_timeout_ms, {{BACKOFF_BASE_MS}}, {{BACKOFF_MAX_MS}}, o_outcome, o_duration,
                                        o_sqlstate, o_message, o_retry, o_dependants,
                                        o_wait, o_cycle);
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            IF o_outcome = 'failed' THEN
                RAISE WARNING 'mvrefresh: refresh of view % failed: % (SQLSTATE %)',
                    due.view_id, o_message, o_sqlstate;
            ELSIF o_outcome IN ({{SUCCESS_OUTCOMES}}) THEN
                progressed := progressed OR o_dependants IS NOT NULL;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

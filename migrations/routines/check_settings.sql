-- The settings of a watched view that watch() and set_settings() take, checked alike: a refresh interval
-- and a staleness target above 0 ms, a refresh budget above 0 and at most 1; NULL is the daemon's default.
CREATE OR REPLACE FUNCTION mvrefresh.check_settings(
    p_refresh_interval_ms integer,
    p_max_staleness_ms integer,
    p_refresh_budget double precision)
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_refresh_interval_ms <= 0 OR p_max_staleness_ms <= 0 THEN
        RAISE EXCEPTION 'the refresh interval and the staleness target must be > 0 (milliseconds)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_refresh_budget <= 0 OR p_refresh_budget > 1 THEN
        RAISE EXCEPTION 'the refresh budget is a share of time: more than 0, at most 1 (got %)', p_refresh_budget
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The settings of a watched incremental view that watch() sets for a materialized view: refresh interval,
-- staleness target, refresh budget. `watch` of a view that is already incremental calls it (watch() reads
-- a materialized view's sources from its dependencies, which the table under an incremental view's name
-- does not have); the view stays incremental (unwatch turns it back). As with watch(), a setting left NULL
-- is the daemon's default again. Returns a report: id, view, refresh_interval_ms, max_staleness_ms,
-- refresh_budget. p_search_path: as in watch().
CREATE OR REPLACE FUNCTION mvrefresh.set_settings(
    p_name text,
    p_refresh_interval_ms integer,
    p_max_staleness_ms integer,
    p_refresh_budget double precision,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    vid integer;
BEGIN
    PERFORM mvrefresh.check_settings(p_refresh_interval_ms, p_max_staleness_ms, p_refresh_budget);
    rel := mvrefresh.resolve_watched(p_name, p_search_path);
    UPDATE mvrefresh.view_state v
       SET refresh_interval_ms = p_refresh_interval_ms, max_staleness_ms = p_max_staleness_ms,
           refresh_budget = p_refresh_budget
     WHERE v.id = mvrefresh.watched_id(rel)
       AND EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = v.id)
    RETURNING v.id INTO vid;
    IF vid IS NULL THEN
        RAISE EXCEPTION '% is not an incremental view: watch sets a materialized view''s settings', rel
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN jsonb_build_object('id', vid, 'view', rel::text, 'refresh_interval_ms', p_refresh_interval_ms,
                              'max_staleness_ms', p_max_staleness_ms, 'refresh_budget', p_refresh_budget);
END
$$;

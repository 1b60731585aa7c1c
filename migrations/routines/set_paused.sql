-- Pauses or resumes a watched view (bulk loads), materialized or incremental. A paused view keeps its
-- marks (an incremental view its logs), so writers neither add marks nor notify while it is paused, and no
-- cycle refreshes it (refresh_view answers 'paused', due_views() and log_due() leave it out). Resuming a
-- dirty view notifies the daemons, which refresh it once.
-- Returns a report: id, view, paused, changed, dirty. p_search_path: as in watch().
CREATE OR REPLACE FUNCTION mvrefresh.set_paused(
    p_name text,
    p_paused boolean,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    s mvrefresh.view_state;
    was boolean;
    is_dirty boolean;
BEGIN
    IF p_paused IS NULL THEN
        RAISE EXCEPTION 'p_paused must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rel := mvrefresh.resolve_watched(p_name, p_search_path);
    SELECT v.* INTO s FROM mvrefresh.view_state v WHERE v.id = mvrefresh.watched_id(rel) FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not watched', rel USING ERRCODE = 'undefined_object';
    END IF;
    was := s.paused;
    UPDATE mvrefresh.view_state SET paused = p_paused WHERE id = s.id;
    is_dirty := s.started_gen > s.done_gen OR EXISTS (SELECT FROM mvrefresh.marks WHERE view_id = s.id)
                OR EXISTS (SELECT FROM mvrefresh.table_marks WHERE relid = ANY (s.source_relids))
                OR mvrefresh.log_pending(s.id);
    IF was AND NOT p_paused AND is_dirty THEN
        PERFORM pg_notify({{CHANNEL}}, s.id::text);
    END IF;
    RETURN jsonb_build_object('id', s.id, 'view', rel::text, 'paused', p_paused, 'changed', was <> p_paused,
                              'dirty', is_dirty);
END
$$;

-- Stops watching a view: its registration goes, and the triggers of tables no other watched view reads.
-- Refuses while another watched view reads it. Returns the tables whose trigger was removed.
-- p_search_path: where an unqualified p_name is looked up (the caller's, by default; find_watched()).
CREATE OR REPLACE FUNCTION mvrefresh.unwatch(
    p_name text,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    vid integer;
    tables text[];
    readers text;
    label text;
BEGIN
    PERFORM pg_advisory_xact_lock({{LOCK_NAMESPACE}}, {{WATCH_LOCK_KEY}});
    vid := mvrefresh.find_watched(p_name, p_search_path);
    IF vid IS NULL THEN
        RAISE EXCEPTION 'materialized view "%" is not watched', p_name USING ERRCODE = 'undefined_object';
    END IF;
    SELECT string_agg(format('%I.%I', v.view_schema, v.view_name), ', ') INTO readers
      FROM mvrefresh.view_deps d JOIN mvrefresh.view_state v ON v.id = d.view_id WHERE d.depends_on = vid;
    SELECT format('%I.%I', view_schema, view_name) INTO label FROM mvrefresh.view_state WHERE id = vid;
    -- its table must become a materialized view again, and the capture of its sources be regenerated:
    -- work for the CLI (src/incremental/revert.ts), which calls this function last
    IF EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = vid) THEN
        RAISE EXCEPTION '% is an incremental view', label
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Run "mvrefresh unwatch %s": it turns it back into a materialized view first.', label);
    END IF;
    IF readers IS NOT NULL THEN
        RAISE EXCEPTION '% is read by watched view(s) %', label, readers
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Unwatch those first.';
    END IF;
    PERFORM set_config('lock_timeout', {{DDL_LOCK_TIMEOUT}}, true);
    DELETE FROM mvrefresh.marks WHERE view_id = vid;
    DELETE FROM mvrefresh.view_state WHERE id = vid;
    tables := mvrefresh.sync_table_triggers();
    RETURN jsonb_build_object('id', vid, 'view', label, 'tables', to_jsonb(tables));
END
$$;

-- Finds a watched view by the name the user gives, even when the view itself is gone. An unqualified
-- name is looked up in the caller's search_path (p_search_path, as in lookup_name()).
CREATE OR REPLACE FUNCTION mvrefresh.find_watched(
    p_name text,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    looked record;
    found_id integer;
    parts text[];
BEGIN
    looked := mvrefresh.lookup_name(p_name, p_search_path);
    found_id := mvrefresh.watched_id(looked.rel);
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    -- gone: by the name view_state keeps
    parts := parse_ident(p_name);
    RETURN CASE cardinality(parts)
               WHEN 2 THEN (SELECT v.id FROM mvrefresh.view_state v
                             WHERE v.view_schema = parts[1] AND v.view_name = parts[2])
               WHEN 1 THEN (SELECT v.id FROM mvrefresh.view_state v
                             WHERE v.view_name = parts[1] AND v.view_schema = ANY (looked.schemas)
                             ORDER BY array_position(looked.schemas, v.view_schema::name) LIMIT 1)
           END;
END
$$;

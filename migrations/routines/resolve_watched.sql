-- Resolves a user-supplied name to a view that pause and resume act on: a materialized view, or the table
-- that stands under an incremental view's name (src/incremental/convert.ts). Any other name raises what
-- resolve_view() raises for it (a malformed or missing name, an object of another kind).
CREATE OR REPLACE FUNCTION mvrefresh.resolve_watched(
    p_name text,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS regclass
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
BEGIN
    BEGIN
        rel := (mvrefresh.lookup_name(p_name, p_search_path)).rel;
    EXCEPTION WHEN invalid_name OR invalid_parameter_value THEN
        rel := NULL;  -- resolve_view() raises it, with its hint
    END;
    IF rel IS NOT NULL
       AND EXISTS (SELECT FROM mvrefresh.incremental i WHERE i.view_id = mvrefresh.watched_id(rel))
       AND (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) = 'r' THEN
        RETURN rel;
    END IF;
    RETURN mvrefresh.resolve_view(p_name, p_search_path);
END
$$;

-- Finds a watched view by the name the user gives, even when the view itself is gone. An unqualified
-- name is looked up in the caller's search_path (p_search_path, as in resolve_view()).
CREATE OR REPLACE FUNCTION mvrefresh.find_watched(
    p_name text,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    parts text[];
    found_id integer;
    schemas name[];
BEGIN
    PERFORM pg_catalog.set_config('search_path', COALESCE(p_search_path, 'pg_catalog, pg_temp'), true);
    rel := pg_catalog.to_regclass(p_name);
    schemas := pg_catalog.current_schemas(false);
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF rel IS NOT NULL THEN
        SELECT v.id INTO found_id FROM mvrefresh.view_state v
          JOIN pg_namespace n ON n.nspname = v.view_schema
          JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
         WHERE c.oid = rel;
        IF found_id IS NOT NULL THEN
            RETURN found_id;
        END IF;
    END IF;
    parts := parse_ident(p_name);
    IF cardinality(parts) = 2 THEN
        SELECT id INTO found_id FROM mvrefresh.view_state WHERE view_schema = parts[1] AND view_name = parts[2];
    ELSIF cardinality(parts) = 1 THEN
        SELECT id INTO found_id FROM mvrefresh.view_state
         WHERE view_name = parts[1] AND view_schema = ANY (schemas)
         ORDER BY array_position(schemas, view_schema::name) LIMIT 1;
    END IF;
    RETURN found_id;
END
$$;

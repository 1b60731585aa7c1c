-- Finds a watched view by the name the user gives, even when the view itself is gone.
CREATE OR REPLACE FUNCTION mvrefresh.find_watched(p_name text) RETURNS integer
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    rel regclass;
    parts text[];
    found_id integer;
BEGIN
    rel := to_regclass(p_name);
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
         WHERE view_name = parts[1] AND view_schema = ANY (current_schemas(false))
         ORDER BY array_position(current_schemas(false), view_schema::text) LIMIT 1;
    END IF;
    RETURN found_id;
END
$$;

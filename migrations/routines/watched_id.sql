-- The id of the watched view that a relation is (view_state keeps its schema and name), or NULL.
CREATE OR REPLACE FUNCTION mvrefresh.watched_id(p_rel regclass) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT v.id FROM mvrefresh.view_state v
      JOIN pg_namespace n ON n.nspname = v.view_schema
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
     WHERE c.oid = p_rel
$$;

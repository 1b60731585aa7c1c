-- Looks a user-supplied relation name up in the caller's search_path (p_search_path: a parameter default
-- is evaluated by the caller, before the SET clause of the routine that takes it applies): the relation,
-- or NULL, and the schemas of that path. The path holds only for the lookup: no function or operator is
-- resolved under it. Raises invalid_name for a malformed name (before PostgreSQL 16, to_regclass() does;
-- from 16 on it answers NULL, and parse_ident() raises).
CREATE OR REPLACE FUNCTION mvrefresh.lookup_name(p_name text, p_search_path text, OUT rel regclass,
                                                 OUT schemas name[])
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.parse_ident(p_name);
    PERFORM pg_catalog.set_config('search_path', COALESCE(p_search_path, 'pg_catalog, pg_temp'), true);
    rel := pg_catalog.to_regclass(p_name);
    schemas := pg_catalog.current_schemas(false);
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
END
$$;

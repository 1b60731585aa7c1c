-- Resolves a user-supplied name (quoted, qualified or not) to a materialized view, or raises an error
-- that names the object. An unqualified name is looked up in the caller's search_path (p_search_path: a
-- parameter default is evaluated by the caller, before this function's SET clause applies), which holds
-- only for the name's lookup: no function or operator is resolved under it.
CREATE OR REPLACE FUNCTION mvrefresh.resolve_view(
    p_name text,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS regclass
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    kind "char";
BEGIN
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        RAISE EXCEPTION 'a materialized view name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- parse_ident() first: from PostgreSQL 16 on, to_regclass() answers NULL for a malformed name
    -- instead of raising, and a user's "with space" would read as a missing view
    BEGIN
        PERFORM pg_catalog.parse_ident(p_name);
        PERFORM pg_catalog.set_config('search_path', COALESCE(p_search_path, 'pg_catalog, pg_temp'), true);
        rel := pg_catalog.to_regclass(p_name);
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    EXCEPTION WHEN invalid_name OR invalid_parameter_value THEN
        RAISE EXCEPTION 'invalid materialized view name %: %', quote_literal(p_name), SQLERRM
            USING ERRCODE = 'invalid_name',
                  HINT = 'A name with spaces, capitals or other special characters must be double-quoted '
                         'inside the argument, e.g. mvrefresh watch ''"with space"'' or ''myschema."My View"''.';
    END;
    IF rel IS NULL THEN
        RAISE EXCEPTION 'materialized view "%" does not exist', p_name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Names are resolved with the search_path; quote mixed-case names: ''"MyView"''.';
    END IF;
    SELECT relkind INTO kind FROM pg_class WHERE oid = rel;
    IF kind <> 'm' THEN
        RAISE EXCEPTION '% is not a materialized view (it is a %)', rel,
            CASE kind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'p' THEN 'partitioned table'
                      WHEN 'f' THEN 'foreign table' ELSE 'relation of kind ' || kind::text END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN rel;
END
$$;

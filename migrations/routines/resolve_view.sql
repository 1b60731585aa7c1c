-- Resolves a user-supplied name (quoted, qualified or not) to a materialized view, or raises an error
-- that names the object. An unqualified name is looked up in the caller's search_path (p_search_path, as
-- in lookup_name()).
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
    -- a malformed name raises (lookup_name()): a user's "with space" must not read as a missing view
    BEGIN
        rel := (mvrefresh.lookup_name(p_name, p_search_path)).rel;
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

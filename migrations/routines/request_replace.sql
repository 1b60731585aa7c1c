-- Records a request to give materialized view p_view the definition p_definition (a query), for a daemon
-- (or `mvrefresh replace`) to carry out: builds the new version beside the live one, then swaps them in a
-- short transaction (src/replace/executor.ts). Returns the request's id, for wait_replace(). The daemons
-- hear of it when the caller's transaction commits, so a migration tool's transaction stays short.
-- p_search_path: where an unqualified p_view is looked up (the caller's, by default; resolve_view()).
CREATE OR REPLACE FUNCTION mvrefresh.request_replace(
    p_view text,
    p_definition text,
    p_lock_timeout_ms integer DEFAULT NULL,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    schema_name name;
    rel_name name;
    request_id bigint;
    pending bigint;
BEGIN
    IF p_definition IS NULL OR btrim(p_definition) = '' THEN
        RAISE EXCEPTION 'a new definition (a query) is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rel := mvrefresh.resolve_view(p_view, p_search_path);
    SELECT n.nspname, c.relname INTO schema_name, rel_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    -- the new query will run with the owner's privileges (REFRESH runs as the owner): only who may act
    -- as the owner may choose it
    IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = rel), 'USAGE') THEN
        RAISE EXCEPTION 'role % may not replace %: only members of its owner role (%) may', current_user, rel,
            (SELECT relowner::regrole FROM pg_class WHERE oid = rel)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT r.id INTO pending FROM mvrefresh.replace_requests r
     WHERE r.view_schema = schema_name AND r.view_name = rel_name AND r.status IN ('pending', 'running');
    IF pending IS NOT NULL THEN
        RAISE EXCEPTION 'a replacement of % is already requested (request %)', rel, pending
            USING ERRCODE = 'object_in_use',
                  HINT = format('Wait for it: CALL mvrefresh.wait_replace(%s, ''10 minutes'').', pending);
    END IF;
    INSERT INTO mvrefresh.replace_requests (view_schema, view_name, definition, lock_timeout_ms, search_path)
    VALUES (schema_name, rel_name, p_definition, p_lock_timeout_ms, COALESCE(p_search_path, 'public'))
    RETURNING id INTO request_id;
    PERFORM pg_notify({{REPLACE_CHANNEL}}, request_id::text);
    RETURN request_id;
END
$$;

-- Unwatches every view, dependants first.
CREATE OR REPLACE FUNCTION mvrefresh.unwatch_all() RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
    reports jsonb := '[]';
BEGIN
    FOR v IN SELECT format('%I.%I', view_schema, view_name) AS name FROM mvrefresh.view_state
              ORDER BY depth DESC, id LOOP
        reports := reports || mvrefresh.unwatch(v.name);
    END LOOP;
    RETURN reports;
END
$$;

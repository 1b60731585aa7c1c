-- Whether the current role may refresh the view: its owner (or a member of the owner role), or, from
-- PostgreSQL 17, a holder of MAINTAIN.
CREATE OR REPLACE FUNCTION mvrefresh.can_refresh(p_view regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = p_view), 'USAGE') THEN
        RETURN true;
    END IF;
    IF current_setting('server_version_num')::integer >= 170000 THEN
        RETURN has_table_privilege(p_view, 'MAINTAIN');
    END IF;
    RETURN false;
END
$$;

-- The search_path a REFRESH of a view owned by p_owner runs with: what the owner's own session would have
-- (ALTER ROLE ... IN DATABASE, ALTER ROLE, ALTER DATABASE settings, else the server's default), never the
-- daemon's pinned pg_catalog, pg_temp. Before PostgreSQL 17 a REFRESH runs the functions its query calls
-- with the session's search_path: a function body that names a table of public unqualified works when the
-- owner refreshes by hand, and must work when mvrefresh refreshes. From 17 on REFRESH pins a safe path
-- itself and this value is not used. refresh_view() sets it only around the REFRESH statement: the
-- statements of the cycle run with pg_catalog, pg_temp.
CREATE OR REPLACE FUNCTION mvrefresh.refresh_search_path(p_owner oid) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
RETURN COALESCE(
    (SELECT substr(c, 13)
       FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS u(c)
      WHERE c LIKE 'search\_path=%'
        AND s.setrole IN (p_owner, 0)
        AND s.setdatabase IN (0, (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
        AND NOT (s.setrole = 0 AND s.setdatabase = 0)
      ORDER BY (s.setrole = p_owner AND s.setdatabase <> 0) DESC, (s.setrole = p_owner) DESC
      LIMIT 1),
    (SELECT boot_val FROM pg_settings WHERE name = 'search_path'));

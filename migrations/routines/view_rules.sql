-- The rewrite rules of a view and of every plain view between it and the tables it reads (pg_rewrite +
-- pg_depend): what the view reads, as the catalog records it. source_fingerprint() hashes them to notice a
-- redefinition; view_warnings() searches them for functions and the clock. A string body (not BEGIN
-- ATOMIC): it reads only the catalogs, whatever order routines are applied in.
CREATE OR REPLACE FUNCTION mvrefresh.view_rules(p_view regclass)
    RETURNS TABLE (rule_oid oid, ev_class oid, action text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE walk(rel) AS (
        SELECT p_view::oid
        UNION
        SELECT d.refobjid
          FROM walk w
          JOIN pg_class wc ON wc.oid = w.rel
          JOIN pg_rewrite r ON r.ev_class = w.rel
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                          AND d.refclassid = 'pg_class'::regclass
         WHERE (w.rel = p_view::oid OR wc.relkind = 'v') AND d.refobjid <> w.rel
    )
    SELECT r.oid, r.ev_class, r.ev_action::text
      FROM walk w JOIN pg_class c ON c.oid = w.rel JOIN pg_rewrite r ON r.ev_class = w.rel
     WHERE w.rel = p_view::oid OR c.relkind = 'v'
$$;

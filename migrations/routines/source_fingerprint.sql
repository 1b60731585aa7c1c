-- What the view's sources were derived from, in one value: the relations it reads (tables, partitions,
-- inheritance children, upstream materialized views, as view_sources() lists them) and the rules of the
-- view and of every plain view between it and its tables. A plain view redefined with CREATE OR REPLACE
-- VIEW changes the materialized view's result without any write, so its rule counts even when it reads
-- the same tables. check_drift() compares it with what was stored at the last watch or check.
-- PL/pgSQL so that it does not depend on the order in which routines are applied.
CREATE OR REPLACE FUNCTION mvrefresh.source_fingerprint(p_view regclass, p_source_relids oid[])
    RETURNS text
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN md5(p_source_relids::text || '|' || COALESCE((
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
        SELECT string_agg(r.ev_class::text || ':' || md5(r.ev_action::text), ';' ORDER BY r.ev_class, r.oid)
          FROM walk w JOIN pg_class c ON c.oid = w.rel JOIN pg_rewrite r ON r.ev_class = w.rel
         WHERE w.rel = p_view::oid OR c.relkind = 'v'), ''));
END
$$;

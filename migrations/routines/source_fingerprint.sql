-- What the view's sources were derived from, in one value: the relations it reads (tables, partitions,
-- inheritance children and ancestors, tables read by row-level security policies, upstream materialized
-- views, as view_sources() lists them), the rules of the view and of every plain view between it and its
-- tables, and the row-level security of its tables (ENABLE / FORCE, each policy's roles and expressions).
-- A plain view redefined with CREATE OR REPLACE VIEW, or a policy altered, changes the materialized view's
-- result without any write, so it counts even when the view reads the same tables. The row-level security
-- part is appended only for tables that have it, so that the fingerprints of views without it stay as they
-- were. check_drift() compares it with what was stored at the last watch or check.
-- PL/pgSQL so that it does not depend on the order in which routines are applied.
CREATE OR REPLACE FUNCTION mvrefresh.source_fingerprint(p_view regclass, p_source_relids oid[])
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    security text := (
        SELECT string_agg(format('%s:%s:%s', c.oid, c.relforcerowsecurity,
                                 (SELECT string_agg(format('%s/%s/%s/%s/%s', p.polname, p.polcmd, p.polpermissive,
                                                           p.polroles, md5(concat(pg_get_expr(p.polqual, p.polrelid), '|',
                                                                                  pg_get_expr(p.polwithcheck, p.polrelid)))),
                                                    ',' ORDER BY p.polname)
                                    FROM pg_policy p WHERE p.polrelid = c.oid)), ';' ORDER BY c.oid)
          FROM pg_class c WHERE c.oid = ANY (p_source_relids) AND c.relrowsecurity);
BEGIN
    RETURN md5(p_source_relids::text || '|' || COALESCE((
        SELECT string_agg(r.ev_class::text || ':' || md5(r.action), ';' ORDER BY r.ev_class, r.rule_oid)
          FROM mvrefresh.view_rules(p_view) r), '')
        || COALESCE('|rls:' || security, ''));
END
$$;

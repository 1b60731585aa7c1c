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
    security text := mvrefresh.source_security(p_source_relids);
BEGIN
    RETURN md5(p_source_relids::text || '|' || COALESCE((
        SELECT string_agg(r.ev_class::text || ':' || md5(r.action), ';' ORDER BY r.ev_class, r.rule_oid)
          FROM mvrefresh.view_rules(p_view) r), '')
        || COALESCE('|rls:' || security, ''));
END
$$;

-- The row-level security of the tables that have it (ENABLE / FORCE, each policy's roles and expressions),
-- NULL when none has: part of source_fingerprint(), and what check_drift() compares for an incremental view.
CREATE OR REPLACE FUNCTION mvrefresh.source_security(p_relids oid[])
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT string_agg(format('%s:%s:%s', c.oid, c.relforcerowsecurity,
                             (SELECT string_agg(format('%s/%s/%s/%s/%s', p.polname, p.polcmd, p.polpermissive,
                                                       p.polroles, md5(concat(pg_get_expr(p.polqual, p.polrelid), '|',
                                                                              pg_get_expr(p.polwithcheck, p.polrelid)))),
                                                ',' ORDER BY p.polname)
                                FROM pg_policy p WHERE p.polrelid = c.oid)), ';' ORDER BY c.oid)
      FROM pg_class c WHERE c.oid = ANY (p_relids) AND c.relrowsecurity;
END;

-- What check_drift() compares for an incremental view (a table holding its definition, plain views inlined
-- when it was made incremental): the row-level security of its sources, which changes its rows without a
-- write. Prefixed, so that it is never taken for a materialized view's fingerprint.
CREATE OR REPLACE FUNCTION mvrefresh.incremental_fingerprint(p_sources oid[])
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
RETURN 'incremental:' || md5(COALESCE(mvrefresh.source_security(p_sources), ''));

-- The baseline of that comparison, stored as the view is made incremental (src/incremental/convert.ts).
CREATE OR REPLACE FUNCTION mvrefresh.store_incremental_fingerprint(p_view_id integer)
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO mvrefresh.source_fingerprints (view_id, fingerprint)
    SELECT i.view_id, mvrefresh.incremental_fingerprint(i.sources) FROM mvrefresh.incremental i
     WHERE i.view_id = p_view_id
    ON CONFLICT ON CONSTRAINT source_fingerprints_pkey DO UPDATE SET fingerprint = EXCLUDED.fingerprint;
END;

-- What the view's sources were derived from, in one value: the relations it reads (tables, partitions,
-- inheritance children and ancestors, tables read by row-level security policies, upstream materialized
-- views, as view_sources() lists them), the rules of the view and of every plain view between it and its
-- tables, and the row-level security of its tables (ENABLE / FORCE, each policy's roles and expressions).
-- A plain view redefined with CREATE OR REPLACE VIEW, or a policy altered, changes the materialized view's
-- result without any write, so it counts even when the view reads the same tables. The row-level security
-- part is appended only for tables that have it. check_drift() compares it with what was stored at the
-- last watch or check.
-- Each rule, inheritance link and policy counts with its catalog row's xmin (the transaction that wrote
-- it, kept when the row is frozen): a plain view redefined and then given back its definition, a partition
-- detached and attached again, or a policy altered and altered back, between two checks, is a change all
-- the same. A refresh in between read the other definition, or missed the partition's rows, and the text
-- alone would show nothing to repair (the model check's seed 24379 on 2026-12-08: redefine, a refresh,
-- redefine back). A catalog rewritten by a dump and restore or pg_upgrade changes every xmin: each view is
-- refreshed once for it. The 'v2:' prefix tells these from the fingerprints of earlier releases
-- (source_fingerprint_v1(), below).
-- PL/pgSQL so that it does not depend on the order in which routines are applied.
CREATE OR REPLACE FUNCTION mvrefresh.source_fingerprint(p_view regclass, p_source_relids oid[])
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    security text := mvrefresh.source_security(p_source_relids);
BEGIN
    RETURN 'v2:' || md5(p_source_relids::text || '|' || COALESCE((
        SELECT string_agg(format('%s<%s@%s', i.inhrelid, i.inhparent, i.xmin), ';' ORDER BY i.inhrelid, i.inhparent)
          FROM pg_inherits i WHERE i.inhrelid = ANY (p_source_relids)), '')
        || '|' || COALESCE((
        SELECT string_agg(format('%s:%s@%s', r.ev_class, md5(r.action), rw.xmin), ';' ORDER BY r.ev_class, r.rule_oid)
          FROM mvrefresh.view_rules(p_view) r JOIN pg_rewrite rw ON rw.oid = r.rule_oid), '')
        || COALESCE('|rls:' || security || '|' || COALESCE((
        SELECT string_agg(format('%s@%s', p.oid, p.xmin), ';' ORDER BY p.oid)
          FROM pg_policy p WHERE p.polrelid = ANY (p_source_relids)), ''), ''));
END
$$;

-- The fingerprint as earlier releases computed it (no xmin, no prefix): check_drift() compares a
-- fingerprint stored by one of them with it, and stores the new one silently when they agree.
CREATE OR REPLACE FUNCTION mvrefresh.source_fingerprint_v1(p_view regclass, p_source_relids oid[])
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

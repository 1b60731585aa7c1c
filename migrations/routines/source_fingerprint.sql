-- What the view's sources were derived from, in one value: the relations it reads (tables, partitions,
-- inheritance children, upstream materialized views, as view_sources() lists them) and the rules of the
-- view and of every plain view between it and its tables. A plain view redefined with CREATE OR REPLACE
-- VIEW changes the materialized view's result without any write, so its rule counts even when it reads
-- the same tables. check_drift() compares it with what was stored at the last watch or check.
-- PL/pgSQL so that it does not depend on the order in which routines are applied.
CREATE OR REPLACE FUNCTION mvrefresh.source_fingerprint(p_view regclass, p_source_relids oid[])
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN md5(p_source_relids::text || '|' || COALESCE((
        SELECT string_agg(r.ev_class::text || ':' || md5(r.action), ';' ORDER BY r.ev_class, r.rule_oid)
          FROM mvrefresh.view_rules(p_view) r), ''));
END
$$;

-- Compares an incremental view with its definition and repairs it: `mvrefresh verify <view>` and, for
-- pg_cron or psql, `CALL mvrefresh.verify('public.v', NULL, NULL, NULL)` (outside a transaction block: it
-- commits). In one REPEATABLE READ transaction under the view's advisory lock (waiting at most
-- p_lock_timeout_ms): an apply first, so the table equals the definition in this snapshot (A of
-- apply_view.sql) unless something bypassed the capture; then EXCEPT ALL both ways as the view's owner;
-- on a difference, when p_repair, a full recompute (only the rows that differ are rewritten) in the same
-- transaction. Counts only: row values can be sensitive. A source rewritten after the snapshot makes the
-- apply raise 40001: call again.
-- A count(DISTINCT) delta view's hidden multiset (apply_distinct() in apply_view.sql) is compared too, with
-- the one its definition gives: its entries that differ count in extra and missing (a WARNING says so), as
-- the view's own rows would once the next applies add to a wrong count; the repair rebuilds it.
CREATE OR REPLACE PROCEDURE mvrefresh.verify(
    p_name text,
    INOUT extra bigint,
    INOUT missing bigint,
    INOUT repaired boolean,
    p_repair boolean DEFAULT true,
    p_lock_timeout_ms integer DEFAULT 30000,
    p_search_path text DEFAULT pg_catalog.current_setting('search_path'))
    LANGUAGE plpgsql
AS $$
DECLARE
    vid pg_catalog.int4;
    rel pg_catalog.record;
    def pg_catalog.text;
    dist pg_catalog.jsonb;
    target pg_catalog.text;
    m_extra pg_catalog.int8 := 0;
    m_missing pg_catalog.int8 := 0;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- the name as the caller's session resolves it (p_search_path: the caller's, by default)
    vid := mvrefresh.find_watched(p_name, p_search_path);
    COMMIT;
    SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT i.definition, i.statements #> '{delta,distinct}' INTO def, dist
      FROM mvrefresh.incremental i WHERE i.view_id = vid AND i.state = 'active';
    IF def IS NULL THEN
        RAISE EXCEPTION '% is not an incremental view', p_name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    PERFORM pg_advisory_xact_lock({{LOCK_NAMESPACE}}, vid);
    SELECT c.oid, c.relowner, pg_get_userbyid(c.relowner) AS owner_name INTO rel
      FROM mvrefresh.view_state v
      JOIN pg_namespace n ON n.nspname = v.view_schema
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
     WHERE v.id = vid;
    target := rel.oid::regclass::text;
    PERFORM a.kind FROM mvrefresh.apply_view(vid, rel.oid, rel.relowner) a;
    PERFORM set_config('role', rel.owner_name, true);
    EXECUTE format('SELECT (SELECT count(*) FROM (TABLE %s EXCEPT ALL SELECT * FROM (%s) q) a), '
                   '(SELECT count(*) FROM (SELECT * FROM (%s) q EXCEPT ALL TABLE %s) b)', target, def, def, target)
       INTO extra, missing;
    PERFORM set_config('role', 'none', true);
    IF dist IS NOT NULL THEN
        PERFORM mvrefresh.distinct_from_definition(dist, rel.owner_name);
        EXECUTE format('SELECT (SELECT count(*) FROM (TABLE %s EXCEPT ALL TABLE pg_temp.mvrefresh_dfull) a), '
                       '(SELECT count(*) FROM (TABLE pg_temp.mvrefresh_dfull EXCEPT ALL TABLE %s) b)',
                       dist ->> 'table', dist ->> 'table')
           INTO m_extra, m_missing;
        DROP TABLE pg_temp.mvrefresh_dfull;
        IF m_extra + m_missing > 0 THEN
            RAISE WARNING 'mvrefresh: the hidden multiset of % differs from its definition: % extra, % missing entries',
                target, m_extra, m_missing;
        END IF;
        extra := extra + m_extra;
        missing := missing + m_missing;
    END IF;
    repaired := extra + missing > 0 AND p_repair;
    IF repaired THEN
        PERFORM a.kind FROM mvrefresh.apply_view(vid, rel.oid, rel.relowner, 'verify') a;
    END IF;
    UPDATE mvrefresh.incremental i
       SET last_verify_at = now(),
           verify_mismatches = i.verify_mismatches + CASE WHEN extra + missing > 0 THEN 1 ELSE 0 END
     WHERE i.view_id = vid;
    COMMIT;
END
$$;

-- Every relation a materialized view reads, following plain views down to their tables (pg_rewrite +
-- pg_depend), with the columns read where the catalog says which. Materialized views are reported, not
-- followed: they are dependencies with triggers of their own. Inheritance children and partitions of a
-- table are included, since writes addressed to them fire only their own triggers.
-- columns is NULL when the whole row matters (a whole-row or system-column reference somewhere in the
-- chain, or a table reached only through inheritance).
CREATE OR REPLACE FUNCTION mvrefresh.view_sources(p_view regclass)
    RETURNS TABLE (relid oid, relkind "char", columns name[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH RECURSIVE walk(rel, path) AS (
        SELECT p_view::oid, ARRAY[p_view::oid]
        UNION ALL
        -- a rule depends on the columns it reads (refobjsubid > 0), or on the relation alone (0) when it
        -- reads none of them
        SELECT d.refobjid, w.path || d.refobjid
          FROM walk w
          JOIN pg_class wc ON wc.oid = w.rel
          JOIN pg_rewrite r ON r.ev_class = w.rel
          CROSS JOIN LATERAL (SELECT DISTINCT dep.refobjid FROM pg_depend dep
                               WHERE dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                                 AND dep.refclassid = 'pg_class'::regclass) d
         WHERE (w.rel = p_view::oid OR wc.relkind = 'v')
           AND d.refobjid <> ALL (w.path)
    ),
    rules AS (
        SELECT r.oid AS rule_oid, r.ev_action::text ~ ':varattno (0|-)' AS whole_row
          FROM walk w JOIN pg_class c ON c.oid = w.rel JOIN pg_rewrite r ON r.ev_class = w.rel
         WHERE w.rel = p_view::oid OR c.relkind = 'v'
    ),
    direct AS (
        SELECT DISTINCT d.refobjid AS relid
          FROM rules JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                                     AND d.refclassid = 'pg_class'::regclass
         WHERE d.refobjid <> p_view::oid
    ),
    cols AS (
        SELECT d.refobjid AS relid,
               CASE WHEN bool_or(rules.whole_row) THEN NULL
                    ELSE array_agg(DISTINCT a.attname ORDER BY a.attname) FILTER (WHERE a.attname IS NOT NULL)
               END AS columns
          FROM rules
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                          AND d.refclassid = 'pg_class'::regclass
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                  AND d.refobjsubid > 0 AND NOT a.attisdropped
         GROUP BY d.refobjid
    ),
    descendants(relid, root) AS (
        SELECT direct.relid, direct.relid FROM direct
        UNION
        SELECT i.inhrelid, descendants.root FROM descendants JOIN pg_inherits i ON i.inhparent = descendants.relid
    )
    SELECT c.oid, c.relkind,
           CASE WHEN dsc.relid = dsc.root THEN cols.columns
                ELSE (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = ANY (cols.columns)
                         AND a.attnum > 0 AND NOT a.attisdropped)
           END
      FROM descendants dsc
      JOIN pg_class c ON c.oid = dsc.relid
      JOIN cols ON cols.relid = dsc.root
     WHERE c.relkind IN ('r', 'p', 'f', 'm')
     ORDER BY c.oid;
END;

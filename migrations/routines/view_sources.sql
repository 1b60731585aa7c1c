-- Every relation a materialized view reads, following plain views down to their tables (pg_rewrite +
-- pg_depend), with the columns read where the catalog says which. Materialized views are reported, not
-- followed: they are dependencies with triggers of their own. Besides the relations named in the query:
--  * inheritance children and partitions of a table read, since writes addressed to them fire only their
--    own triggers;
--  * every ancestor (pg_inherits, up to the root) of a relation read, since a statement addressed to an
--    ancestor fires only the ancestor's statement triggers, also when its rows land in the relation read
--    (a view reading one partition directly). A write through an ancestor holds RowExclusiveLock on the
--    ancestor until it ends, so refresh_view() waits for it there as for any writer of a source;
--  * the relations read by row-level security policies of a table read, when the policies apply to the
--    view's owner (REFRESH runs the query as the owner): a write to them changes which rows the view sees.
--    pg_depend records what a policy's USING and WITH CHECK expressions read; plain views among them are
--    followed like the view's own.
-- columns is NULL when the whole row matters (a whole-row or system-column reference somewhere in the
-- chain, a table reached only through inheritance or as an ancestor, a table read by a policy).
CREATE OR REPLACE FUNCTION mvrefresh.view_sources(p_view regclass)
    RETURNS TABLE (relid oid, relkind "char", columns name[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH RECURSIVE view_owner AS (
        SELECT c.relowner AS role, r.rolsuper OR r.rolbypassrls AS bypass
          FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = p_view::oid
    ),
    -- policies that filter what the view's owner reads from a table
    policies AS (
        SELECT pol.oid AS policy_oid, pol.polrelid
          FROM pg_policy pol
          JOIN pg_class t ON t.oid = pol.polrelid AND t.relrowsecurity
          CROSS JOIN view_owner o
         WHERE NOT o.bypass
           AND (t.relforcerowsecurity OR NOT pg_has_role(o.role, t.relowner, 'USAGE'))
           AND EXISTS (SELECT FROM unnest(pol.polroles) pr(role)
                        WHERE pr.role = 0 OR pg_has_role(o.role, pr.role, 'USAGE'))
    ),
    walk(rel, path) AS (
        SELECT p_view::oid, ARRAY[p_view::oid]
        UNION ALL
        -- a rule depends on the columns it reads (refobjsubid > 0), or on the relation alone (0) when it
        -- reads none of them; a policy on the relations it reads
        SELECT d.refobjid, w.path || d.refobjid
          FROM walk w
          JOIN pg_class wc ON wc.oid = w.rel
          CROSS JOIN LATERAL (SELECT DISTINCT dep.refobjid
                                FROM pg_rewrite r
                                JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                                                  AND dep.refclassid = 'pg_class'::regclass
                               WHERE r.ev_class = w.rel AND (w.rel = p_view::oid OR wc.relkind = 'v')
                              UNION
                              SELECT dep.refobjid
                                FROM policies pol
                                JOIN pg_depend dep ON dep.classid = 'pg_policy'::regclass
                                                  AND dep.objid = pol.policy_oid
                                                  AND dep.refclassid = 'pg_class'::regclass
                               WHERE pol.polrelid = w.rel AND dep.refobjid <> pol.polrelid) d
         WHERE d.refobjid <> ALL (w.path)
    ),
    rules AS (
        SELECT r.oid AS rule_oid, r.ev_action::text ~ ':varattno (0|-)' AS whole_row
          FROM (SELECT DISTINCT walk.rel FROM walk) w
          JOIN pg_class c ON c.oid = w.rel JOIN pg_rewrite r ON r.ev_class = w.rel
         WHERE w.rel = p_view::oid OR c.relkind = 'v'
    ),
    policy_reads AS (
        SELECT DISTINCT d.refobjid AS relid
          FROM (SELECT DISTINCT walk.rel FROM walk) w
          JOIN policies pol ON pol.polrelid = w.rel
          JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = pol.policy_oid
                          AND d.refclassid = 'pg_class'::regclass
         WHERE d.refobjid <> pol.polrelid
    ),
    direct AS (
        SELECT DISTINCT d.refobjid AS relid
          FROM rules JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                                     AND d.refclassid = 'pg_class'::regclass
         WHERE d.refobjid <> p_view::oid
        UNION
        SELECT policy_reads.relid FROM policy_reads WHERE policy_reads.relid <> p_view::oid
    ),
    cols AS (
        SELECT x.relid, CASE WHEN bool_or(x.whole_row) THEN NULL
                             ELSE array_agg(DISTINCT x.attname ORDER BY x.attname)
                                  FILTER (WHERE x.attname IS NOT NULL)
                        END AS columns
          FROM (SELECT d.refobjid AS relid, rules.whole_row, a.attname
                  FROM rules
                  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule_oid
                                  AND d.refclassid = 'pg_class'::regclass
                  LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                          AND d.refobjsubid > 0 AND NOT a.attisdropped
                UNION ALL
                SELECT policy_reads.relid, true, NULL FROM policy_reads) x
         GROUP BY x.relid
    ),
    descendants(relid, root) AS (
        SELECT direct.relid, direct.relid FROM direct
        UNION
        SELECT i.inhrelid, descendants.root FROM descendants JOIN pg_inherits i ON i.inhparent = descendants.relid
    ),
    ancestors(relid) AS (
        SELECT i.inhparent FROM descendants JOIN pg_inherits i ON i.inhrelid = descendants.relid
        UNION
        SELECT i.inhparent FROM ancestors JOIN pg_inherits i ON i.inhrelid = ancestors.relid
    ),
    found AS (
        SELECT DISTINCT ON (dsc.relid) dsc.relid,
               CASE WHEN dsc.relid = dsc.root THEN cols.columns
                    ELSE (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
                           WHERE a.attrelid = dsc.relid AND a.attname = ANY (cols.columns)
                             AND a.attnum > 0 AND NOT a.attisdropped)
               END AS columns
          FROM descendants dsc JOIN cols ON cols.relid = dsc.root
         ORDER BY dsc.relid, dsc.relid = dsc.root DESC
    )
    SELECT c.oid, c.relkind, x.columns
      FROM (SELECT found.relid, found.columns FROM found
            UNION ALL
            SELECT ancestors.relid, NULL FROM ancestors
             WHERE ancestors.relid NOT IN (SELECT found.relid FROM found)) x
      JOIN pg_class c ON c.oid = x.relid
     WHERE c.relkind IN ('r', 'p', 'f', 'm')
     ORDER BY c.oid;
END;

-- What watch() warns about in a view's definition, each warning naming what it means:
--  * functions the view calls, directly or through the plain views it reads, that read tables mvrefresh
--    cannot put triggers on through the view (writes to those tables do not mark it). Functions with a
--    SQL-standard body (BEGIN ATOMIC, RETURN) have their tables in the catalog, and functions they call
--    are followed; other SQL and PL/pgSQL bodies have no dependencies in the catalog, so the relation names
--    found in their text are given, and a body with EXECUTE (dynamic SQL) is reported as such. A function
--    whose body names no relation and runs no dynamic SQL is not reported, nor one that reads only tables
--    the view reads anyway (their triggers mark it). Other languages (C, ...) are
--    reported unless IMMUTABLE.
--  * the clock or randomness: now(), current_date, current_timestamp, localtimestamp, clock_timestamp(),
--    random(), ... in the view or a plain view it reads: its result changes without any write. The same in
--    the body of a function they call (Lemmy's hot_rank() reads now()), named with the function: from the
--    parse tree of a SQL-standard body, from the text of other SQL and PL/pgSQL bodies (a name in a comment
--    counts too; functions that a PL/pgSQL body calls are not followed: the catalog does not know them).
-- p_has_interval: the view is refreshed periodically already, so the hint to set an interval is left out.
-- PL/pgSQL so that it does not depend on the order in which routines are applied.
CREATE OR REPLACE FUNCTION mvrefresh.view_warnings(p_view regclass, p_has_interval boolean)
    RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    warn text[] := '{}';
    hint text := CASE WHEN p_has_interval THEN ''
                      ELSE '; pass --refresh-interval-ms to refresh it periodically' END;
    f record;
    clock text[];
    clock_hint text := CASE WHEN p_has_interval THEN ''
                            ELSE '; pass --refresh-interval-ms to bound how stale it gets' END;
    -- system functions that read the clock or randomness (age(x) reads the clock, age(x, y) does not)
    clock_fns text[] := ARRAY['now', 'clock_timestamp', 'statement_timestamp', 'transaction_timestamp',
                              'timeofday', 'random', 'random_normal', 'gen_random_uuid', 'age', 'timenow'];
    rules oid[];
    actions text[];
    -- tables the view's triggers cover already: a function reading only those needs no warning
    covered oid[] := ARRAY(SELECT s.relid FROM mvrefresh.view_sources(p_view) s);
BEGIN
    -- the rules of the view and of every plain view between it and its tables
    SELECT array_agg(r.rule_oid), array_agg(r.action) INTO rules, actions
      FROM mvrefresh.view_rules(p_view) r;

    -- user-defined functions called by those rules (system functions are pinned: not in pg_depend), and
    -- the functions that SQL-standard bodies among them call
    FOR f IN
        WITH RECURSIVE called(fn) AS (
            SELECT d.refobjid FROM unnest(rules) r(rule_oid)
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule_oid
                              AND d.refclassid = 'pg_proc'::regclass
            UNION
            SELECT d.refobjid FROM called c
              JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = c.fn
                              AND d.refclassid = 'pg_proc'::regclass
        )
        SELECT p.oid, p.oid::regprocedure::text AS name, l.lanname, p.provolatile, p.prosrc,
               p.prosqlbody IS NOT NULL AS standard_body, p.prosqlbody::text AS sqlbody,
               ARRAY(SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d
                      JOIN pg_class c ON c.oid = d.refobjid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> ALL (covered)
                     ORDER BY 1) AS catalog_tables
          FROM called JOIN pg_proc p ON p.oid = called.fn JOIN pg_language l ON l.oid = p.prolang
         WHERE p.pronamespace <> 'mvrefresh'::regnamespace
         ORDER BY 2
    LOOP
        -- the clock or randomness in its body
        clock := CASE
            WHEN f.standard_body THEN ARRAY(
                SELECT DISTINCT p.proname || '()'
                  FROM regexp_matches(f.sqlbody, ':funcid (\d+)', 'g') m JOIN pg_proc p ON p.oid = m[1]::oid
                 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (clock_fns)
                   AND (p.proname <> 'age' OR p.pronargs = 1)
                UNION
                SELECT (ARRAY['current_date', 'current_time', 'current_time', 'current_timestamp',
                              'current_timestamp', 'localtime', 'localtime', 'localtimestamp',
                              'localtimestamp'])[m[1]::integer + 1]
                  FROM regexp_matches(f.sqlbody, 'SQLVALUEFUNCTION :op (\d+)', 'g') m
                 WHERE m[1]::integer <= 8
                 ORDER BY 1)
            WHEN f.lanname IN ('sql', 'plpgsql') THEN ARRAY(
                SELECT DISTINCT m[2] || CASE WHEN m[3] = '(' THEN '()' ELSE '' END
                  FROM regexp_matches(lower(f.prosrc),
                                      '(^|[^a-z0-9_$.]|pg_catalog\.)(now|clock_timestamp|statement_timestamp|'
                                      'transaction_timestamp|timeofday|random|random_normal|gen_random_uuid|'
                                      'timenow|current_date|current_time|current_timestamp|localtime|'
                                      'localtimestamp)\s*(\(|$|[^a-z0-9_$(])', 'g') m
                 WHERE m[3] = '(' OR m[2] LIKE 'current\_%' OR m[2] LIKE 'local%'
                UNION
                SELECT '''now''' WHERE f.prosrc ~* '''now''\s*::'
                 ORDER BY 1)
        END;
        IF cardinality(clock) > 0 THEN
            warn := warn || format('%s calls function %s, which depends on the clock or on randomness (%s): its '
                                   'result changes without any write, so %s goes stale between writes%s',
                                   p_view, f.name, array_to_string(clock, ', '), p_view, clock_hint);
        END IF;

        IF f.standard_body THEN
            CONTINUE WHEN cardinality(f.catalog_tables) = 0;
            warn := warn || format('%s calls function %s, which reads %s: writes to them do not mark %s%s',
                                   p_view, f.name, array_to_string(f.catalog_tables, ', '), p_view, hint);
        ELSIF f.lanname IN ('sql', 'plpgsql') THEN
            DECLARE
                named text[] := ARRAY(
                    SELECT DISTINCT c.oid::regclass::text FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid <> ALL (covered)
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'mvrefresh')
                       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
                       AND f.prosrc ~* ('(^|[^a-z0-9_$])"?' || regexp_replace(c.relname, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                        || '"?($|[^a-z0-9_$])')
                     ORDER BY 1);
                dynamic boolean := f.lanname = 'plpgsql' AND f.prosrc ~* '(^|[^a-z0-9_])execute([^a-z0-9_]|$)';
            BEGIN
                CONTINUE WHEN cardinality(named) = 0 AND NOT dynamic;
                warn := warn || format('%s calls function %s (%s: its body''s dependencies are not in the catalog), '
                                       'which %s: writes to them do not mark %s%s',
                                       p_view, f.name, f.lanname,
                                       concat_ws(' and ',
                                                 CASE WHEN cardinality(named) > 0
                                                      THEN 'names ' || array_to_string(named, ', ') END,
                                                 CASE WHEN dynamic THEN 'runs dynamic SQL (EXECUTE)' END),
                                       p_view, hint);
            END;
        ELSIF f.provolatile <> 'i' THEN
            warn := warn || format('%s calls function %s (language %s): mvrefresh cannot see what it reads%s',
                                   p_view, f.name, f.lanname, hint);
        END IF;
    END LOOP;

    -- the clock and randomness: system functions by name, and the SQL value functions current_date,
    -- current_time, current_timestamp, localtime, localtimestamp (op 0 to 8)
    clock := ARRAY(
        SELECT DISTINCT p.proname || '()' FROM unnest(actions) r(action)
         CROSS JOIN LATERAL regexp_matches(r.action, ':funcid (\d+)', 'g') m
          JOIN pg_proc p ON p.oid = m[1]::oid
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname = ANY (clock_fns)
           AND (p.proname <> 'age' OR p.pronargs = 1)
        UNION
        SELECT DISTINCT (ARRAY['current_date', 'current_time', 'current_time', 'current_timestamp',
                               'current_timestamp', 'localtime', 'localtime', 'localtimestamp',
                               'localtimestamp'])[m[1]::integer + 1]
          FROM unnest(actions) r(action)
         CROSS JOIN LATERAL regexp_matches(r.action, 'SQLVALUEFUNCTION :op (\d+)', 'g') m
         WHERE m[1]::integer <= 8
         ORDER BY 1);
    IF cardinality(clock) > 0 THEN
        warn := warn || format('%s depends on the clock or on randomness (%s): its result changes without any '
                               'write, so it goes stale between writes%s',
                               p_view, array_to_string(clock, ', '), clock_hint);
    END IF;
    RETURN warn;
END
$$;

-- What is wrong with a table's marking trigger that this role cannot repair, worded for the view's
-- warnings, or NULL when nothing is. The marking trigger is mvrefresh_mark, or the four capture triggers
-- of a table that only incremental views read (logged_only(), routines/capture_logs.sql: it has no
-- mvrefresh_mark). For mvrefresh_mark: a trigger of that name that does not run
-- mvrefresh.mark_table(), one that is ENABLE REPLICA, one not ENABLE ALWAYS (which only the table's owner
-- can change). For capture triggers: one not ENABLE ALWAYS (missing, disabled or ENABLE REPLICA ones are
-- reported by check_drift() as capture triggers). watch() and check_drift() word their warnings here;
-- check_drift() replaces the first two kinds at every check and knows them by their leading words
-- ("foreign trigger on", "replica trigger on").
CREATE OR REPLACE FUNCTION mvrefresh.trigger_warning(p_relid oid) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN mvrefresh.logged_only(c.oid)
                THEN CASE WHEN EXISTS (SELECT FROM pg_trigger tg
                                        WHERE tg.tgrelid = c.oid AND tg.tgname LIKE 'mvrefresh\_cap\_%'
                                          AND tg.tgenabled NOT IN ('A', 'D', 'R'))
                          THEN format('the triggers on %s do not fire for changes applied by logical replication '
                                      '(ENABLE ALWAYS needs the table''s owner, %s)', c.oid::regclass,
                                      c.relowner::regrole)
                     END
                WHEN tg.tgfoid <> 'mvrefresh.mark_table()'::regprocedure
                THEN format('foreign trigger on %s: its trigger named mvrefresh_mark runs %s, not '
                            'mvrefresh.mark_table(), so writes to it mark nothing; its views are refreshed at '
                            'every check until its owner (%s) renames or drops that trigger',
                            c.oid::regclass, tg.tgfoid::regprocedure, c.relowner::regrole)
                WHEN tg.tgenabled = 'R'
                THEN format('replica trigger on %s: trigger mvrefresh_mark is ENABLE REPLICA (fires only under '
                            'session_replication_role = replica), so ordinary writes mark nothing; its views are '
                            'refreshed at every check until its owner (%s) runs ALTER TABLE %s ENABLE ALWAYS '
                            'TRIGGER mvrefresh_mark', c.oid::regclass, c.relowner::regrole, c.oid::regclass)
                WHEN tg.tgenabled <> 'A'
                THEN format('the trigger on %s does not fire for changes applied by logical replication '
                            '(ENABLE ALWAYS needs the table''s owner, %s)', c.oid::regclass, c.relowner::regrole)
           END
      FROM pg_class c LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = 'mvrefresh_mark'
     WHERE c.oid = p_relid
$$;

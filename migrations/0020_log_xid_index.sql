-- Version 20: every log gets a B-tree index on mvr_xid (src/incremental/capture.ts creates it with a new
-- log), so that the looks at a log (routines/capture_logs.sql: the daemon's poll, due_views(), status) and
-- the apply's batch copy (routines/apply_view.sql) read the rows at or above their snapshot's xmin, the
-- rows that may be new to a view, instead of the whole log. A log holds what the slowest view reading its
-- table has not applied: after a bulk load, the load, which every look at every other view read to find
-- nothing (docs/design/incremental.md 10.2). Building it takes a SHARE lock on the log, which holds its
-- table's writers for the build: a log holds a few seconds of writes when the daemons keep up.
-- A daemon of version 19 keeps working: the index changes no result, and a log created by its `watch`
-- gets the index at the next capture sync of this version (watch, unwatch, a conversion).
-- compatibility: keeps older daemons working

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'mvrefresh'::pg_catalog.regnamespace
           AND c.relkind OPERATOR(pg_catalog.=) 'r' AND c.relname OPERATOR(pg_catalog.~) '^log_[0-9]+$'
    LOOP
        EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON mvrefresh.%I (mvr_xid)',
                                  r.relname OPERATOR(pg_catalog.||) '_xid', r.relname);
    END LOOP;
END
$$;

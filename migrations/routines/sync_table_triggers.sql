-- Brings the triggers in line with the watched views: one trigger, mvrefresh_mark, on every table or
-- partition a watched view reads (view_state.source_relids), except where every watched view reading it
-- is an incremental view kept from the table's log (logged_only(), routines/capture_logs.sql: such a view
-- is due from its log, and the table's writers pay for the log's INSERT alone), none on tables no watched
-- view reads any more, and no table marks left for such tables. Idempotent; `watch`, `unwatch`, `migrate` and the capture of incremental views
-- (src/incremental/capture.ts, after it created or dropped capture triggers, in the same transaction) run
-- it. Returns the tables whose trigger it removed because no watched view reads them.
--
-- The trigger fires for every write (no column list: the application's migrations may alter or drop any
-- column). It is enabled ALWAYS where this role owns the table (ALTER TABLE needs the owner), so that
-- changes applied by logical replication (session_replication_role = replica) mark views too; elsewhere it
-- is an ordinary trigger and watch() warns. Ours is the trigger that runs mvrefresh.mark_table(): a
-- trigger of that name that is not ours is never replaced, nor does it stop the other tables from being
-- brought in line; check_drift() reports it at every check and keeps the views reading the table marked.
-- Each watched table's write counters are recorded here first (table_writes), so that check_drift() counts
-- from the moment the table is watched: a write that fires no trigger is noticed from then on. Writes
-- committed before then fired none, rightly, but the statistics may report them later (a table loaded and
-- then watched): this session's are counted in the baseline from its own unreported counters, and when
-- other sessions may hold some (routines/writes_may_be_unreported.sql), last_mark_at is set, which
-- check_drift() takes as evidence that writes reported within its stats_delay of it fired the trigger.
-- Each table's relfilenode is recorded too (table_files): a TRUNCATE that fired no trigger changes it.
CREATE OR REPLACE FUNCTION mvrefresh.sync_table_triggers() RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    dropped text[] := '{}';
BEGIN
    -- the event trigger (routines/ddl_changed.sql) does not report these changes back to the daemons
    PERFORM set_config('mvrefresh.syncing', 'on', true);
    FOR t IN SELECT tg.tgrelid FROM pg_trigger tg
              WHERE tg.tgname = 'mvrefresh_mark' AND tg.tgfoid = 'mvrefresh.mark_table()'::regprocedure
                AND NOT EXISTS (SELECT FROM mvrefresh.view_state v WHERE tg.tgrelid = ANY (v.source_relids))
    LOOP
        EXECUTE format('DROP TRIGGER mvrefresh_mark ON %s', t.tgrelid::regclass);
        dropped := dropped || t.tgrelid::regclass::text;
    END LOOP;
    -- every view reading these tables is due from their logs: a mark would be paid for and read by nobody
    FOR t IN SELECT tg.tgrelid FROM pg_trigger tg
              WHERE tg.tgname = 'mvrefresh_mark' AND tg.tgfoid = 'mvrefresh.mark_table()'::regprocedure
                AND mvrefresh.logged_only(tg.tgrelid)
    LOOP
        EXECUTE format('DROP TRIGGER mvrefresh_mark ON %s', t.tgrelid::regclass);
    END LOOP;
    -- the marks of tables no watched view reads: writers that remember one of them must not trust it if
    -- the table is watched again (routines/clear_table_marks.sql)
    PERFORM mvrefresh.clear_table_marks(ARRAY(
        SELECT DISTINCT m.relid FROM mvrefresh.table_marks m
         WHERE NOT EXISTS (SELECT FROM mvrefresh.view_state v WHERE m.relid = ANY (v.source_relids))));
    DELETE FROM mvrefresh.table_writes w
     WHERE NOT EXISTS (SELECT FROM mvrefresh.view_state v WHERE w.relid = ANY (v.source_relids));
    DELETE FROM mvrefresh.table_files f
     WHERE NOT EXISTS (SELECT FROM mvrefresh.view_state v WHERE f.relid = ANY (v.source_relids));
    DELETE FROM mvrefresh.drift_findings f
     WHERE NOT EXISTS (SELECT FROM mvrefresh.view_state v WHERE f.relid = ANY (v.source_relids));
    INSERT INTO mvrefresh.table_files (relid, relfilenode)
    SELECT c.oid, c.relfilenode FROM pg_class c
     WHERE c.oid IN (SELECT unnest(v.source_relids) FROM mvrefresh.view_state v) AND c.relkind = 'r'
    ON CONFLICT (relid) DO NOTHING;
    INSERT INTO mvrefresh.table_writes (relid, writes, last_mark_at)
    SELECT st.relid,
           st.n_tup_ins + st.n_tup_upd + st.n_tup_del + pg_stat_get_xact_tuples_inserted(st.relid)
           + pg_stat_get_xact_tuples_updated(st.relid) + pg_stat_get_xact_tuples_deleted(st.relid),
           (SELECT CASE WHEN mvrefresh.writes_may_be_unreported() THEN now() END)
      FROM pg_stat_user_tables st
     WHERE st.relid IN (SELECT unnest(v.source_relids) FROM mvrefresh.view_state v)
    ON CONFLICT (relid) DO NOTHING;
    -- partitioned tables count no writes (their partitions do) and PostgreSQL 14 lists none in
    -- pg_stat_user_tables; their row carries last_mark_at, which check_drift() takes as evidence for their
    -- partitions
    INSERT INTO mvrefresh.table_writes (relid, writes, last_mark_at)
    SELECT c.oid, 0, (SELECT CASE WHEN mvrefresh.writes_may_be_unreported() THEN now() END)
      FROM pg_class c
     WHERE c.oid IN (SELECT unnest(v.source_relids) FROM mvrefresh.view_state v) AND c.relkind = 'p'
    ON CONFLICT (relid) DO NOTHING;

    FOR t IN SELECT DISTINCT c.oid, c.relowner, tg.tgfoid, tg.tgenabled
               FROM mvrefresh.view_state v
              CROSS JOIN LATERAL unnest(v.source_relids) AS r(relid)
               JOIN pg_class c ON c.oid = r.relid AND c.relkind IN ('r', 'p')
               LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = 'mvrefresh_mark'
              ORDER BY c.oid
    LOOP
        -- not ours: reported by check_drift() and watch()
        CONTINUE WHEN t.tgfoid IS NOT NULL AND t.tgfoid <> 'mvrefresh.mark_table()'::regprocedure;
        -- read through its log only (dropped above)
        CONTINUE WHEN mvrefresh.logged_only(t.oid);
        IF t.tgfoid IS NULL THEN
            EXECUTE format('CREATE TRIGGER mvrefresh_mark AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.mark_table()', t.oid::regclass);
        END IF;
        IF t.tgenabled IS DISTINCT FROM 'A' AND pg_has_role(t.relowner, 'USAGE') THEN
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER mvrefresh_mark', t.oid::regclass);
        END IF;
    END LOOP;
    PERFORM set_config('mvrefresh.syncing', '', true);
    RETURN dropped;
END
$$;

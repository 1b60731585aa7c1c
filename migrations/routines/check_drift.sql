-- Compares every watched view's sources with the catalog and repairs what differs, so that no committed
-- write is left unreflected when the sources change after `watch` or a write fires no trigger. The daemon
-- calls it every driftCheckIntervalMs, after every reconnect, and at once when the event trigger reports
-- DDL (routines/ddl_changed.sql). Returns one row per view it marked dirty, with what it found: changes
-- (for people) and kinds (the kind of each change, one of src/db/protocol.ts's DRIFT_KINDS, for programs):
--  * the sources changed: a partition attached, detached, created or dropped, an inheritance child, a
--    plain view redefined, the view re-created, or one of those undone before this check, after a refresh
--    read it (source_fingerprint() differs from the stored one: it counts the catalog rows' xmin). The
--    stored sources are updated and the view is refreshed: rows that arrived without DML (an attached
--    partition) and a new definition are both reflected by a refresh that starts after this commits;
--  * a table's trigger is missing, disabled, or no longer ENABLE ALWAYS where this role owns the table
--    (ALTER TABLE ... DISABLE / ENABLE TRIGGER ALL resets it): writes may have fired nothing. A table's
--    marking trigger is mvrefresh_mark, or, for a table only incremental views read (logged_only(),
--    routines/capture_logs.sql: it has no mvrefresh_mark), its four capture triggers; a table that no longer
--    needs its mvrefresh_mark has it dropped (not reported);
--  * conditions that a table's owner keeps and this role cannot repair, reported at every check, their
--    views marked at every check so that none stays stale longer than driftCheckIntervalMs: a trigger
--    named mvrefresh_mark that does not run mvrefresh.mark_table() (ours is told by its function, never by
--    its name alone), a trigger disabled or ENABLE REPLICA (fires only under session_replication_role =
--    replica) on a table this role does not own. One such table never stops the check for the others;
--  * a table's write counters (pg_stat_user_tables) advanced since the last check. A view reading it that
--    has no pending mark is marked: a refresh that starts after now covers every write counted by now,
--    whether or not its trigger fired (the counters cannot tell). It is reported as a bypass only when
--    nothing shows that the trigger fired: no mark of the table now, and none consumed by a refresh cycle
--    (table_writes.last_mark_at) since the last check minus the statistics' reporting delay. Counting a
--    table starts with last_mark_at set when other sessions may hold unreported writes (here for a new
--    source, in sync_table_triggers() at `watch`): writes committed before its trigger existed, which
--    their statistics report up to that delay later (a table loaded just before it was watched), are
--    refreshed for, not reported; so is a write that fires no trigger within that delay, the counters
--    cannot tell them apart. A mark of an ancestor (pg_inherits) counts as the table's: a statement
--    addressed to a partitioned parent fires only the parent's trigger, while the partition's counters move;
--  * a capture trigger of an incremental view's source missing, disabled or ENABLE REPLICA (enabled again
--    where this role owns the table; a missing one brings mvrefresh_mark back, sync_table_triggers()); every
--    view reported that is incremental recomputes in full at its next apply;
--  * a table's relfilenode changed since the last check (table_files): TRUNCATE moves no counter but
--    replaces the storage, as do VACUUM FULL, CLUSTER and rewriting ALTER TABLEs. Its views are marked
--    unless a mark of the table or an ancestor shows its trigger fired since; it is reported as a truncate
--    that fired no trigger when the table looks truncated (reltuples = -1: TRUNCATE resets it, VACUUM FULL
--    and CLUSTER count the rows), else refreshed for, not reported.
-- What the check found as events (writes or a truncate that fired no trigger) is kept in drift_findings for
-- `doctor`, the standing conditions in the warnings of the views they concern (status, /views); a check
-- that completes records its time in drift_check_state.
-- Then the triggers are brought in line (sync_table_triggers()) under p_lock_timeout_ms: CREATE TRIGGER
-- takes SHARE ROW EXCLUSIVE and must not queue in front of the application's writers. When the lock is not
-- granted, triggers_synced is false, everything else is kept, and the caller retries soon; the views are
-- refreshed meanwhile and the next check finds the trigger still missing and marks them again. When this
-- role may not bring them in line (insufficient_privilege), every view reported gets one more change of
-- kind repair_forbidden.
-- Raises lock_not_available when another session (watch, unwatch, another daemon's check) holds the
-- catalog lock: the caller retries.
CREATE OR REPLACE FUNCTION mvrefresh.check_drift(p_lock_timeout_ms integer)
    RETURNS TABLE (view_id integer, view text, changes text[], kinds text[], triggers_synced boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
    t record;
    rel regclass;
    new_relids oid[];
    fp text;
    inc_sources oid[];
    ch jsonb;
    -- what the check found, in the order found: {kind, change} with the view's id ("view") or the table's
    -- oid ("relid", for every view that reads it)
    found jsonb := '[]';
    -- the same by view: {view id: {"kinds": [...], "changes": [...]}}
    by_view jsonb;
    marked integer[] := '{}';
    forbidden text;
    synced boolean := true;
    need_sync boolean := false;
    evidence boolean;
    ours constant regprocedure := 'mvrefresh.mark_table()'::regprocedure;
    -- conditions only the table's owner can end: kept in the view's warnings (status, /views)
    standing constant text[] := ARRAY[{{DRIFT_FOREIGN_TRIGGER}}, {{DRIFT_REPLICA_TRIGGER}}];
    -- events found are kept this long for `doctor`
    findings_kept constant interval := interval '1 day';
    -- a backend reports its table statistics within this delay of going idle (PostgreSQL 15+)
    stats_delay interval := {{STATS_REPORT_DELAY}};
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock({{LOCK_NAMESPACE}}, {{WATCH_LOCK_KEY}}) THEN
        RAISE EXCEPTION 'another session is changing the watched views'
            USING ERRCODE = 'lock_not_available';
    END IF;
    -- a background check waits for no lock longer than p_lock_timeout_ms (below deadlock_timeout): behind
    -- a refresh cycle's row or the application's DDL it gives up and is retried, never making them wait
    -- long or lose a deadlock to it
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);

    -- sources that changed
    DELETE FROM mvrefresh.source_fingerprints f
     WHERE NOT EXISTS (SELECT FROM mvrefresh.view_state s WHERE s.id = f.view_id);
    FOR v IN SELECT s.id, s.view_schema, s.view_name, s.source_relids, f.fingerprint AS source_fingerprint
               FROM mvrefresh.view_state s LEFT JOIN mvrefresh.source_fingerprints f ON f.view_id = s.id
              ORDER BY s.id LOOP
        rel := to_regclass(format('%I.%I', v.view_schema, v.view_name));
        -- an incremental view: its own fingerprint (routines/source_fingerprint.sql), stored when it was made
        -- incremental (one made so by an earlier version: stored at the first check, not reported); the first
        -- check after it is a materialized view again only stores that one's. Reported, it recomputes in full
        inc_sources := (SELECT i.sources FROM mvrefresh.incremental i WHERE i.view_id = v.id AND i.state = 'active');
        IF rel IS NOT NULL AND inc_sources IS NOT NULL THEN
            fp := mvrefresh.incremental_fingerprint(inc_sources);
            CONTINUE WHEN fp = v.source_fingerprint;
            INSERT INTO mvrefresh.source_fingerprints (view_id, fingerprint) VALUES (v.id, fp)
            ON CONFLICT ON CONSTRAINT source_fingerprints_pkey DO UPDATE SET fingerprint = EXCLUDED.fingerprint;
            IF v.source_fingerprint LIKE 'incremental:%' THEN
                found := found || jsonb_build_object('view', v.id, 'kind', {{DRIFT_DEFINITION}}, 'change',
                                                     'row-level security of a source changed');
            END IF;
            CONTINUE;
        END IF;
        IF v.source_fingerprint LIKE 'incremental:%' THEN
            v.source_fingerprint := NULL;
        END IF;
        -- gone or replaced by something else: the refresh records why
        CONTINUE WHEN rel IS NULL OR (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) <> 'm';
        new_relids := ARRAY(SELECT s.relid FROM mvrefresh.view_sources(rel) s ORDER BY s.relid);
        fp := mvrefresh.source_fingerprint(rel, new_relids);
        CONTINUE WHEN fp = v.source_fingerprint;
        -- stored by an earlier version, in its form: nothing changed when that form agrees
        IF v.source_fingerprint NOT LIKE 'v2:%'
           AND v.source_fingerprint = mvrefresh.source_fingerprint_v1(rel, new_relids) THEN
            UPDATE mvrefresh.source_fingerprints f SET fingerprint = fp WHERE f.view_id = v.id;
            CONTINUE;
        END IF;
        ch := COALESCE((SELECT jsonb_agg(x.f ORDER BY x.added DESC, x.r) FROM (
                  SELECT r, true AS added, jsonb_build_object('view', v.id, 'kind', {{DRIFT_SOURCE_ADDED}},
                                                              'change', 'source added: ' || r::regclass::text) AS f
                    FROM unnest(new_relids) r WHERE r <> ALL (v.source_relids)
                  UNION ALL
                  SELECT r, false, jsonb_build_object('view', v.id, 'kind', {{DRIFT_SOURCE_REMOVED}},
                                                      'change', 'source removed: ' || COALESCE(
                                                          (SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = r),
                                                          'a dropped relation (oid ' || r || ')'))
                    FROM unnest(v.source_relids) r WHERE r <> ALL (new_relids)) x), '[]');
        IF ch = '[]' AND v.source_fingerprint IS NOT NULL THEN
            ch := jsonb_build_array(jsonb_build_object('view', v.id, 'kind', {{DRIFT_DEFINITION}}, 'change',
                                                       'definition changed (the view, or a plain view it reads)'));
        END IF;
        INSERT INTO mvrefresh.source_fingerprints (view_id, fingerprint) VALUES (v.id, fp)
        ON CONFLICT ON CONSTRAINT source_fingerprints_pkey DO UPDATE SET fingerprint = EXCLUDED.fingerprint;
        CONTINUE WHEN v.source_relids = new_relids AND v.source_fingerprint IS NULL;
        UPDATE mvrefresh.view_state s
           SET source_relids = new_relids,
               sources = ARRAY(SELECT c.oid::regclass::text FROM pg_class c
                                WHERE c.oid = ANY (new_relids) AND c.relkind IN ('r', 'p') ORDER BY c.oid)
         WHERE s.id = v.id;
        IF ch <> '[]' THEN
            need_sync := true;
            found := found || ch;
        END IF;
    END LOOP;

    -- triggers missing, disabled, or not ENABLE ALWAYS where they could be; triggers of our name that are not
    -- ours, and states this role cannot repair (a table it does not own)
    FOR t IN SELECT c.oid, c.relowner::regrole AS owner, tg.oid AS tgoid, tg.tgfoid, tg.tgenabled,
                    pg_has_role(c.relowner, 'USAGE') AS owned
               FROM (SELECT DISTINCT unnest(s.source_relids) AS relid FROM mvrefresh.view_state s) src
               JOIN pg_class c ON c.oid = src.relid AND c.relkind IN ('r', 'p')
               LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = 'mvrefresh_mark'
              WHERE (tg.oid IS NULL OR tg.tgfoid <> ours OR tg.tgenabled IN ('D', 'R')
                     OR (tg.tgenabled <> 'A' AND pg_has_role(c.relowner, 'USAGE')))
                -- read through its log only (its capture triggers are checked below)
                AND NOT mvrefresh.logged_only(c.oid)
              ORDER BY c.oid
    LOOP
        IF t.tgoid IS NOT NULL AND (t.tgfoid <> ours OR (t.tgenabled = 'R' AND NOT t.owned)) THEN
            found := found || jsonb_build_object(
                'relid', t.oid,
                'kind', CASE WHEN t.tgfoid <> ours THEN {{DRIFT_FOREIGN_TRIGGER}} ELSE {{DRIFT_REPLICA_TRIGGER}} END,
                'change', mvrefresh.trigger_warning(t.oid));
        ELSE
            need_sync := true;
            found := found || jsonb_build_object(
                'relid', t.oid,
                'kind', {{DRIFT_TRIGGER}},
                'change', CASE WHEN t.tgoid IS NULL THEN 'trigger missing on '
                               WHEN t.tgenabled = 'D' THEN 'trigger disabled on '
                               ELSE 'trigger not ENABLE ALWAYS (changes applied by logical replication fire nothing) on '
                          END || t.oid::regclass::text);
        END IF;
    END LOOP;

    -- an mvrefresh_mark that no view needs any more (the last materialized view reading the table became
    -- incremental, and the conversion's own sync of the triggers did not get the table's lock)
    IF EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgname = 'mvrefresh_mark' AND tg.tgfoid = ours
                                          AND mvrefresh.logged_only(tg.tgrelid)) THEN
        need_sync := true;
    END IF;

    -- the capture triggers of incremental views' sources (src/incremental/capture.ts): a missing, disabled
    -- or replica one lets writes through without a log row (nor a mark: they are the table's marking
    -- triggers), so the views reading the table recompute in full (below); a disabled or replica one is
    -- enabled again where this role owns the table, a missing one needs the view to be made incremental
    -- again (the capture's functions are generated there), and meanwhile mvrefresh_mark marks the table
    -- (sync_table_triggers(), as for a missing mvrefresh_mark)
    FOR t IN SELECT c.oid, e.name, tg.oid AS tgoid, tg.tgenabled, pg_has_role(c.relowner, 'USAGE') AS owned
               FROM (SELECT DISTINCT unnest(i.sources) AS relid FROM mvrefresh.incremental i WHERE i.state = 'active') src
               JOIN pg_class c ON c.oid = src.relid
              CROSS JOIN (VALUES ({{CAPTURE_INS}}), ({{CAPTURE_UPD}}), ({{CAPTURE_DEL}}),
                                 ({{CAPTURE_TRUNC}})) e(name)
               LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = e.name
              WHERE tg.oid IS NULL OR tg.tgenabled IN ('D', 'R')
                 OR (tg.tgenabled <> 'A' AND pg_has_role(c.relowner, 'USAGE'))
              ORDER BY c.oid, e.name
    LOOP
        IF t.tgoid IS NULL THEN
            need_sync := true;
        END IF;
        found := found || jsonb_build_object(
            'relid', t.oid,
            'kind', {{DRIFT_TRIGGER}},
            'change', format('capture trigger %s %s on %s', t.name,
                             CASE WHEN t.tgoid IS NULL THEN 'missing (run watch --incremental again)'
                                  WHEN t.tgenabled = 'D' THEN 'disabled'
                                  WHEN t.tgenabled = 'R' THEN 'ENABLE REPLICA (fires only under session_replication_role = replica)'
                                  ELSE 'not ENABLE ALWAYS' END, t.oid::regclass));
        IF t.tgoid IS NOT NULL AND t.owned THEN
            BEGIN
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.oid::regclass, t.name);
            EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
                synced := false;
            END;
        END IF;
    END LOOP;

    -- writes counted by the statistics, and storage replaced, since the last check
    FOR t IN SELECT c.oid, c.relfilenode, c.reltuples, st.n_tup_ins + st.n_tup_upd + st.n_tup_del AS writes,
                    w.writes AS seen, w.checked_at, f.relfilenode AS seen_file, mk.capture,
                    -- 'A' when every marking trigger of the table is ENABLE ALWAYS
                    (SELECT CASE WHEN bool_and(tg.tgenabled = 'A') THEN 'A' END FROM pg_trigger tg
                      WHERE tg.tgrelid = c.oid
                        AND CASE WHEN mk.capture THEN tg.tgname LIKE 'mvrefresh\_cap\_%'
                                 ELSE tg.tgname = 'mvrefresh_mark' AND tg.tgfoid = ours END) AS tgenabled,
                    CASE WHEN mk.capture THEN 'mvrefresh_cap_ins, _upd, _del and _trunc' ELSE 'mvrefresh_mark' END
                      AS trigger_names,
                    -- a statement addressed to an ancestor fires the ancestor's trigger, not this table's
                    c.oid || ARRAY(WITH RECURSIVE up(relid) AS (
                                       SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid
                                       UNION
                                       SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.relid)
                                   SELECT up.relid FROM up) AS marked_by,
                    -- the log's INSERTs, the evidence that a logged-only table's capture triggers fired
                    (SELECT ls.n_tup_ins FROM pg_stat_user_tables ls
                      WHERE ls.relid = to_regclass(format('mvrefresh.%I', 'log_' || c.oid))) AS logged,
                    w.logged AS seen_logged
               FROM (SELECT DISTINCT unnest(s.source_relids) AS relid FROM mvrefresh.view_state s) src
               JOIN pg_class c ON c.oid = src.relid AND c.relkind = 'r'
               JOIN pg_stat_user_tables st ON st.relid = c.oid
               LEFT JOIN mvrefresh.table_writes w ON w.relid = c.oid
               LEFT JOIN mvrefresh.table_files f ON f.relid = c.oid
              CROSS JOIN LATERAL (SELECT mvrefresh.logged_only(c.oid) AS capture) mk
    LOOP
        IF (t.seen IS NOT NULL AND t.writes > t.seen) OR t.relfilenode <> t.seen_file THEN
            WITH added AS (
                INSERT INTO mvrefresh.marks (view_id)
                SELECT s.id FROM mvrefresh.view_state s
                 WHERE t.oid = ANY (s.source_relids)
                   AND NOT EXISTS (SELECT FROM mvrefresh.marks m WHERE m.view_id = s.id)
                   AND NOT EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = ANY (s.source_relids))
                RETURNING marks.view_id)
            SELECT marked || array_agg(added.view_id) INTO marked FROM added;
        END IF;
        -- a rewrite (ALTER TABLE ... TYPE, a TRUNCATE that fired nothing) may change rows without a log row:
        -- the incremental views reading the table recompute in full
        IF t.relfilenode <> t.seen_file THEN
            UPDATE mvrefresh.incremental i SET needs_full = true, full_reason = 'rewrite'
             WHERE t.oid = ANY (i.sources) AND NOT i.needs_full;
        END IF;
        ch := '[]';
        IF t.relfilenode <> t.seen_file AND t.reltuples < 0 THEN
            -- the catalog is transactional: a trigger that fired for the truncate left a mark that is still
            -- there or was consumed after the last check read the old relfilenode
            evidence := EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = ANY (t.marked_by))
                     OR EXISTS (SELECT FROM mvrefresh.table_writes w
                                 WHERE w.relid = ANY (t.marked_by) AND w.last_mark_at >= t.checked_at)
                     -- a logged-only table: its TRUNCATE trigger logged a row
                     OR (t.capture AND (t.seen_logged IS NULL OR t.logged > t.seen_logged));
            IF NOT evidence THEN
                ch := ch || jsonb_build_object('relid', t.oid, 'kind', {{DRIFT_UNMARKED_TRUNCATE}}, 'change', format(
                    'truncate of %s fired no trigger (its storage was replaced and nothing marked it: TRUNCATE '
                    'with trigger %s disabled, or under session_replication_role = replica without '
                    'ENABLE ALWAYS)', t.oid::regclass,
                    CASE WHEN t.trigger_names = 'mvrefresh_mark' THEN 'mvrefresh_mark' ELSE 'mvrefresh_cap_trunc' END));
            END IF;
        END IF;
        IF t.seen IS NOT NULL AND t.writes > t.seen THEN
            evidence := EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = ANY (t.marked_by))
                     OR EXISTS (SELECT FROM mvrefresh.table_writes w
                                 WHERE w.relid = ANY (t.marked_by)
                                   AND w.last_mark_at >= t.checked_at - stats_delay)
                     -- a logged-only table: its capture triggers logged rows since the last check (both
                     -- counters are reported by the writer's backend at the same time)
                     OR (t.capture AND (t.seen_logged IS NULL OR t.logged > t.seen_logged));
            IF NOT evidence THEN
                ch := ch || jsonb_build_object('relid', t.oid, 'kind', {{DRIFT_UNMARKED_WRITES}}, 'change', format(
                    'writes to %s fired no trigger (%s rows; session_replication_role = replica%s, or DISABLE '
                    'TRIGGER while writing): %sleave trigger %s enabled during imports',
                    t.oid::regclass, t.writes - t.seen,
                    CASE WHEN t.tgenabled = 'A' THEN '' ELSE ' without ENABLE ALWAYS' END,
                    CASE WHEN t.tgenabled = 'A' THEN ''
                         ELSE format('keep it enabled ALWAYS (ALTER TABLE %s ENABLE ALWAYS TRIGGER %s, '
                                     'as the table''s owner) and ', t.oid::regclass, t.trigger_names) END,
                    t.trigger_names));
            END IF;
        END IF;
        -- events, kept for `doctor` by table and kind
        INSERT INTO mvrefresh.drift_findings AS d (relid, kind, detail)
        SELECT t.oid, e ->> 'kind', e ->> 'change' FROM jsonb_array_elements(ch) e
        ON CONFLICT (relid, kind) DO UPDATE SET detail = EXCLUDED.detail, last_seen = now();
        found := found || ch;
        -- a reading below the baseline: `watch` counted its session's writes that are not reported yet, or
        -- the statistics were reset. The baseline is kept while it may be the former, so that those writes,
        -- once reported, are not counted again
        INSERT INTO mvrefresh.table_writes AS w (relid, writes, checked_at, last_mark_at, logged)
        VALUES (t.oid, t.writes, now(),
                (SELECT CASE WHEN mvrefresh.writes_may_be_unreported() THEN now() END), t.logged)
        ON CONFLICT (relid) DO UPDATE SET writes = EXCLUDED.writes, checked_at = EXCLUDED.checked_at,
                                          logged = EXCLUDED.logged
         WHERE NOT (EXCLUDED.writes < w.writes AND w.checked_at >= now() - stats_delay);
        INSERT INTO mvrefresh.table_files AS f (relid, relfilenode) VALUES (t.oid, t.relfilenode)
        ON CONFLICT (relid) DO UPDATE SET relfilenode = EXCLUDED.relfilenode
         WHERE f.relfilenode <> EXCLUDED.relfilenode;
    END LOOP;
    DELETE FROM mvrefresh.drift_findings d WHERE d.last_seen < now() - findings_kept;

    IF need_sync THEN
        BEGIN
            PERFORM mvrefresh.sync_table_triggers();
        EXCEPTION
            WHEN lock_not_available THEN
                synced := false;
            WHEN insufficient_privilege THEN
                -- retrying soon would not help: reported on every view it concerns, and the views are
                -- still marked, so that they are refreshed
                GET STACKED DIAGNOSTICS forbidden = MESSAGE_TEXT;
                forbidden := 'triggers not brought in line: ' || forbidden;
        END;
    END IF;

    -- by view, in the order found: a table's findings go to every view that reads it
    SELECT jsonb_object_agg(x.id, jsonb_build_object('kinds', x.kinds, 'changes', x.changes)) INTO by_view
      FROM (SELECT s.id, jsonb_agg(e -> 'kind' ORDER BY e.n) AS kinds, jsonb_agg(e -> 'change' ORDER BY e.n) AS changes
              FROM jsonb_array_elements(found) WITH ORDINALITY AS e(e, n)
              JOIN mvrefresh.view_state s
                ON s.id = (e.e ->> 'view')::integer OR (e.e ->> 'relid')::oid = ANY (s.source_relids)
             GROUP BY s.id) x;
    by_view := COALESCE(by_view, '{}');

    -- the standing conditions in the views' warnings, worded as watch() words them (trigger_warning()),
    -- gone once the owner ended them
    UPDATE mvrefresh.view_state s
       SET warnings = x.warnings
      FROM (SELECT vs.id, ARRAY(SELECT w FROM unnest(vs.warnings) w WHERE w !~ '^(foreign|replica) trigger on ')
                          || ARRAY(SELECT f.e ->> 'change' FROM jsonb_array_elements(found) WITH ORDINALITY AS f(e, n)
                                    WHERE f.e ->> 'kind' = ANY (standing)
                                      AND (f.e ->> 'relid')::oid = ANY (vs.source_relids) ORDER BY f.n)
                          AS warnings
              FROM mvrefresh.view_state vs) x
     WHERE x.id = s.id AND x.warnings IS DISTINCT FROM s.warnings;

    -- views marked for writes that their triggers may well have marked too: refreshed, not reported
    PERFORM pg_notify({{CHANNEL}}, m::text)
       FROM (SELECT DISTINCT m FROM unnest(marked) m WHERE NOT by_view ? m::text) x;
    FOR v IN SELECT s.id, format('%I.%I', s.view_schema, s.view_name) AS name, by_view -> s.id::text AS what
               FROM mvrefresh.view_state s WHERE by_view ? s.id::text ORDER BY s.id LOOP
        INSERT INTO mvrefresh.marks (view_id) VALUES (v.id);
        -- an incremental view cannot trust its logs for what fired no trigger: its next apply recomputes in
        -- full (routines/apply_view.sql)
        UPDATE mvrefresh.incremental i SET needs_full = true, full_reason = 'drift'
         WHERE i.view_id = v.id AND NOT i.needs_full;
        PERFORM pg_notify({{CHANNEL}}, v.id::text);
        view_id := v.id;
        view := v.name;
        changes := ARRAY(SELECT jsonb_array_elements_text(v.what -> 'changes'));
        kinds := ARRAY(SELECT jsonb_array_elements_text(v.what -> 'kinds'));
        IF forbidden IS NOT NULL THEN
            changes := changes || forbidden;
            kinds := kinds || {{DRIFT_REPAIR_FORBIDDEN}}::text;
        END IF;
        triggers_synced := synced;
        RETURN NEXT;
    END LOOP;
    UPDATE mvrefresh.drift_check_state st SET last_ok_at = now() WHERE st.id;
END
$$;

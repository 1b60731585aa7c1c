-- Compares every watched view's sources with the catalog and repairs what differs, so that no committed
-- write is left unreflected when the sources change after `watch` or a write fires no trigger. The daemon
-- calls it every driftCheckIntervalMs, after every reconnect, and at once when the event trigger reports
-- DDL (routines/ddl_changed.sql). Returns one row per view it marked dirty, with what it found:
--  * the sources changed: a partition attached, detached, created or dropped, an inheritance child, a
--    plain view redefined, the view re-created (source_fingerprint() differs from the stored one). The
--    stored sources are updated and the view is refreshed: rows that arrived without DML (an attached
--    partition) and a new definition are both reflected by a refresh that starts after this commits;
--  * a table's trigger is missing, disabled, or no longer ENABLE ALWAYS where this role owns the table
--    (ALTER TABLE ... DISABLE / ENABLE TRIGGER ALL resets it): writes may have fired nothing;
--  * a table's write counters (pg_stat_user_tables) advanced since the last check. A view reading it that
--    has no pending mark is marked: a refresh that starts after now covers every write counted by now,
--    whether or not its trigger fired (the counters cannot tell). It is reported as a bypass only when
--    nothing shows that the trigger fired: no mark of the table now, and none consumed by a refresh cycle
--    (table_writes.last_mark_at) since the last check minus the statistics' reporting delay. Counting a
--    table starts with last_mark_at set when other sessions may hold unreported writes (here for a new
--    source, in sync_table_triggers() at `watch`): writes committed before its trigger existed, which
--    their statistics report up to that delay later (a table loaded just before it was watched), are
--    refreshed for, not reported; so is a write that fires no trigger within that delay, the counters
--    cannot tell them apart.
-- Then the triggers are brought in line (sync_table_triggers()) under p_lock_timeout_ms: CREATE TRIGGER
-- takes SHARE ROW EXCLUSIVE and must not queue in front of the application's writers. When the lock is not
-- granted, triggers_synced is false, everything else is kept, and the caller retries soon; the views are
-- refreshed meanwhile and the next check finds the trigger still missing and marks them again.
-- Raises lock_not_available when another session (watch, unwatch, another daemon's check) holds the
-- catalog lock: the caller retries.
CREATE OR REPLACE FUNCTION mvrefresh.check_drift(p_lock_timeout_ms integer)
    RETURNS TABLE (view_id integer, view text, changes text[], triggers_synced boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
    t record;
    rel regclass;
    new_relids oid[];
    fp text;
    ch text[];
    found jsonb := '{}';
    marked integer[] := '{}';
    err text;
    synced boolean := true;
    need_sync boolean := false;
    -- a backend reports its table statistics within this delay of going idle (PostgreSQL 15+)
    stats_delay interval := {{STATS_REPORT_DELAY}};
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock(mvrefresh.lock_namespace(), -1) THEN
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
        -- gone or replaced by something else: the refresh records why
        CONTINUE WHEN rel IS NULL OR (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) <> 'm';
        new_relids := ARRAY(SELECT s.relid FROM mvrefresh.view_sources(rel) s ORDER BY s.relid);
        fp := mvrefresh.source_fingerprint(rel, new_relids);
        CONTINUE WHEN fp = v.source_fingerprint;
        ch := ARRAY(SELECT 'source added: ' || r::regclass::text
                      FROM unnest(new_relids) r WHERE r <> ALL (v.source_relids) ORDER BY r)
           || ARRAY(SELECT 'source removed: ' || COALESCE((SELECT c.oid::regclass::text FROM pg_class c
                                                           WHERE c.oid = r), 'a dropped relation (oid ' || r || ')')
                      FROM unnest(v.source_relids) r WHERE r <> ALL (new_relids) ORDER BY r);
        IF cardinality(ch) = 0 AND v.source_fingerprint IS NOT NULL THEN
            ch := ARRAY['definition changed (the view, or a plain view it reads)'];
        END IF;
        INSERT INTO mvrefresh.source_fingerprints (view_id, fingerprint) VALUES (v.id, fp)
        ON CONFLICT ON CONSTRAINT source_fingerprints_pkey DO UPDATE SET fingerprint = EXCLUDED.fingerprint;
        CONTINUE WHEN v.source_relids = new_relids AND v.source_fingerprint IS NULL;
        UPDATE mvrefresh.view_state s
           SET source_relids = new_relids,
               sources = ARRAY(SELECT c.oid::regclass::text FROM pg_class c
                                WHERE c.oid = ANY (new_relids) AND c.relkind IN ('r', 'p') ORDER BY c.oid)
         WHERE s.id = v.id;
        IF cardinality(ch) > 0 THEN
            need_sync := true;
            found := found || jsonb_build_object(v.id::text, to_jsonb(ch));
        END IF;
    END LOOP;

    -- triggers missing, disabled, or not ENABLE ALWAYS where they could be
    FOR t IN SELECT c.oid, tg.tgenabled,
                    CASE WHEN tg.oid IS NULL THEN 'trigger missing on '
                         WHEN tg.tgenabled = 'D' THEN 'trigger disabled on '
                         ELSE 'trigger not ENABLE ALWAYS (changes applied by logical replication fire nothing) on '
                    END || c.oid::regclass::text AS what
               FROM (SELECT DISTINCT unnest(s.source_relids) AS relid FROM mvrefresh.view_state s) src
               JOIN pg_class c ON c.oid = src.relid AND c.relkind IN ('r', 'p')
               LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = 'mvrefresh_mark'
              WHERE tg.oid IS NULL OR tg.tgenabled = 'D'
                 OR (tg.tgenabled <> 'A' AND pg_has_role(c.relowner, 'USAGE'))
    LOOP
        need_sync := true;
        SELECT found || jsonb_object_agg(s.id::text, COALESCE(found -> s.id::text, '[]') || to_jsonb(t.what))
          INTO found
          FROM mvrefresh.view_state s WHERE t.oid = ANY (s.source_relids);
    END LOOP;

    -- writes counted by the statistics since the last check
    FOR t IN SELECT c.oid, st.n_tup_ins + st.n_tup_upd + st.n_tup_del AS writes, w.writes AS seen,
                    w.checked_at, w.last_mark_at
               FROM (SELECT DISTINCT unnest(s.source_relids) AS relid FROM mvrefresh.view_state s) src
               JOIN pg_class c ON c.oid = src.relid AND c.relkind = 'r'
               JOIN pg_stat_user_tables st ON st.relid = c.oid
               LEFT JOIN mvrefresh.table_writes w ON w.relid = c.oid
    LOOP
        IF t.seen IS NOT NULL AND t.writes > t.seen THEN
            WITH added AS (
                INSERT INTO mvrefresh.marks (view_id)
                SELECT s.id FROM mvrefresh.view_state s
                 WHERE t.oid = ANY (s.source_relids)
                   AND NOT EXISTS (SELECT FROM mvrefresh.marks m WHERE m.view_id = s.id)
                   AND NOT EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = ANY (s.source_relids))
                RETURNING marks.view_id)
            SELECT marked || array_agg(added.view_id) INTO marked FROM added;
            IF NOT EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = t.oid)
               AND NOT COALESCE(t.last_mark_at >= t.checked_at - stats_delay, false) THEN
                SELECT found || jsonb_object_agg(s.id::text, COALESCE(found -> s.id::text, '[]') || to_jsonb(
                           format('writes to %s fired no trigger (%s rows; session_replication_role = replica '
                                  'without ENABLE ALWAYS, or DISABLE TRIGGER while writing): keep trigger '
                                  'mvrefresh_mark enabled ALWAYS (ALTER TABLE %s ENABLE ALWAYS TRIGGER '
                                  'mvrefresh_mark, as the table''s owner) and leave it enabled during imports',
                                  t.oid::regclass, t.writes - t.seen, t.oid::regclass)))
                  INTO found
                  FROM mvrefresh.view_state s WHERE t.oid = ANY (s.source_relids);
            END IF;
        END IF;
        -- a reading below the baseline: `watch` counted its session's writes that are not reported yet, or
        -- the statistics were reset. The baseline is kept while it may be the former, so that those writes,
        -- once reported, are not counted again
        INSERT INTO mvrefresh.table_writes AS w (relid, writes, checked_at, last_mark_at)
        VALUES (t.oid, t.writes, now(),
                (SELECT CASE WHEN mvrefresh.writes_may_be_unreported() THEN now() END))
        ON CONFLICT (relid) DO UPDATE SET writes = EXCLUDED.writes, checked_at = EXCLUDED.checked_at
         WHERE NOT (EXCLUDED.writes < w.writes AND w.checked_at >= now() - stats_delay);
    END LOOP;

    IF need_sync THEN
        BEGIN
            PERFORM mvrefresh.sync_table_triggers();
        EXCEPTION
            WHEN lock_not_available THEN
                synced := false;
            WHEN insufficient_privilege THEN
                -- retrying soon would not help: reported on every view it concerns, and the views are
                -- still marked, so that they are refreshed
                GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
                SELECT found || jsonb_object_agg(k, found -> k || to_jsonb('triggers not brought in line: ' || err))
                  INTO found FROM jsonb_object_keys(found) k;
        END;
    END IF;

    -- views marked for writes that their triggers may well have marked too: refreshed, not reported
    PERFORM pg_notify({{CHANNEL}}, m::text)
       FROM (SELECT DISTINCT m FROM unnest(marked) m WHERE NOT found ? m::text) x;
    FOR v IN SELECT s.id, format('%I.%I', s.view_schema, s.view_name) AS name, found -> s.id::text AS what
               FROM mvrefresh.view_state s WHERE found ? s.id::text ORDER BY s.id LOOP
        INSERT INTO mvrefresh.marks (view_id) VALUES (v.id);
        PERFORM pg_notify({{CHANNEL}}, v.id::text);
        view_id := v.id;
        view := v.name;
        changes := ARRAY(SELECT jsonb_array_elements_text(v.what));
        triggers_synced := synced;
        RETURN NEXT;
    END LOOP;
END
$$;

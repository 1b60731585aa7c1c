-- The apply of an incremental view (mvrefresh watch --incremental): tx2 of refresh_view() for such a view,
-- in place of REFRESH. Called at REPEATABLE READ, under the view's advisory lock, after the cycle's wait.
--
-- State: incremental.applied_snapshot (S_a), written only by the apply's own transaction (and by the
-- transaction that populated the table at watch time).
--  A  The table's rows equal the definition evaluated in S_a (as the view's owner).
--  L  A log row is inserted by its writer's AFTER statement trigger, in the writer's transaction, with the
--     writer's top-level transaction id (src/incremental/capture.ts): it commits, aborts, or is rolled back
--     to a savepoint together with the rows it describes; a prepared transaction's rows and log rows become
--     visible together at COMMIT PREPARED.
--  C  An apply with snapshot S reads the sources and the logs in the one snapshot S (REPEATABLE READ). It
--     consumes the log rows whose transaction S_a does not show (NOT pg_visible_in_snapshot(xid, S_a)); S
--     shows only committed ones, so it consumes exactly the writes committed in S and not in S_a. The keys
--     those rows may affect (analyze.ts: a superset of the keys whose rows differ between def(S_a) and
--     def(S)) are recomputed from the definition in S, so the table equals def(S) afterwards, and S_a := S
--     in the same transaction: A holds again. A failed, killed or rolled-back apply changes neither the
--     table nor S_a; the next one does the same work again (idempotent).
--  E  Exactly once: a transaction visible in S_a is visible in every later snapshot, and applies of one view
--     run one at a time (advisory lock) with growing snapshots.
--  Liveness: the write's log row keeps the view behind until an apply shows it (capture_logs.sql: the
--     daemon's poll, due_views() and the cycle's tx1 look for it), and the cycle of refresh_view.sql it
--     starts runs a tx2 whose snapshot was taken after the write committed, as for a REFRESH; that tx2
--     is an apply, and C consumes the write.
--  Writes that fire no trigger (a disabled trigger, session_replication_role = replica where the trigger
--     is not ALWAYS, an attached partition) leave no log row: check_drift() finds them as for any view and
--     sets needs_full, and the next apply recomputes the whole view (correct from any state).
--  TRUNCATE logs a row with mvr_trunc: the apply recomputes in full.
--  Pruning: a log row is deleted once its transaction is visible in the S_a of every incremental view
--     reading the table. A view being made incremental registers a snapshot taken after its capture
--     triggers exist, before its table is populated, so no row it needs is pruned.
-- A full recompute (TRUNCATE, needs_full, more keys than the threshold) evaluates the definition into a
-- temporary table and rewrites only the rows that differ (like REFRESH CONCURRENTLY): readers never wait.
-- The keys are computed and the table written as the view's owner (set_config('role')), so row-level
-- security and grants apply as in a REFRESH by the owner; the batch is copied from the logs, which only
-- mvrefresh's roles read, into temporary tables granted to the owner.
-- Those temporary tables (the view's keys table mvrefresh_keys_<view id>, one per view so that views of
-- different keys applied in one session do not replace each other's; mvr_b_<source oid>) stay for the
-- session, ON COMMIT DELETE ROWS (creating, granting, analyzing and dropping one cost 1-2 ms of each
-- apply). An apply empties them first (verify's
-- repair runs two applies in one transaction) and uses one only when its columns are the ones this view
-- needs (the view's key columns, the source's log columns), else recreates it; no row of theirs is visible
-- once the apply's transaction ended (emptied at commit, dead after a rollback), they hold only this
-- session's rows (no other session reads a temporary table), and the owners they
-- are granted to run nothing in this session but applies (a grant stays for the session: DROP ROLE of
-- such an owner needs DROP OWNED BY first, docs/operations.md). A source without log rows in the batch
-- has no key query (its changes affect no key).
-- A delta view (src/incremental/delta.ts) adds its fact's changes to the groups instead of recomputing
-- them; the groups other sources' changes touch, and groups with a NULL key, are recomputed by key. The
-- delta is computed in the same snapshot S against the dimensions as they are in S, which is right for every
-- fact row whose dimension rows did not change; the groups of the others are recomputed: C holds.
-- Returns how it applied ('keys', 'delta' or 'full: <reason>') and the number of keys (groups).
CREATE OR REPLACE FUNCTION mvrefresh.apply_view(
    p_view_id integer,
    p_rel oid,
    p_owner oid,
    p_force_full text DEFAULT NULL,
    OUT kind text,
    OUT keys integer)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inc mvrefresh.incremental;
    snap pg_catalog.pg_snapshot := pg_catalog.pg_current_snapshot();
    src pg_catalog.oid;
    owner_name pg_catalog.text := pg_catalog.pg_get_userbyid(p_owner);
    reason pg_catalog.text := p_force_full;
    q pg_catalog.text;
    t0 pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    ms pg_catalog.float8;
    view_rows pg_catalog.float8;
    truncated pg_catalog.bool;
    delta pg_catalog.jsonb;
    src_key pg_catalog.text;
    delta_rows pg_catalog.int4 := 0;
    null_keys pg_catalog.bool;
    rows_from pg_catalog.text;
    batch pg_catalog.text;
    batch_rows pg_catalog.int8;
    changed pg_catalog.text[] := '{}';
    key_rows pg_catalog.int8;
    analyzed_rows pg_catalog.float4;
    rpc pg_catalog.text;
    keys_table pg_catalog.text;
    below pg_catalog.xid8;
    above pg_catalog.xid8;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'repeatable read' THEN
        RAISE EXCEPTION 'apply_view() must run at REPEATABLE READ (one snapshot for the logs and the sources)'
            USING ERRCODE = 'active_sql_transaction';
    END IF;
    SELECT * INTO inc FROM mvrefresh.incremental i WHERE i.view_id OPERATOR(pg_catalog.=) p_view_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'view % is not an incremental view', p_view_id USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM mvrefresh.begin_apply(p_rel);
    -- the temporary tables' DROP ... IF EXISTS say nothing to the caller's log
    PERFORM pg_catalog.set_config('client_min_messages', 'warning', true);
    -- TRUNCATE and table rewrites are not MVCC-safe: a snapshot taken before one commits sees the table
    -- empty afterwards. This transaction's snapshot was taken before it could lock the sources, so it
    -- locks them (after any TRUNCATE or rewrite in progress) and gives up when one was rewritten since its
    -- snapshot: the cycle stays unfinished and is retried with a new snapshot
    FOREACH src IN ARRAY inc.sources LOOP
        EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS SHARE MODE', src::pg_catalog.regclass);
        IF pg_catalog.pg_relation_filenode(src) IS DISTINCT FROM
           (SELECT c.relfilenode FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) src) THEN
            RAISE EXCEPTION '% was truncated or rewritten after this apply''s snapshot was taken; retried',
                src::pg_catalog.regclass USING ERRCODE = 'serialization_failure';
        END IF;
    END LOOP;
    -- a second apply in one transaction (verify's repair) starts without the first one's tables
    IF pg_catalog.to_regclass('pg_temp.mvrefresh_full') IS NOT NULL THEN
        DROP TABLE pg_temp.mvrefresh_full;
    END IF;
    IF pg_catalog.to_regclass('pg_temp.mvrefresh_delta') IS NOT NULL THEN
        DROP TABLE pg_temp.mvrefresh_delta;
    END IF;
    IF reason IS NULL AND inc.needs_full THEN
        reason := COALESCE(inc.full_reason, 'drift');
    ELSIF reason IS NULL AND inc.applied_snapshot IS NULL THEN
        reason := 'no applied snapshot';
    END IF;
    -- the keys table: the view's key columns (statements stored before it was kept say ON COMMIT DROP)
    -- one per view (statements' keysName); registrations of earlier versions share mvrefresh_keys
    keys_table := 'pg_temp.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(
        COALESCE(inc.statements OPERATOR(pg_catalog.->>) 'keysName', 'mvrefresh_keys'));
    IF mvrefresh.temp_table_fits(keys_table, p_rel, inc.key_columns) THEN
        EXECUTE 'DELETE FROM ' OPERATOR(pg_catalog.||) keys_table;
    ELSE
        EXECUTE 'DROP TABLE IF EXISTS ' OPERATOR(pg_catalog.||) keys_table;
        EXECUTE pg_catalog.regexp_replace(inc.statements OPERATOR(pg_catalog.->>) 'keysTable',
                                          ' ON COMMIT DROP$', ' ON COMMIT DELETE ROWS');
    END IF;
    IF NOT pg_catalog.has_table_privilege(p_owner, keys_table, 'SELECT')
       OR NOT pg_catalog.has_table_privilege(p_owner, keys_table, 'INSERT') THEN
        EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON %s TO %I', keys_table, owner_name);
    END IF;
    -- a delta adds every change the log holds; under a row-level security policy the owner sees some rows
    -- only, which only a recompute as the owner gives (a view made incremental under the policy has no
    -- delta plan: analyze.ts): a policy that came later makes every apply a full recompute
    IF reason IS NULL AND inc.statements OPERATOR(pg_catalog.?) 'delta' THEN
        PERFORM pg_catalog.set_config('role', owner_name, true);
        IF EXISTS (SELECT FROM pg_catalog.unnest(inc.sources) s(oid) WHERE pg_catalog.row_security_active(s.oid::pg_catalog.regclass)) THEN
            reason := 'row-level security';
        END IF;
        PERFORM pg_catalog.set_config('role', 'none', true);
    END IF;
    IF reason IS NULL THEN
        -- the batch of each source, for the owner's key queries (each key query reads every source's)
        FOREACH src IN ARRAY inc.sources LOOP
            batch := 'mvr_b_' OPERATOR(pg_catalog.||) src;
            IF mvrefresh.temp_table_fits('pg_temp.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(batch),
                                         pg_catalog.format('mvrefresh.%I', 'log_' OPERATOR(pg_catalog.||) src)::pg_catalog.regclass,
                                         NULL) THEN
                EXECUTE pg_catalog.format('DELETE FROM pg_temp.%I', batch);
            ELSE
                EXECUTE pg_catalog.format('DROP TABLE IF EXISTS pg_temp.%I', batch);
                EXECUTE pg_catalog.format('CREATE TEMP TABLE %I (LIKE mvrefresh.%I) ON COMMIT DELETE ROWS',
                                          batch, 'log_' OPERATOR(pg_catalog.||) src);
            END IF;
            EXECUTE pg_catalog.format(
                'WITH b AS (INSERT INTO pg_temp.%I SELECT * FROM mvrefresh.%I l WHERE l.mvr_xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1) AND NOT pg_catalog.pg_visible_in_snapshot(l.mvr_xid, $1) RETURNING mvr_trunc) '
                'SELECT pg_catalog.count(*), COALESCE(pg_catalog.bool_or(b.mvr_trunc), false) FROM b',
                batch, 'log_' OPERATOR(pg_catalog.||) src) USING inc.applied_snapshot INTO batch_rows, truncated;
            IF truncated THEN
                reason := 'truncate';
            ELSIF batch_rows OPERATOR(pg_catalog.>) 0 THEN
                changed := changed OPERATOR(pg_catalog.||) src::pg_catalog.text;
            END IF;
            IF NOT pg_catalog.has_table_privilege(p_owner, ('pg_temp.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(batch))::pg_catalog.regclass, 'SELECT') THEN
                EXECUTE pg_catalog.format('GRANT SELECT ON pg_temp.%I TO %I', batch, owner_name);
            END IF;
        END LOOP;
    END IF;
    IF reason IS NULL THEN
        -- by key, every statement reads a batch's share of the sources and of the view through indexes that
        -- every apply touches (the view's key, the sources' keys and join columns): priced as reads from
        -- disk, the planner hashes a whole table instead (community_day's delta: all 500 000 posts hashed,
        -- 59-180 ms, against 21 ms for 3 500 probes of their key; its upsert: the whole view against a few
        -- hundred probes). Priced as cached reads, it still hashes for a batch that is a large share of a
        -- table. A full recompute keeps the session's setting
        rpc := pg_catalog.current_setting('random_page_cost');
        PERFORM pg_catalog.set_config('random_page_cost',
            LEAST(rpc::pg_catalog.float8, {{APPLY_RANDOM_PAGE_COST}})::pg_catalog.text, true);
        -- a delta view (src/incremental/delta.ts): the fact's changes become deltas, the other sources'
        -- changes and groups with a NULL key are recomputed by key; a source that did not change affects
        -- no key
        delta := inc.statements OPERATOR(pg_catalog.->) 'delta';
        -- the view's size, for the threshold (apply_over_threshold(), looked at once or twice below)
        SELECT GREATEST(c.reltuples, 0) INTO view_rows FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) p_rel;
        PERFORM pg_catalog.set_config('role', owner_name, true);
        FOR src_key, q IN SELECT e.key, e.value FROM pg_catalog.jsonb_each_text(inc.statements OPERATOR(pg_catalog.->) 'keys') e LOOP
            CONTINUE WHEN src_key OPERATOR(pg_catalog.=) (delta OPERATOR(pg_catalog.->>) 'fact')
                       OR NOT src_key OPERATOR(pg_catalog.=) ANY (changed);
            EXECUTE q;
        END LOOP;
        IF delta IS NOT NULL AND (delta OPERATOR(pg_catalog.->>) 'fact') OPERATOR(pg_catalog.=) ANY (changed) THEN
            EXECUTE delta OPERATOR(pg_catalog.->>) 'build';
            -- every group of the delta ends in it or in the keys table (moveNullKeys, dropRecomputed): the
            -- apply has at least as many keys as the delta has groups. When the groups alone pass the
            -- threshold, the apply recomputes in full as it would after the rest, which is skipped: the work
            -- that grows with the batch (the multiset, the probes: an index scan per group and value, a
            -- million of them after a bulk load)
            SELECT pg_catalog.count(*) INTO delta_rows FROM pg_temp.mvrefresh_delta;
            PERFORM pg_catalog.set_config('role', 'none', true);
            IF mvrefresh.apply_over_threshold(delta_rows, inc.est_key_ms, inc.last_full_ms, view_rows, true) THEN
                reason := 'threshold';
            ELSE
                PERFORM pg_catalog.set_config('role', owner_name, true);
                IF delta OPERATOR(pg_catalog.?) 'distinct' THEN
                    -- the owner may not use mvrefresh's schema: the call is mvrefresh's, and returns as the owner
                    PERFORM pg_catalog.set_config('role', 'none', true);
                    PERFORM mvrefresh.apply_distinct(delta OPERATOR(pg_catalog.->) 'distinct', owner_name, false);
                ELSIF delta OPERATOR(pg_catalog.?) 'probe' THEN
                    -- before the ANALYZE, like the multiset's: analyzed with the distinct column still 0, the
                    -- upsert took no group for new (count > 0) and anti-joined them row by row (22 000 groups: 21 s)
                    PERFORM pg_catalog.set_config('role', 'none', true);
                    PERFORM mvrefresh.apply_probe(delta OPERATOR(pg_catalog.->) 'probe', owner_name);
                END IF;
                -- without statistics the planner takes it for 1 000 rows or more and joins it to the whole view
                -- (analyzed once complete: with the distinct column's changes)
                ANALYZE pg_temp.mvrefresh_delta;
                EXECUTE delta OPERATOR(pg_catalog.->>) 'moveNullKeys';
                EXECUTE delta OPERATOR(pg_catalog.->>) 'dropRecomputed';
                SELECT pg_catalog.count(*) INTO delta_rows FROM pg_temp.mvrefresh_delta;
            END IF;
        END IF;
        PERFORM pg_catalog.set_config('role', 'none', true);
        IF reason IS NULL THEN
            EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) OPERATOR(pg_catalog.+) $1 FROM (SELECT DISTINCT * FROM %s) k', keys_table)
                USING delta_rows INTO keys;
            IF mvrefresh.apply_over_threshold(keys, inc.est_key_ms, inc.last_full_ms, view_rows, delta IS NOT NULL) THEN
                reason := 'threshold';
            END IF;
        END IF;
        IF reason IS NOT NULL THEN
            EXECUTE 'TRUNCATE ' OPERATOR(pg_catalog.||) keys_table;
        END IF;
    END IF;
    PERFORM pg_catalog.set_config('role', owner_name, true);
    IF reason IS NOT NULL AND rpc IS NOT NULL THEN
        PERFORM pg_catalog.set_config('random_page_cost', rpc, true);
    END IF;
    IF reason IS NOT NULL THEN
        EXECUTE 'CREATE TEMP TABLE mvrefresh_full ON COMMIT DROP AS ' OPERATOR(pg_catalog.||) inc.definition;
        -- without statistics the planner takes the temporary table for a small one: nested loops
        ANALYZE pg_temp.mvrefresh_full;
        IF inc.statements OPERATOR(pg_catalog.->) 'delta' OPERATOR(pg_catalog.?) 'distinct' THEN
            PERFORM pg_catalog.set_config('role', 'none', true);
            PERFORM mvrefresh.apply_distinct(inc.statements OPERATOR(pg_catalog.#>) '{delta,distinct}', owner_name, true);
        END IF;
        EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'fullKeys';
        EXECUTE 'SELECT pg_catalog.count(*) FROM ' OPERATOR(pg_catalog.||) keys_table INTO keys;
        rows_from := 'insertFull';
        kind := 'full: ' OPERATOR(pg_catalog.||) reason;
    ELSE
        rows_from := 'insert';
        kind := CASE WHEN delta IS NULL THEN 'keys' ELSE 'delta' END;
    END IF;
    -- the keys' rows replaced: from the definition, or from the full recompute
    EXECUTE 'SELECT pg_catalog.count(*) FROM ' OPERATOR(pg_catalog.||) keys_table INTO key_rows;
    IF key_rows OPERATOR(pg_catalog.>) 0 THEN
        -- without statistics the planner takes it for a table of 10 pages and joins it to the whole view;
        -- statistics of a batch of about this size (within a factor of 2) serve as well as new ones, which
        -- a large batch needs (a full recompute of 100 000 keys). Analyzed by its owner, this role
        SELECT c.reltuples INTO analyzed_rows FROM pg_catalog.pg_class c
         WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(keys_table);
        IF NOT (analyzed_rows OPERATOR(pg_catalog.>=) (key_rows OPERATOR(pg_catalog./) 2.0)
                AND analyzed_rows OPERATOR(pg_catalog.<=) (key_rows OPERATOR(pg_catalog.*) 2.0)) THEN
            PERFORM pg_catalog.set_config('role', 'none', true);
            EXECUTE 'ANALYZE ' OPERATOR(pg_catalog.||) keys_table;
            PERFORM pg_catalog.set_config('role', owner_name, true);
        END IF;
        EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'hasNullKeys' INTO null_keys;
        -- by key from the definition: one statement that writes only the rows that changed (analyze.ts,
        -- replaceStatement()), unless a unique index of the table reads a column that is not a key column
        -- (an update in place could break it for a moment) or the view was registered without it
        IF rows_from OPERATOR(pg_catalog.=) 'insert' AND inc.statements OPERATOR(pg_catalog.?) 'replace'
           AND NOT EXISTS (
               SELECT FROM pg_catalog.pg_index i
                WHERE i.indrelid OPERATOR(pg_catalog.=) p_rel AND i.indisunique
                  AND (i.indexprs IS NOT NULL OR EXISTS (
                       SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) p_rel
                          AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[])
                          AND NOT a.attname OPERATOR(pg_catalog.=) ANY (inc.key_columns)))) THEN
            EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'replace';
            IF null_keys THEN
                EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'deleteNull';
                EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'insertNull';
            END IF;
        ELSE
            EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'delete';
            IF null_keys THEN
                EXECUTE inc.statements OPERATOR(pg_catalog.->>) 'deleteNull';
            END IF;
            EXECUTE inc.statements OPERATOR(pg_catalog.->>) rows_from;
            IF null_keys THEN
                EXECUTE inc.statements OPERATOR(pg_catalog.->>) (rows_from OPERATOR(pg_catalog.||) 'Null');
            END IF;
        END IF;
    END IF;
    IF reason IS NULL AND delta_rows OPERATOR(pg_catalog.>) 0 THEN
        IF delta OPERATOR(pg_catalog.?) 'upsert' THEN
            EXECUTE delta OPERATOR(pg_catalog.->>) 'upsert';
        ELSE
            -- registered by an earlier version (analyze.ts, DeltaStatements)
            EXECUTE delta OPERATOR(pg_catalog.->>) 'update';
            EXECUTE delta OPERATOR(pg_catalog.->>) 'insert';
            EXECUTE delta OPERATOR(pg_catalog.->>) 'deleteEmpty';
        END IF;
    END IF;
    PERFORM pg_catalog.set_config('role', 'none', true);
    IF rpc IS NOT NULL THEN
        PERFORM pg_catalog.set_config('random_page_cost', rpc, true);
    END IF;
    ms := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) t0) OPERATOR(pg_catalog.*) 1000;
    UPDATE mvrefresh.incremental i
       SET applied_snapshot = snap,
           needs_full = false,
           full_reason = NULL,
           est_key_ms = CASE WHEN kind OPERATOR(pg_catalog.=) ANY ('{keys,delta}') AND keys OPERATOR(pg_catalog.>) 0
                             THEN COALESCE((0.8 OPERATOR(pg_catalog.*) i.est_key_ms) OPERATOR(pg_catalog.+) (0.2 OPERATOR(pg_catalog.*) (ms OPERATOR(pg_catalog./) keys)),
                                           ms OPERATOR(pg_catalog./) keys)
                             ELSE i.est_key_ms END,
           last_full_ms = CASE WHEN kind OPERATOR(pg_catalog.<>) ALL ('{keys,delta}') THEN ms ELSE i.last_full_ms END,
           last_apply_kind = kind,
           last_apply_keys = keys,
           last_apply_ms = ms,
           last_apply_at = pg_catalog.clock_timestamp()
     WHERE i.view_id OPERATOR(pg_catalog.=) p_view_id;
    -- prune what every view reading the source has applied (its transaction is visible in each one's S_a;
    -- a view without one needs a full recompute and holds nothing); a concurrent prune of the same rows by
    -- another view's apply (a serialization failure at this level) leaves them to the next one. Moving S_a
    -- to S makes only the batch's rows prunable: a source with an empty batch has nothing new to prune.
    -- Nor has an apply while another view of the source is behind it: a snapshot with a smaller xmax was
    -- taken earlier, so it shows none of the batch's transactions (not shown by the old S_a, a later
    -- snapshot); that view's apply prunes them. Every view of a source applies its batch (a write marks
    -- them all), so the one furthest behind prunes for all of them
    -- A transaction id below a snapshot's xmin is visible in it, and none at or above its xmax is: below the
    -- smallest xmin of those snapshots a row is prunable without looking at each one, at or above the
    -- smallest xmax it is not (a view without one holds nothing), and only the rows between are checked
    -- view by view (the concurrent transactions of the oldest snapshot: a few, where the check of each
    -- log row cost 5-8 us and was most of the prune)
    FOREACH src IN ARRAY inc.sources LOOP
        CONTINUE WHEN kind OPERATOR(pg_catalog.=) ANY ('{keys,delta}') AND NOT src::pg_catalog.text OPERATOR(pg_catalog.=) ANY (changed);
        CONTINUE WHEN EXISTS (
            SELECT FROM mvrefresh.incremental i
             WHERE src OPERATOR(pg_catalog.=) ANY (i.sources) AND i.view_id OPERATOR(pg_catalog.<>) p_view_id
               AND pg_catalog.pg_snapshot_xmax(i.applied_snapshot) OPERATOR(pg_catalog.<)
                   pg_catalog.pg_snapshot_xmax(inc.applied_snapshot));
        -- (the first of each sorted array, not min(): PostgreSQL 14 has no min(xid8))
        SELECT (pg_catalog.array_agg(pg_catalog.pg_snapshot_xmin(v.s) ORDER BY pg_catalog.pg_snapshot_xmin(v.s)))[1],
               (pg_catalog.array_agg(pg_catalog.pg_snapshot_xmax(v.s) ORDER BY pg_catalog.pg_snapshot_xmax(v.s)))[1]
          INTO below, above
          FROM (SELECT CASE WHEN i.view_id OPERATOR(pg_catalog.=) p_view_id THEN snap ELSE i.applied_snapshot END
                  FROM mvrefresh.incremental i WHERE src OPERATOR(pg_catalog.=) ANY (i.sources)) v(s)
         WHERE v.s IS NOT NULL;
        BEGIN
            EXECUTE pg_catalog.format(
                'DELETE FROM mvrefresh.%I l WHERE l.mvr_xid OPERATOR(pg_catalog.<) $4 '
                'AND (l.mvr_xid OPERATOR(pg_catalog.<) $5 '
                'OR NOT EXISTS (SELECT FROM mvrefresh.incremental i WHERE $2 OPERATOR(pg_catalog.=) ANY (i.sources) '
                'AND NOT pg_catalog.pg_visible_in_snapshot(l.mvr_xid, CASE WHEN i.view_id OPERATOR(pg_catalog.=) $3 '
                'THEN $1 ELSE i.applied_snapshot END)))',
                'log_' OPERATOR(pg_catalog.||) src) USING snap, src, p_view_id, above, below;
        EXCEPTION WHEN serialization_failure OR lock_not_available THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- The multiset of a count(DISTINCT) delta view (src/incremental/delta.ts, analyze.ts DistinctStatements),
-- called by apply_view() as the view's owner p_owner, in whose role it returns. mvrefresh's role creates
-- the temporary tables and writes the multiset; the owner computes what goes in (as it computes the
-- delta), into those tables granted to it. p_full: rebuild it from the definition (a full recompute, in the
-- apply's snapshot), else add the batch (pg_temp.mvr_b_*) to it and set the distinct column of
-- pg_temp.mvrefresh_delta to each group's change.
CREATE OR REPLACE FUNCTION mvrefresh.apply_distinct(p_st jsonb, p_owner text, p_full boolean)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q pg_catalog.text;
BEGIN
    PERFORM pg_catalog.set_config('role', 'none', true);
    IF p_full THEN
        DROP TABLE IF EXISTS pg_temp.mvrefresh_dd, pg_temp.mvrefresh_dc;
        PERFORM mvrefresh.distinct_from_definition(p_st, p_owner);
        FOR q IN SELECT pg_catalog.jsonb_array_elements_text(p_st OPERATOR(pg_catalog.->) 'replace') LOOP
            EXECUTE q;
        END LOOP;
    ELSE
        PERFORM mvrefresh.distinct_batch(p_st, p_owner, 'INSERT', 'SELECT');
        PERFORM pg_catalog.set_config('role', 'none', true);
        -- without statistics the planner joins it to the whole multiset
        ANALYZE pg_temp.mvrefresh_dd;
        EXECUTE p_st OPERATOR(pg_catalog.->>) 'add';
        EXECUTE p_st OPERATOR(pg_catalog.->>) 'dropZero';
        PERFORM pg_catalog.set_config('role', p_owner, true);
        EXECUTE p_st OPERATOR(pg_catalog.->>) 'setDelta';
    END IF;
    PERFORM pg_catalog.set_config('role', p_owner, true);
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.apply_distinct(jsonb, text, boolean) FROM PUBLIC;

-- The change of a count(DISTINCT) delta view's distinct count per group of the batch, by probes of its fact
-- (statements.ts ProbeStatements: exact without a multiset), called like apply_distinct() and returning as
-- the owner p_owner: mvrefresh's role creates the temporary tables, the owner fills them, reading the batch
-- and the fact as in a REFRESH, and sets the distinct column of pg_temp.mvrefresh_delta.
CREATE OR REPLACE FUNCTION mvrefresh.apply_probe(p_st jsonb, p_owner text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mvrefresh.distinct_batch(p_st, p_owner, 'SELECT, INSERT', 'SELECT, INSERT');
    EXECUTE p_st OPERATOR(pg_catalog.->>) 'probe';
    EXECUTE p_st OPERATOR(pg_catalog.->>) 'setDelta';
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.apply_probe(jsonb, text) FROM PUBLIC;

-- What apply_distinct() and apply_probe() share: pg_temp.mvrefresh_dd and mvrefresh_dc created afresh by
-- mvrefresh's role (p_st's batchTables), granted to the owner p_owner with the privileges each caller's
-- statements need (p_dd, p_dc: a GRANT's privilege list), and the batch's net counts written into dd as
-- the owner. Called with no role set; returns as the owner.
CREATE OR REPLACE FUNCTION mvrefresh.distinct_batch(p_st jsonb, p_owner text, p_dd text, p_dc text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q pg_catalog.text;
BEGIN
    DROP TABLE IF EXISTS pg_temp.mvrefresh_dd, pg_temp.mvrefresh_dc;
    FOR q IN SELECT pg_catalog.jsonb_array_elements_text(p_st OPERATOR(pg_catalog.->) 'batchTables') LOOP
        EXECUTE q;
    END LOOP;
    EXECUTE pg_catalog.format('GRANT %s ON pg_temp.mvrefresh_dd TO %I', p_dd, p_owner);
    EXECUTE pg_catalog.format('GRANT %s ON pg_temp.mvrefresh_dc TO %I', p_dc, p_owner);
    PERFORM pg_catalog.set_config('role', p_owner, true);
    EXECUTE p_st OPERATOR(pg_catalog.->>) 'batch';
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.distinct_batch(jsonb, text, text, text) FROM PUBLIC;

-- The multiset of a count(DISTINCT) delta view as its definition gives it (p_st: its DistinctStatements),
-- into pg_temp.mvrefresh_dfull (ON COMMIT DROP), computed as the view's owner p_owner (RLS and grants as in a
-- REFRESH) into the table mvrefresh's role created: for apply_distinct()'s rebuild and for verify.sql's
-- comparison. Called and returns with no role set.
CREATE OR REPLACE FUNCTION mvrefresh.distinct_from_definition(p_st jsonb, p_owner text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DROP TABLE IF EXISTS pg_temp.mvrefresh_dfull;
    EXECUTE p_st OPERATOR(pg_catalog.->>) 'fullTable';
    EXECUTE pg_catalog.format('GRANT INSERT ON pg_temp.mvrefresh_dfull TO %I', p_owner);
    PERFORM pg_catalog.set_config('role', p_owner, true);
    EXECUTE p_st OPERATOR(pg_catalog.->>) 'full';
    PERFORM pg_catalog.set_config('role', 'none', true);
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.distinct_from_definition(jsonb, text) FROM PUBLIC;

-- Whether an apply of p_keys keys (groups, for a delta view: p_delta) costs more than a full recompute of
-- the view (p_view_rows rows): past 1 000 keys, the measured cost per key (p_est_key_ms, a moving average of
-- the applies by key) against the last full recompute's (p_last_full_ms); before any measurement, 5% of the
-- view, or half of it for a delta view, whose groups cost a row update each where a full recompute
-- evaluates the whole definition. Grows with p_keys: a lower bound that passes it, the true count passes it.
CREATE OR REPLACE FUNCTION mvrefresh.apply_over_threshold(
    p_keys bigint, p_est_key_ms double precision, p_last_full_ms double precision,
    p_view_rows double precision, p_delta boolean)
    RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN p_keys OPERATOR(pg_catalog.>) 1000 AND CASE
        WHEN p_est_key_ms IS NOT NULL AND p_last_full_ms IS NOT NULL
        THEN (p_est_key_ms OPERATOR(pg_catalog.*) p_keys) OPERATOR(pg_catalog.>) (0.5 OPERATOR(pg_catalog.*) p_last_full_ms)
        ELSE p_keys OPERATOR(pg_catalog.>) (CASE WHEN p_delta THEN 0.5 ELSE 0.05 END OPERATOR(pg_catalog.*) p_view_rows) END;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.apply_over_threshold(bigint, double precision, double precision, double precision, boolean) FROM PUBLIC;

-- Whether the temporary table p_name exists with exactly the columns (names, types, in order) of p_like,
-- or of its columns p_columns when given: a table kept for the session is used only in that shape.
-- (PL/pgSQL: its plan is kept for the session, where a SQL function with a SET clause is planned per call.)
CREATE OR REPLACE FUNCTION mvrefresh.temp_table_fits(p_name text, p_like oid, p_columns name[])
    RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN COALESCE(
        (SELECT pg_catalog.array_agg(ROW(a.attname, a.atttypid, a.atttypmod) ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(p_name)
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
        OPERATOR(pg_catalog.=)
        (SELECT pg_catalog.array_agg(ROW(a.attname, a.atttypid, a.atttypmod)
                                     ORDER BY COALESCE(pg_catalog.array_position(p_columns, a.attname), a.attnum))
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid OPERATOR(pg_catalog.=) p_like
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            AND (p_columns IS NULL OR a.attname OPERATOR(pg_catalog.=) ANY (p_columns))),
        false);
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.temp_table_fits(text, oid, name[]) FROM PUBLIC;

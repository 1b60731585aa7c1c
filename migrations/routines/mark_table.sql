-- The mark step: one per writing statement on a watched table, whatever the number of views reading it.
-- mvrefresh_mark (mark_table(), below) runs it on every table a materialized view reads. A table that
-- only incremental views read has no mark step: its capture triggers (src/incremental/capture.ts) write
-- its log, from which those views are due (routines/capture_logs.sql, logged_only();
-- sync_table_triggers.sql places the triggers). It runs in every writing statement of the application, so
-- it does as little as it can, and only once the statement has written something (the transaction has an
-- xid). Step 1 is inlined in each trigger function (MARK_MEMO_HIT of src/db/protocol.ts: one text for
-- all of them); mark_relid() holds steps 2 and 3, called only when step 1 misses.
--
-- In every writing statement:
--  1. when this session remembers a committed mark of the table, found while clears_started had the value
--     it still has, skip: one expression (a setting, a sequence read, a hash), no query;
--  2. at READ COMMITTED, probe for a mark of the table (one index scan); when there is one, skip, and
--     remember it if it is committed (another transaction's) and no clear of table marks was running
--     (clears_settled equal to clears_started, read before the probe, and clears_started unchanged after);
--  3. otherwise insert a mark and notify ('t' || the table's oid), unless the writer set mvrefresh.notify
--     to off (two-phase commit: PREPARE TRANSACTION refuses a transaction that notified; the daemon's
--     sweep finds the mark instead, docs/operations.md).
-- Writers at REPEATABLE READ or SERIALIZABLE cannot trust what their snapshot says about marks: they do not
-- probe, and add one mark per transaction and table, remembered in a transaction-local setting bound to
-- the transaction's id. A remembered mark (step 1) does not depend on the writer's snapshot: it holds at
-- every level.
--
-- The invariants, named where the body keeps them (refresh_view.sql names those of the cycle):
--  W  A writer that skipped without a mark of its own holds a write lock on the table from before its
--     look (the statement wrote first: it has an xid) until it ends. A cycle of a view V reading the table
--     turns the table's marks into marks of every view reading it in its tx1 (refresh_view.sql, V), then
--     waits for every transaction holding a write lock on V's sources; so a writer whose probe saw a mark
--     either saw it before the tx1 that consumed it committed, is running at that commit and is waited
--     for, or saw a mark added later, which a later cycle consumes in the same way. Views other than V
--     keep the view marks tx1 gave them, and their own cycles wait for the writers in the same way.
--  D  Every transaction that deletes table marks draws clears_started before it commits and holds the
--     clear lock from that draw until it ends (begin_clear.sql; refresh_view.sql decides the draw by its
--     DELETE's own result).
--  S  clears_settled only takes a value of clears_started while no transaction holds the clear lock
--     (settle_clears.sql): read equal before a probe, they say that no clear that drew so far was still
--     running.
--  R  A remembered mark stands for a probe (step 1 keeps W): the mark was committed when the probe saw it
--     and S held; by D, the clear that deletes it draws a new value before it commits, so while
--     clears_started is unchanged that clear has not committed, this statement (holding its write lock)
--     runs before its commit, and its cycle waits for it. The memo is valid for any session: it states
--     something about the table, not about the writer. Own uncommitted marks are never remembered: a
--     rollback takes them away without a clear.
--  F  No writer can make the trigger skip by setting a memo itself (SET, set_config, ALTER ROLE / DATABASE
--     ... SET, PGOPTIONS, a pooler's shared session): a memo is a SHA-256 of the table and the value of
--     clears_started, and that value is secret (a random 62-bit start, migrations/0011; the sequence is
--     readable only by mvrefresh's roles). A writer sees its memo (SHOW) but can neither reverse it nor
--     compute the one of the next value; a copied memo is valid exactly while R says it is. The
--     REPEATABLE READ memo also binds the transaction's id.
-- A statement that wrote nothing may skip as well: there is nothing to reflect.
--
-- Costs, per writing statement (README, "What the write path ... cost"): a query costs its executor
-- start-up, every simple expression a plan check, so step 1 is one expression and comes first; the memo of
-- earlier versions (a transaction-local setting at READ COMMITTED) cost more than the probe it saved
-- (before PostgreSQL 16 every commit that changed a setting walks all settings); the remembered mark is a
-- session-level setting, written only when a clear made it stale.
-- No column list in the trigger's definition: the application's migrations may alter or drop any column.
-- SECURITY DEFINER so that writers need no privileges on this schema (mark_relid() too: a capture function
-- of versions 15 to 18 that migration 19 could not rewrite, owned by another role, still marks). Without a SET clause (it would cost a GUC
-- nest level per call on the hot path), so every name is schema-qualified against what a writer can
-- create (types, functions, operators in pg_temp or in a schema it puts first in its search_path):
-- declarations (PL/pgSQL resolves them with the caller's search_path when it compiles the function in the
-- writer's session), casts, functions, operators as OPERATOR(pg_catalog.x), relations. The remaining
-- constructs resolve no name: IS NULL, COALESCE, AND, FILTER, INTO, literals (test/search-path.test.ts).
-- mark_relid() comes first in this file: test/faults/interleavings.test.ts gates every gap of the first
-- body of it, which is where steps 2 and 3 are.
-- Steps 2 and 3 for the table p_relid, in a trigger of that table whose step 1 missed. Not a trigger
-- function, so that the trigger functions of both kinds share it; a call is the price of a miss only.
CREATE OR REPLACE FUNCTION mvrefresh.mark_relid(p_relid pg_catalog.oid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    started pg_catalog.int8;
    settled pg_catalog.int8;
    own pg_catalog.xid;
    marks pg_catalog.int8;
    committed_marks pg_catalog.int8;
    memo pg_catalog.text;
    proof pg_catalog.text;
    ignored pg_catalog.text;
BEGIN
    -- nothing written, nothing to reflect
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN;
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
        -- step 2 (W); S's counters are read before the probe
        started := pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass);
        settled := pg_catalog.pg_sequence_last_value('mvrefresh.clears_settled'::pg_catalog.regclass);
        own := pg_catalog.pg_current_xact_id()::pg_catalog.xid;
        SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE m.xmin OPERATOR(pg_catalog.<>) own)
          INTO marks, committed_marks
          FROM mvrefresh.table_marks m WHERE m.relid OPERATOR(pg_catalog.=) p_relid;
        IF marks OPERATOR(pg_catalog.>) 0 THEN
            -- remember (R): a committed mark, no clear in flight when the probe looked (S: settled =
            -- started, read before it), none drawn since (started unchanged after it); step 1
            -- (MARK_MEMO_HIT) reads this memo
            IF committed_marks OPERATOR(pg_catalog.>) 0 AND started OPERATOR(pg_catalog.=) settled
               AND pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)
                   OPERATOR(pg_catalog.=) started THEN
                ignored := pg_catalog.set_config(
                    'mvrefresh.m' OPERATOR(pg_catalog.||) p_relid::pg_catalog.text,
                    pg_catalog.sha256(('m' OPERATOR(pg_catalog.||) p_relid::pg_catalog.text
                        OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) started::pg_catalog.text
                        )::pg_catalog.bytea)::pg_catalog.text,
                    false);
            END IF;
            RETURN;
        END IF;
    ELSE
        -- one mark per transaction and table: the memo binds the transaction's id (F)
        memo := 'mvrefresh.t' OPERATOR(pg_catalog.||) p_relid::pg_catalog.text;
        proof := pg_catalog.sha256(('t' OPERATOR(pg_catalog.||) p_relid::pg_catalog.text
            OPERATOR(pg_catalog.||) ':'
            OPERATOR(pg_catalog.||) pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)::pg_catalog.text
            OPERATOR(pg_catalog.||) ':'
            OPERATOR(pg_catalog.||) pg_catalog.pg_current_xact_id()::pg_catalog.text)::pg_catalog.bytea)::pg_catalog.text;
        IF pg_catalog.current_setting(memo, true) OPERATOR(pg_catalog.=) proof THEN
            RETURN;
        END IF;
        ignored := pg_catalog.set_config(memo, proof, true);
    END IF;
    -- step 3: a mark, visible to every cycle that starts after this transaction commits
    INSERT INTO mvrefresh.table_marks (relid) VALUES (p_relid);
    -- a writer that may not notify (two-phase commit) leaves its mark to the daemon's sweep
    IF COALESCE(pg_catalog.current_setting('mvrefresh.notify', true), '') OPERATOR(pg_catalog.<>) 'off' THEN
        PERFORM pg_catalog.pg_notify({{CHANNEL}}, 't' OPERATOR(pg_catalog.||) p_relid::pg_catalog.text);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_relid(pg_catalog.oid) FROM PUBLIC;
-- The trigger mvrefresh_mark, on a table a materialized view reads: step 1, then mark_relid().
CREATE OR REPLACE FUNCTION mvrefresh.mark_table() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    -- step 1 (R, F)
    IF {{MARK_MEMO_HIT}} THEN
        RETURN NULL;
    END IF;
    PERFORM mvrefresh.mark_relid(TG_RELID);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_table() FROM PUBLIC;

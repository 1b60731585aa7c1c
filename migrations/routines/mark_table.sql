-- The trigger, one per watched table (named mvrefresh_mark), whatever the number of views reading the
-- table. It runs in every writing statement of the application, so it does as little as it can, and only
-- once the statement has written something (the transaction has an xid).
--
-- In every writing statement:
--  1. when this session remembers a committed mark of the table, found while clears_started had the value
--     it still has, skip: one expression (a setting and a sequence read), no query;
--  2. at READ COMMITTED, probe for a mark of the table (one index scan); when there is one, skip, and
--     remember it if it is committed (another transaction's) and no clear of table marks was running
--     (clears_settled equal to clears_started, read before the probe, and clears_started unchanged after);
--  3. otherwise insert a mark and notify ('t' || the table's oid).
-- Writers at REPEATABLE READ or SERIALIZABLE cannot trust what their snapshot says about marks: they do not
-- probe, and add one mark per transaction and table, remembered in a transaction-local setting bound to
-- the transaction's id. A remembered mark (step 1) does not depend on the writer's snapshot: it holds at
-- every level.
--
-- Why a writer that skipped is still reflected in every view reading the table: from its first write on,
-- it holds a write lock on the table until it ends. A refresh cycle of a view V reading the table turns
-- the table's marks into marks of every view reading it (routines/refresh_view.sql), in its first
-- transaction (tx1); a writer whose probe saw a table mark either saw it before tx1 committed, and then
-- is running at tx1's commit, holds a lock on one of V's sources, and is waited for; or saw a mark added
-- later, which a later cycle consumes in the same way. Views other than V keep the view marks tx1 gave them,
-- and their own cycles wait for the writers that hold locks on their sources.
-- A remembered mark (step 1) stands for the probe: every transaction that deletes table marks draws
-- clears_started first and holds the clear lock until it ends (routines/begin_clear.sql), and
-- clears_settled only reaches a value of clears_started while no such transaction runs
-- (routines/settle_clears.sql). A clear that deleted the remembered mark before this statement would have
-- drawn after the probe that found it, and changed clears_started; while it is unchanged, the clear that
-- deletes the mark commits after this statement began to hold its write lock, and its cycle waits for it.
-- Own uncommitted marks are never remembered: a rollback takes them away without a clear. A statement that
-- wrote nothing may skip as well: there is nothing to reflect.
--
-- Costs, per writing statement (README, "What the write path ... cost"): a query costs its executor
-- start-up, every simple expression a plan check, so step 1 is one expression and comes first; the memo of
-- earlier versions (a transaction-local setting at READ COMMITTED) cost more than the probe it saved
-- (before PostgreSQL 16 every commit that changed a setting walks all settings); the remembered mark is a
-- session-level setting, written only when a clear made it stale.
-- No column list in the trigger's definition: the application's migrations may alter or drop any column.
-- SECURITY DEFINER so that writers need no privileges on this schema; without a SET clause (it would cost
-- a GUC nest level per call and undo set_config(..., true)), so every function and operator is
-- schema-qualified against search_path tricks.
CREATE OR REPLACE FUNCTION mvrefresh.mark_table() RETURNS trigger
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
    -- step 1 (invariant R: a remembered mark is there, or the clear that deletes it waits for this writer)
    IF pg_catalog.current_setting('mvrefresh.m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text, true)
       OPERATOR(pg_catalog.=)
       pg_catalog.sha256(('m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text OPERATOR(pg_catalog.||) ':'
           OPERATOR(pg_catalog.||) pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)::pg_catalog.text
           )::pg_catalog.bytea)::pg_catalog.text THEN
        RETURN NULL;
    END IF;
    -- nothing written, nothing to reflect
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
        -- step 2 (invariant W: a writer that skips holds a write lock on the table from before its probe to
        -- its end, so the cycle that consumes the mark it saw waits for it)
        started := pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass);
        settled := pg_catalog.pg_sequence_last_value('mvrefresh.clears_settled'::pg_catalog.regclass);
        own := pg_catalog.pg_current_xact_id()::pg_catalog.xid;
        SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE m.xmin OPERATOR(pg_catalog.<>) own)
          INTO marks, committed_marks
          FROM mvrefresh.table_marks m WHERE m.relid OPERATOR(pg_catalog.=) TG_RELID;
        IF marks OPERATOR(pg_catalog.>) 0 THEN
            -- remember (invariant R): a committed mark, no clear in flight when the probe looked (settled =
            -- started, read before it), none begun since (started unchanged after it)
            IF committed_marks OPERATOR(pg_catalog.>) 0 AND started OPERATOR(pg_catalog.=) settled
               AND pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)
                   OPERATOR(pg_catalog.=) started THEN
                ignored := pg_catalog.set_config(
                    'mvrefresh.m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text,
                    pg_catalog.sha256(('m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text
                        OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) started::pg_catalog.text
                        )::pg_catalog.bytea)::pg_catalog.text,
                    false);
            END IF;
            RETURN NULL;
        END IF;
    ELSE
        -- one mark per transaction and table (invariant T: the memo names this transaction, and no other
        -- transaction can produce it)
        memo := 'mvrefresh.t' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text;
        proof := pg_catalog.sha256(('t' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text
            OPERATOR(pg_catalog.||) ':'
            OPERATOR(pg_catalog.||) pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)::pg_catalog.text
            OPERATOR(pg_catalog.||) ':'
            OPERATOR(pg_catalog.||) pg_catalog.pg_current_xact_id()::pg_catalog.text)::pg_catalog.bytea)::pg_catalog.text;
        IF pg_catalog.current_setting(memo, true) OPERATOR(pg_catalog.=) proof THEN
            RETURN NULL;
        END IF;
        ignored := pg_catalog.set_config(memo, proof, true);
    END IF;
    -- step 3: a mark, visible to every cycle that starts after this transaction commits
    INSERT INTO mvrefresh.table_marks (relid) VALUES (TG_RELID);
    -- a writer that may not notify (two-phase commit: PREPARE TRANSACTION refuses a transaction that
    -- notified) leaves its mark to the daemon's sweep
    IF COALESCE(pg_catalog.current_setting('mvrefresh.notify', true), '') OPERATOR(pg_catalog.<>) 'off' THEN
        PERFORM pg_catalog.pg_notify({{CHANNEL}}, 't' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_table() FROM PUBLIC;

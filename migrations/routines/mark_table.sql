-- The trigger, one per watched table (named mvrefresh_mark), whatever the number of views reading the
-- table. It runs in every writing statement of the application, so it does as little as it can, and only
-- once the statement has written something (the transaction has an xid).
--
-- READ COMMITTED writers, in every writing statement:
--  1. when this session remembers a committed mark of the table, found while clears_started had the value
--     it still has, skip: two sequence reads in simple expressions, no query;
--  2. otherwise probe for a mark of the table (one index scan); when there is one, skip, and remember it
--     if it is committed (another transaction's) and no clear of table marks was running (clears_settled
--     equal to clears_started, read before the probe, and clears_started unchanged after it);
--  3. otherwise insert a mark and notify ('t' || the table's oid).
-- Writers at REPEATABLE READ or SERIALIZABLE cannot trust what their snapshot says about marks: they add
-- one per transaction and table, remembered in a transaction-local setting bound to the transaction's id.
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
-- Own uncommitted marks are never remembered: a rollback takes them away without a clear.
--
-- Costs, per writing statement (docs/benchmarks.md): the memo of earlier versions (a transaction-local
-- setting) cost more than the probe it saved (before PostgreSQL 16 every commit that changed a setting
-- walks all settings), and a query costs its executor start-up; the remembered mark is a session-level
-- setting, written only when a clear made it stale.
-- No column list in the trigger's definition: the application's migrations may alter or drop any column.
-- SECURITY DEFINER so that writers need no privileges on this schema; without a SET clause (it would cost
-- a GUC nest level per call and undo set_config(..., true)), so every function and operator is
-- schema-qualified against search_path tricks.
CREATE OR REPLACE FUNCTION mvrefresh.mark_table() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    started bigint;
    settled bigint;
    own pg_catalog.xid;
    marks integer;
    committed_marks integer;
    xid text;
    memo text;
    ignored text;
BEGIN
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
        started := pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass);
        memo := 'mvrefresh.m' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text;
        IF pg_catalog.current_setting(memo, true) OPERATOR(pg_catalog.=) started::pg_catalog.text THEN
            RETURN NULL;
        END IF;
        settled := pg_catalog.pg_sequence_last_value('mvrefresh.clears_settled'::pg_catalog.regclass);
        own := pg_catalog.pg_current_xact_id()::pg_catalog.xid;
        SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE m.xmin OPERATOR(pg_catalog.<>) own)
          INTO marks, committed_marks
          FROM mvrefresh.table_marks m WHERE m.relid OPERATOR(pg_catalog.=) TG_RELID;
        IF marks OPERATOR(pg_catalog.>) 0 THEN
            IF committed_marks OPERATOR(pg_catalog.>) 0 AND started OPERATOR(pg_catalog.=) settled
               AND pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'::pg_catalog.regclass)
                   OPERATOR(pg_catalog.=) started THEN
                ignored := pg_catalog.set_config(memo, started::pg_catalog.text, false);
            END IF;
            RETURN NULL;
        END IF;
    ELSE
        xid := pg_catalog.pg_current_xact_id()::pg_catalog.text;
        memo := 'mvrefresh.t' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text;
        IF pg_catalog.current_setting(memo, true) OPERATOR(pg_catalog.=) xid THEN
            RETURN NULL;
        END IF;
        ignored := pg_catalog.set_config(memo, xid, true);
    END IF;
    INSERT INTO mvrefresh.table_marks (relid) VALUES (TG_RELID);
    PERFORM pg_catalog.pg_notify({{CHANNEL}}, 't' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_table() FROM PUBLIC;

-- Version 7: sources that change after `watch`, and writes that bypass the triggers, are found without a
-- human (routines/check_drift.sql). view_state keeps a fingerprint of what `watch` derived the view's
-- sources from; table_writes keeps each watched table's write counters (pg_stat_user_tables) as last seen,
-- so that writes which fired no trigger (session_replication_role = replica without ENABLE ALWAYS,
-- DISABLE TRIGGER) are noticed. Daemons of earlier versions ignore both and keep working.
-- compatibility: keeps older daemons working
ALTER TABLE mvrefresh.view_state ADD COLUMN source_fingerprint text;

CREATE TABLE mvrefresh.table_writes (
    relid        oid PRIMARY KEY,
    -- n_tup_ins + n_tup_upd + n_tup_del at checked_at
    writes       bigint NOT NULL,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    -- the last time a refresh cycle consumed a mark of the table: its trigger fired
    last_mark_at timestamptz
);

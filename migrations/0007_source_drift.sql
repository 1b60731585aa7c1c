-- Version 7: sources that change after `watch`, and writes that bypass the triggers, are found without a
-- human (routines/check_drift.sql). source_fingerprints keeps a fingerprint of what `watch` derived each
-- view's sources from; table_writes keeps each watched table's write counters (pg_stat_user_tables) as last seen,
-- so that writes which fired no trigger (session_replication_role = replica without ENABLE ALWAYS,
-- DISABLE TRIGGER) are noticed. Daemons of earlier versions ignore both and keep working.
-- New tables only, no foreign key, nothing added to view_state: an ALTER TABLE of view_state would wait for
-- an AccessExclusiveLock behind refresh cycles of running daemons, while they wait for tables that the
-- migration has already locked (a deadlock that fails their refresh).
-- compatibility: keeps older daemons working
CREATE TABLE mvrefresh.source_fingerprints (
    view_id     integer PRIMARY KEY,
    fingerprint text NOT NULL
);

CREATE TABLE mvrefresh.table_writes (
    relid        oid PRIMARY KEY,
    -- n_tup_ins + n_tup_upd + n_tup_del at checked_at
    writes       bigint NOT NULL,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    -- the last time a refresh cycle consumed a mark of the table: its trigger fired
    last_mark_at timestamptz
);

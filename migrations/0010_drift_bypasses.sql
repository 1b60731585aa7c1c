-- Version 10: what the drift check (routines/check_drift.sql) needs to see the bypasses that no write
-- counter shows, and to say what it found where `doctor` and the alerts can read it.
--  * table_files: each watched table's relfilenode as last seen. TRUNCATE moves no n_tup_* counter but
--    gives the table a new relfilenode; so do VACUUM FULL, CLUSTER and rewriting ALTER TABLEs, which cost
--    one refresh.
--  * drift_findings: per table and kind, what the last checks found (a trigger named mvrefresh_mark that
--    is not ours, ENABLE REPLICA, writes or a truncate that fired no trigger); standing conditions are
--    found again at every check, events are kept for a day.
--  * drift_check_state: when a check last succeeded and last failed, and why (the daemon records a
--    failure in a transaction of its own, since the failed check rolled back).
-- New tables only: daemons of earlier versions never read them.
-- compatibility: keeps older daemons working
CREATE TABLE mvrefresh.table_files (
    relid       oid PRIMARY KEY,
    relfilenode oid NOT NULL
);

CREATE TABLE mvrefresh.drift_findings (
    relid      oid NOT NULL,
    -- one of src/db/protocol.ts's DRIFT_KINDS
    kind       text NOT NULL,
    detail     text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relid, kind)
);

CREATE TABLE mvrefresh.drift_check_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_ok_at     timestamptz,
    last_failed_at timestamptz,
    last_error     text
);
INSERT INTO mvrefresh.drift_check_state (id) VALUES (true);

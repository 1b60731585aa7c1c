-- Version 11: the value of clears_started becomes a secret of the schema's owner. Writers remember a mark
-- of a table (routines/mark_table.sql) in a setting of their own session, which they can also read (SHOW)
-- and set (SET, set_config, ALTER ROLE / DATABASE ... SET, PGOPTIONS); the trigger now stores a SHA-256
-- of the table and clears_started there instead of the counter itself, and compares with the one it
-- computes. A writer cannot read the sequence (no privilege on it, nor on the schema), so it can neither
-- compute the memo of the next value nor reverse the current one: the counter jumps here to a random
-- value of 62 bits, which then grows by one per clear.
-- The jump is a draw: every memo of an earlier value is stale. clears_settled follows it at once when no
-- clear runs (the clear lock taken without waiting, as routines/settle_clears.sql does), else it stays
-- behind until the next cycle settles it, and no writer remembers a mark meanwhile (on a database without
-- a daemon, writers would probe at every statement until then).
-- Daemons of earlier versions keep working: no signature changes, and the counters are compared for
-- equality only.
-- compatibility: keeps older daemons working
-- 64 random bits: the first 8 hex digits of one version-4 UUID and the last 8 of another (their fixed
-- version and variant bits lie elsewhere)
SELECT pg_catalog.setval('mvrefresh.clears_started',
    ((('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.gen_random_uuid()::pg_catalog.text, 8)
           OPERATOR(pg_catalog.||) pg_catalog.right(pg_catalog.gen_random_uuid()::pg_catalog.text, 8)
      )::pg_catalog.bit(64)::pg_catalog.int8 OPERATOR(pg_catalog.&) 4611686018427387903)
     OPERATOR(pg_catalog.|) 1099511627776),
    true);
SELECT pg_catalog.setval('mvrefresh.clears_settled', pg_catalog.pg_sequence_last_value('mvrefresh.clears_started'), true)
 WHERE pg_catalog.pg_try_advisory_xact_lock({{LOCK_NAMESPACE}}, {{CLEAR_LOCK_KEY}});

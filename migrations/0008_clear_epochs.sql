-- Version 8: two counters that let a READ COMMITTED writer skip its probe for a table mark when a mark it
-- found in an earlier transaction is certain to be there still (routines/mark_table.sql). Every clear of
-- table marks draws clears_started first, holding the clear lock shared (routines/begin_clear.sql);
-- clears_settled is set to clears_started's value while nobody holds that lock (routines/settle_clears.sql).
-- Sequences, not table rows: a writer reads them with pg_sequence_last_value() in a PL/pgSQL simple
-- expression, without the executor start-up that a query of a table costs in every writing statement.
-- Daemons of earlier versions keep working: writers fall back to the probe while clears_settled lags (a
-- clear that only the new routines settle), and the routines keep their signatures.
-- compatibility: keeps older daemons working
CREATE SEQUENCE mvrefresh.clears_started AS bigint;
CREATE SEQUENCE mvrefresh.clears_settled AS bigint;
-- pg_sequence_last_value() is NULL until a value was drawn or set
SELECT pg_catalog.setval('mvrefresh.clears_started', 1, true);
SELECT pg_catalog.setval('mvrefresh.clears_settled', 1, true);

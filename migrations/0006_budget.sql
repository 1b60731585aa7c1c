-- Version 6: staleness targets, refresh budgets and pause (issue 13). Per-view settings join view_state
-- (NULL: the daemon's defaults); a paused view keeps its marks and is refreshed by nobody until resumed.
-- due_views() gains dirty_since (the oldest unreflected write, so that a restarted daemon keeps the
-- staleness clock) and watch() gains the target and the budget: both are dropped here and created again
-- from their files (IF EXISTS: a new database gets its routines after its migrations). Earlier daemons
-- select due_views()' columns by name and call watch() with six positional arguments, which the new
-- watch() still takes.
-- compatibility: keeps older daemons working
ALTER TABLE mvrefresh.view_state
    ADD COLUMN max_staleness_ms integer CHECK (max_staleness_ms > 0),
    ADD COLUMN refresh_budget double precision CHECK (refresh_budget > 0 AND refresh_budget <= 1),
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN target_misses bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_miss_staleness_ms double precision;

DROP FUNCTION IF EXISTS mvrefresh.due_views();
DELETE FROM mvrefresh.routines WHERE name = 'due_views';
DROP FUNCTION IF EXISTS mvrefresh.watch(text, integer, integer, integer, boolean, boolean);
DELETE FROM mvrefresh.routines WHERE name = 'watch';

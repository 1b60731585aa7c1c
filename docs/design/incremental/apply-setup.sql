SET max_parallel_workers_per_gather = 0;
\timing on
-- the incremental table of per-post stats, its unique key, and the applied snapshot
CREATE TABLE ivm_post_stats AS SELECT * FROM mv_post_stats WITH NO DATA;
ALTER TABLE ivm_post_stats ADD PRIMARY KEY (post_id);
CREATE TABLE applied (view_name text PRIMARY KEY, snap pg_snapshot NOT NULL);
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO ivm_post_stats SELECT c.post_id, count(*), max(c.created_at), sum(c.score) FROM comments c GROUP BY c.post_id;
INSERT INTO applied VALUES ('post_stats', pg_current_snapshot());
COMMIT;
-- the same for per-community per-day totals (delta class)
CREATE TABLE ivm_comm_day AS SELECT * FROM mv_comm_day WITH NO DATA;
ALTER TABLE ivm_comm_day ADD PRIMARY KEY (community_id, day);
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO ivm_comm_day SELECT p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC'), count(*), sum(c.score) FROM comments c JOIN posts p ON p.id = c.post_id GROUP BY 1, 2;
INSERT INTO applied VALUES ('comm_day', pg_current_snapshot());
COMMIT;
-- the materialized views for REFRESH CONCURRENTLY
REFRESH MATERIALIZED VIEW mv_post_stats;
CREATE UNIQUE INDEX ON mv_post_stats (post_id);
REFRESH MATERIALIZED VIEW mv_comm_day;
CREATE UNIQUE INDEX ON mv_comm_day (community_id, day);
VACUUM ANALYZE ivm_post_stats; VACUUM ANALYZE ivm_comm_day; VACUUM ANALYZE mv_post_stats; VACUUM ANALYZE mv_comm_day;
SELECT count(*) FROM ivm_post_stats; SELECT count(*) FROM ivm_comm_day;

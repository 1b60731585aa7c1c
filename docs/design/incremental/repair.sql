-- diff recompute (section 6.5): the repair and the fallback; writes proportional to the difference
SET max_parallel_workers_per_gather = 0;
\timing on
BEGIN ISOLATION LEVEL REPEATABLE READ;
CREATE TEMP TABLE f ON COMMIT DROP AS SELECT c.post_id, count(*) AS n, max(c.created_at) AS last_at, sum(c.score) AS score FROM comments c GROUP BY c.post_id;
CREATE TEMP TABLE x ON COMMIT DROP AS (TABLE ivm_post_stats EXCEPT ALL TABLE f);
DELETE FROM ivm_post_stats t USING x WHERE t.post_id = x.post_id;
INSERT INTO ivm_post_stats (TABLE f EXCEPT ALL TABLE ivm_post_stats);
UPDATE applied SET snap = pg_current_snapshot() WHERE view_name = 'post_stats';
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
CREATE TEMP TABLE f ON COMMIT DROP AS SELECT p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC') AS day, count(*) AS n, sum(c.score) AS score FROM comments c JOIN posts p ON p.id = c.post_id GROUP BY 1, 2;
CREATE TEMP TABLE x ON COMMIT DROP AS (TABLE ivm_comm_day EXCEPT ALL TABLE f);
DELETE FROM ivm_comm_day t USING x WHERE t.community_id = x.community_id AND t.day = x.day;
INSERT INTO ivm_comm_day (TABLE f EXCEPT ALL TABLE ivm_comm_day);
UPDATE applied SET snap = pg_current_snapshot() WHERE view_name = 'comm_day';
COMMIT;

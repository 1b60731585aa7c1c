SET max_parallel_workers_per_gather = 0;
\timing on
\echo == verify (EXCEPT ALL both ways), both
SELECT (SELECT count(*) FROM (TABLE ivm_post_stats EXCEPT ALL SELECT c.post_id, count(*), max(c.created_at), sum(c.score) FROM comments c GROUP BY c.post_id) a) AS post_stats_extra,
       (SELECT count(*) FROM (SELECT c.post_id, count(*), max(c.created_at), sum(c.score) FROM comments c GROUP BY c.post_id EXCEPT ALL TABLE ivm_post_stats) b) AS post_stats_missing;
SELECT (SELECT count(*) FROM (TABLE ivm_comm_day EXCEPT ALL TABLE mv_comm_day) a) AS comm_day_extra, (SELECT count(*) FROM (TABLE mv_comm_day EXCEPT ALL TABLE ivm_comm_day) b) AS comm_day_missing;

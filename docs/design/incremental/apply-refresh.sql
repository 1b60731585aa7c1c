SET max_parallel_workers_per_gather = 0;
\timing on
\echo == REFRESH CONCURRENTLY, both
REFRESH MATERIALIZED VIEW CONCURRENTLY mv_post_stats;
REFRESH MATERIALIZED VIEW CONCURRENTLY mv_comm_day;

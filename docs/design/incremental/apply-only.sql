-- :k changed posts: half get a new comment, a quarter a score update (one comment moves to another post), a quarter a delete
\set ON_ERROR_STOP 1
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE pick AS SELECT (1 + (hashint8(g + :seed) & 2147483647) % 500000)::bigint AS post_id, g FROM generate_series(1, :k) g;
INSERT INTO comments (post_id, author_id, score, created_at, body) SELECT post_id, 1, 7, now(), 'n' FROM pick WHERE g % 4 IN (0, 1);
UPDATE comments c SET score = c.score + 3, post_id = CASE WHEN p.g % 8 = 2 THEN c.post_id + 1 ELSE c.post_id END
  FROM (SELECT DISTINCT ON (pk.post_id) pk.g, cm.id FROM pick pk JOIN comments cm ON cm.post_id = pk.post_id WHERE pk.g % 4 = 2 ORDER BY pk.post_id, cm.id) p WHERE c.id = p.id;
DELETE FROM comments c USING (SELECT DISTINCT ON (pk.post_id) cm.id FROM pick pk JOIN comments cm ON cm.post_id = pk.post_id WHERE pk.g % 4 = 3 ORDER BY pk.post_id, cm.id DESC) p WHERE c.id = p.id;
\timing on
\echo == recompute apply, per-post stats (count, max, sum): DELETE + INSERT by affected keys
BEGIN ISOLATION LEVEL REPEATABLE READ;
DO $$
DECLARE prev pg_snapshot; keys bigint[]; t0 timestamptz := clock_timestamp(); del bigint; ins bigint;
BEGIN
  SELECT snap INTO prev FROM applied WHERE view_name = 'post_stats';
  SELECT array_agg(DISTINCT post_id) INTO keys FROM cap.logx WHERE xid >= pg_snapshot_xmin(prev) AND NOT pg_visible_in_snapshot(xid, prev);
  DELETE FROM ivm_post_stats WHERE post_id = ANY (keys);
  GET DIAGNOSTICS del = ROW_COUNT;
  INSERT INTO ivm_post_stats
  SELECT q.* FROM (SELECT c.post_id, count(*) AS n, max(c.created_at) AS last_at, sum(c.score) AS score FROM comments c GROUP BY c.post_id) q
   WHERE q.post_id = ANY (keys);
  GET DIAGNOSTICS ins = ROW_COUNT;
  UPDATE applied SET snap = pg_current_snapshot() WHERE view_name = 'post_stats';
  RAISE NOTICE 'post_stats recompute: % keys, % deleted, % inserted, % ms', cardinality(keys), del, ins, round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
END $$;
COMMIT;
\echo == delta apply, per-community per-day (count, sum) over comments joined to posts
BEGIN ISOLATION LEVEL REPEATABLE READ;
DO $$
DECLARE prev pg_snapshot; t0 timestamptz := clock_timestamp(); upd bigint; ins bigint; del bigint; groups bigint;
BEGIN
  SELECT snap INTO prev FROM applied WHERE view_name = 'comm_day';
  CREATE TEMP TABLE d ON COMMIT DROP AS
  SELECT p.community_id, l.day, sum(l.n) AS n, sum(l.s) AS s
    FROM cap.logx l JOIN posts p ON p.id = l.post_id
   WHERE l.xid >= pg_snapshot_xmin(prev) AND NOT pg_visible_in_snapshot(l.xid, prev)
   GROUP BY 1, 2;
  GET DIAGNOSTICS groups = ROW_COUNT;
  UPDATE ivm_comm_day t SET n = t.n + d.n, score = t.score + d.s FROM d WHERE t.community_id = d.community_id AND t.day = d.day;
  GET DIAGNOSTICS upd = ROW_COUNT;
  INSERT INTO ivm_comm_day SELECT d.community_id, d.day, d.n, d.s FROM d
   WHERE NOT EXISTS (SELECT FROM ivm_comm_day t WHERE t.community_id = d.community_id AND t.day = d.day);
  GET DIAGNOSTICS ins = ROW_COUNT;
  DELETE FROM ivm_comm_day t USING d WHERE t.community_id = d.community_id AND t.day = d.day AND t.n = 0;
  GET DIAGNOSTICS del = ROW_COUNT;
  UPDATE applied SET snap = pg_current_snapshot() WHERE view_name = 'comm_day';
  RAISE NOTICE 'comm_day delta: % groups, % updated, % inserted, % vanished, % ms', groups, upd, ins, del, round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
END $$;
COMMIT;

CREATE SCHEMA IF NOT EXISTS cap;
-- one view's needs: per-post stats (key post_id; deltas count, sum(score))
CREATE TABLE cap.log1 (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), post_id bigint, n bigint NOT NULL, s_score bigint);
CREATE INDEX ON cap.log1 (xid);
-- twenty views' needs: 5 key columns, 15 delta columns
CREATE TABLE cap.log20 (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), id bigint, post_id bigint, author_id int, day timestamp, bucket int,
  n bigint NOT NULL, s1 bigint, s2 bigint, s3 bigint, s4 bigint, s5 bigint, s6 bigint, s7 bigint, s8 bigint, s9 bigint, s10 bigint, s11 bigint, s12 bigint, s13 bigint, s14 bigint);
CREATE INDEX ON cap.log20 (xid);
CREATE FUNCTION cap.empty() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION cap.ins1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cap.log1 (post_id, n, s_score) SELECT post_id, count(*), sum(score) FROM new_rows GROUP BY post_id;
  RETURN NULL;
END $$;
CREATE FUNCTION cap.ins20() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cap.log20 (id, post_id, author_id, day, bucket, n, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14)
  SELECT id, post_id, author_id, date_trunc('day', created_at AT TIME ZONE 'UTC'), score / 50, count(*),
         sum(score), sum(score * 2), sum(abs(score)), sum(score) FILTER (WHERE score > 0), sum(length(body)), sum(score + 1), sum(score - 1),
         sum(score * 3), sum(score * 4), sum(score * 5), sum(score * 6), sum(score * 7), sum(score * 8), sum(score * 9)
    FROM new_rows GROUP BY id, post_id, author_id, 4, 5;
  RETURN NULL;
END $$;
-- UPDATE path with the relevance filter: pair old and new by primary key, keep pairs whose read columns differ
CREATE FUNCTION cap.upd1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cap.log1 (post_id, n, s_score)
  SELECT v.post_id, sum(v.n), sum(v.s)
    FROM old_rows o FULL JOIN new_rows w ON o.id = w.id
   CROSS JOIN LATERAL (VALUES (o.post_id, -1, -o.score, o.id IS NOT NULL), (w.post_id, 1, w.score, w.id IS NOT NULL)) v(post_id, n, s, present)
   WHERE v.present AND (o.id IS NULL OR w.id IS NULL OR (o.post_id, o.score, o.created_at) IS DISTINCT FROM (w.post_id, w.score, w.created_at))
   GROUP BY v.post_id;
  RETURN NULL;
END $$;

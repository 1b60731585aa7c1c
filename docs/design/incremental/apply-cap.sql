-- capture for the apply experiment: one INSERT/UPDATE/DELETE trigger set on comments writing (post_id, day, n, s)
CREATE TABLE cap.logx (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), post_id bigint, day timestamp, n bigint NOT NULL, s bigint);
CREATE INDEX ON cap.logx (xid);
CREATE FUNCTION cap.x_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO cap.logx (post_id, day, n, s) SELECT post_id, date_trunc('day', created_at AT TIME ZONE 'UTC'), count(*), sum(score) FROM new_rows GROUP BY 1, 2; RETURN NULL; END $$;
CREATE FUNCTION cap.x_del() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO cap.logx (post_id, day, n, s) SELECT post_id, date_trunc('day', created_at AT TIME ZONE 'UTC'), -count(*), -sum(score) FROM old_rows GROUP BY 1, 2; RETURN NULL; END $$;
CREATE FUNCTION cap.x_upd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO cap.logx (post_id, day, n, s)
  SELECT v.post_id, v.day, sum(v.n), sum(v.s)
    FROM old_rows o FULL JOIN new_rows w ON o.id = w.id
   CROSS JOIN LATERAL (VALUES (o.post_id, date_trunc('day', o.created_at AT TIME ZONE 'UTC'), -1, -o.score, o.id IS NOT NULL),
                              (w.post_id, date_trunc('day', w.created_at AT TIME ZONE 'UTC'), 1, w.score, w.id IS NOT NULL)) v(post_id, day, n, s, present)
   WHERE v.present AND (o.id IS NULL OR w.id IS NULL OR (o.post_id, o.score, o.created_at) IS DISTINCT FROM (w.post_id, w.score, w.created_at))
   GROUP BY 1, 2; RETURN NULL; END $$;
CREATE TRIGGER x_ins AFTER INSERT ON comments REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.x_ins();
CREATE TRIGGER x_del AFTER DELETE ON comments REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.x_del();
CREATE TRIGGER x_upd AFTER UPDATE ON comments REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.x_upd();

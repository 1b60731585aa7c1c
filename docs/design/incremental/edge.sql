-- edge cases on a small table: NULL group keys, groups that vanish, key-moving UPDATEs, min/max after delete,
-- float sums; recompute-by-key apply with the NULL branch, then EXCEPT ALL both ways
\set ON_ERROR_STOP 1
CREATE TABLE e (id int PRIMARY KEY, g int, x float8, v int);
INSERT INTO e SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE i % 5 END, i * 0.1, i FROM generate_series(1, 1000) i;
CREATE VIEW e_def AS SELECT g, count(*) AS n, min(v) AS lo, max(v) AS hi, sum(x) AS sx FROM e GROUP BY g;
CREATE TABLE e_ivm AS SELECT * FROM e_def;
CREATE TABLE e_log (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), g int);
CREATE FUNCTION e_cap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO e_log (g) SELECT DISTINCT g FROM n; END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN INSERT INTO e_log (g) SELECT DISTINCT g FROM o; END IF;
  RETURN NULL; END $$;
CREATE TRIGGER e_i AFTER INSERT ON e REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION e_cap();
CREATE TRIGGER e_u AFTER UPDATE ON e REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION e_cap();
CREATE TRIGGER e_d AFTER DELETE ON e REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION e_cap();
CREATE TABLE e_applied AS SELECT pg_current_snapshot() AS snap;
-- writes: delete the min and max of group 1, move rows between groups and into/out of NULL, empty group 4, new group 9
DELETE FROM e WHERE v IN (1, 996);
UPDATE e SET g = NULL WHERE id BETWEEN 2 AND 30 AND g = 2;
UPDATE e SET g = 3 WHERE id IN (7, 14);
DELETE FROM e WHERE g = 4;
INSERT INTO e VALUES (2001, 9, 0.3, -5), (2002, NULL, 1e-17, 5000);
UPDATE e SET x = x + 0.1 WHERE id % 3 = 0;
BEGIN ISOLATION LEVEL REPEATABLE READ;
DO $$
DECLARE prev pg_snapshot; keys int[]; has_null bool;
BEGIN
  SELECT snap INTO prev FROM e_applied;
  SELECT array_agg(DISTINCT g) FILTER (WHERE g IS NOT NULL), bool_or(g IS NULL) INTO keys, has_null
    FROM e_log WHERE NOT pg_visible_in_snapshot(xid, prev);
  DELETE FROM e_ivm WHERE g = ANY (keys);
  INSERT INTO e_ivm SELECT q.* FROM (SELECT g, count(*) AS n, min(v) AS lo, max(v) AS hi, sum(x) AS sx FROM e GROUP BY g) q WHERE q.g = ANY (keys);
  IF has_null THEN
    DELETE FROM e_ivm WHERE g IS NULL;
    INSERT INTO e_ivm SELECT q.* FROM (SELECT g, count(*) AS n, min(v) AS lo, max(v) AS hi, sum(x) AS sx FROM e GROUP BY g) q WHERE q.g IS NULL;
  END IF;
  UPDATE e_applied SET snap = pg_current_snapshot();
  RAISE NOTICE 'keys %, null group %', keys, has_null;
END $$;
COMMIT;
SELECT * FROM e_ivm ORDER BY g NULLS FIRST;
SELECT (SELECT count(*) FROM (TABLE e_ivm EXCEPT ALL TABLE e_def) a) AS extra, (SELECT count(*) FROM (TABLE e_def EXCEPT ALL TABLE e_ivm) b) AS missing;
DROP VIEW e_def; DROP TABLE e, e_ivm, e_log, e_applied; DROP FUNCTION e_cap();

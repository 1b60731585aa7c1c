#!/bin/sh
# The quick start's writer: one order with 1 to 3 items every WRITE_PAUSE seconds (default 1), through one
# psql session, until stopped.
set -eu
pause=${WRITE_PAUSE:-1}
while :; do
  cat <<SQL
WITH o AS (INSERT INTO orders
           VALUES (nextval('order_ids'), 1 + (random() * 99)::int, current_date - (random() * 90)::int)
           RETURNING order_id)
INSERT INTO order_items
SELECT o.order_id, p, 1 + (random() * 4)::int
  FROM o, (SELECT DISTINCT 1 + (random() * 49)::int AS p FROM generate_series(1, 3)) items;
SELECT pg_sleep($pause);
SQL
done | psql -q -v ON_ERROR_STOP=1 -o /dev/null

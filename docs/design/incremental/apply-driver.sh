#!/bin/sh
P="psql -h 127.0.0.1 -U postgres -X mvr_h7_scratch"
for k in 100 1000 10000; do
  echo "### k=$k"
  $P -v k=$k -v seed=$k -f apply-only.sql 2>&1 | grep -E "NOTICE|ERROR"
  if [ $k != 1000 ]; then $P -f apply-refresh.sql 2>&1 | grep -E "Time|ERROR"; fi
done
echo "### verify"
$P -f apply-verify.sql 2>&1 | grep -vE "^$|^SET"

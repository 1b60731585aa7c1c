#!/bin/sh
# interleaved rounds: 2 clients, 1 thread, 10 s each (about one core)
for round in 1 2 3; do
  for mode in none empty cap1 cap20; do
    ./setmode.sh $mode INSERT
    tps=$(pgbench -h 127.0.0.1 -U postgres -n -c 2 -j 1 -T 10 -f ins.pgb mvr_h7_scratch 2>/dev/null | awk '/^tps/ {print $3}')
    echo "INSERT round=$round mode=$mode tps=$tps"
  done
  for mode in none empty cap1; do
    ./setmode.sh $mode UPDATE
    tps=$(pgbench -h 127.0.0.1 -U postgres -n -c 2 -j 1 -T 10 -f upd.pgb mvr_h7_scratch 2>/dev/null | awk '/^tps/ {print $3}')
    echo "UPDATE round=$round mode=$mode tps=$tps"
  done
done
./setmode.sh none INSERT

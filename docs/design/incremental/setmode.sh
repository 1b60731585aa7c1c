#!/bin/sh
# $1 = none | empty | cap1 | cap20 ; $2 = INSERT | UPDATE
P="psql -h 127.0.0.1 -U postgres -qX ${DB:-mvr_h7_scratch} -c"
$P "DROP TRIGGER IF EXISTS t_cap ON comments"
case "$1:$2" in
  none:*) ;;
  empty:*) $P "CREATE TRIGGER t_cap AFTER $2 ON comments FOR EACH STATEMENT EXECUTE FUNCTION cap.empty()";;
  cap1:INSERT) $P "CREATE TRIGGER t_cap AFTER INSERT ON comments REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.ins1()";;
  cap20:INSERT) $P "CREATE TRIGGER t_cap AFTER INSERT ON comments REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.ins20()";;
  cap1:UPDATE) $P "CREATE TRIGGER t_cap AFTER UPDATE ON comments REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cap.upd1()";;
esac

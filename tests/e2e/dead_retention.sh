#!/bin/sh
# dead_retention.sh - the host deletes dead calls itself when told to:
# beyond dead_keep_max the oldest go, and with dead_retention those dead
# for longer than it.  A deleted call goes with its history and frees its
# Idempotency-Key; the log says how many went, and
# cagehost_dead_swept_total counts them.  Calls dead for less than
# dead_retention stay.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

dead_calls_are() { [ "$(metric cagehost_dead_calls)" = "$1" ]; }
gone() { [ "$(status GET "/v1/calls/$1")" = 404 ]; }
ids_of() { grep -o '"id": "[0-9a-f]*"' | sed 's/.*: "\(.*\)"/\1/'; }
calls_dead_at_least() { [ "$(metric cagehost_calls_dead_total)" -ge "$1" ] 2>/dev/null; }
DUMP=$(command -v db5.3_dump || command -v db_dump)

# part 1: dead_keep_max = 2, five calls die one after another
write_conf "dead_keep_max = 2"
plugin "$PLUGINS/echo.so" echo
start_host
wait_until "echo to be loaded" log_has "loaded echo@" || bail "echo was not loaded"

first=$(curl -s -m "$CURL_LIMIT" -X POST -H "Idempotency-Key: once-only" -d first \
	"$URL/v1/enqueue/default/echo/fail" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
[ -n "$first" ] || bail "the first call was not enqueued"
echo "$first" > "$T/ids"
wait_until "the first call to die" state_is "$first" dead || bail "the first call did not die"
contains "it is listed with its history" "$(curl -s -m "$CURL_LIMIT" "$URL/v1/calls/$first")" \
	'"history": [{"attempt": 1'
for n in 2 3 4 5; do
	id=$(enqueue default echo fail "call $n")
	echo "$id" >> "$T/ids"
	wait_until "call $n to be dead or deleted" calls_dead_at_least "$n"
done
wait_until "2 dead calls to be left" dead_calls_are 2
ok $? "of 5 dead calls, dead_keep_max = 2 leaves 2"
equal "the 2 left are the newest" \
	"$(curl -s -m "$CURL_LIMIT" "$URL/v1/calls?state=dead" | ids_of)" "$(tail -2 "$T/ids")"
deleted=0
for id in $(head -3 "$T/ids"); do
	gone "$id" && deleted=$((deleted + 1))
done
equal "the 3 oldest answer 404" "$deleted" 3
equal "cagehost_dead_swept_total counts them" "$(metric cagehost_dead_swept_total)" 3
wait_until "the deletions to be logged" log_has "deleted [0-9]* dead call(s)"
ok $? "the log says dead calls were deleted"
again=$(curl -s -m "$CURL_LIMIT" -X POST -H "Idempotency-Key: once-only" -d again \
	"$URL/v1/enqueue/default/echo/echo" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
check "the deleted call's Idempotency-Key makes a new call" \
	test -n "$again" -a "$again" != "$first"
wait_until "the new call to be done" state_is "$again" done
ok $? "which runs"
stop_host

# part 2: dead_retention = 5s, on the same data_dir
write_conf "dead_retention = 5s"
start_host
wait_until "echo to be loaded" log_has "loaded echo@" || bail "echo was not loaded"
wait_until "the 2 dead calls of part 1 to go" dead_calls_are 0
ok $? "dead calls older than dead_retention are deleted, those from before the restart too"
id=$(enqueue default echo fail late)
wait_until "the new call to die" state_is "$id" dead
ok $? "a call dead for less than dead_retention is kept"
died=$(now_ms)
wait_until "the new call to be deleted" gone "$id"
ok $? "and deleted once dead_retention has passed"
echo "# deleted about $(( $(now_ms) - died )) ms after it was seen dead (dead_retention 5 s)"
equal "cagehost_dead_calls is 0" "$(metric cagehost_dead_calls)" 0
"$DUMP" -p -h "$T/data" -f "$T/attempts.txt" attempts.db
check "db5.3_dump reads attempts.db" test -s "$T/attempts.txt"
equal "no history of a deleted call is left in attempts.db" \
	"$(grep -c -e "^ $first/" -e "^ $id/" "$T/attempts.txt")" 0
check "the done call of part 1 is still there" state_is "$again" done

done_testing

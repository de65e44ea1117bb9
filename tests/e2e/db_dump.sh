#!/bin/sh
# db_dump.sh - the queue is readable with Berkeley DB's own tool: the
# `db5.3_dump -p` output of a pending call shows its fields as text, and a
# dead call keeps its payload and reason in dead.db.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

DUMP=$(command -v db5.3_dump || command -v db_dump)
write_conf "[queue default]" "retry_interval = 1h" "wake_on_new_version = no"
plugin "$TPLUGINS_V1/flaky.so" flaky
start_host

id=$(enqueue default flaky work '{"order": 17, "note": "two words"}')
wait_until "the first attempt" attempts_at_least "$id" 1
"$DUMP" -p -h "$T/data" -f "$T/calls.txt" calls.db
check "db5.3_dump reads calls.db of a live host" test -s "$T/calls.txt"
line=$(grep "^ cagecall/1 " "$T/calls.txt")
contains "the record starts with the next attempt time" "$line" " cagecall/1 next=20"
contains "it shows the id" "$line" "id=$id"
contains "the queue" "$line" "queue=default"
contains "the module" "$line" "module=flaky"
contains "the method" "$line" "method=work"
contains "the attempt count" "$line" "attempts=1"
contains "the module version of the last attempt" "$line" "version=1+"
contains "the last error, quoted" "$line" 'error="flaky v1 always fails"'
contains "and the payload as text" "$line" 'payload={"order": 17, "note": "two words"}'
next=$(field "$id" next_attempt)
contains "next= matches the API's next_attempt" "$line" "next=$next"
grep -q "^ $id\$" "$T/calls.txt"
ok $? "the key is the call id"

"$DUMP" -p -h "$T/data" -f "$T/due.txt" due.db
check "due.db indexes the call by its next attempt" grep -q "^ $next\$" "$T/due.txt"
"$DUMP" -p -h "$T/data" -f "$T/attempts.txt" attempts.db
check "attempts.db holds the attempt as text" \
	grep -q "^ cageattempt/1 at=.* version=1+[0-9a-f]* outcome=retry error=\"flaky v1 always fails\"" "$T/attempts.txt"

dead=$(enqueue default flaky fail 'bad input')
wait_until "the failing call to be dead" state_is "$dead" dead
"$DUMP" -p -h "$T/data" -f "$T/dead.txt" dead.db
line=$(grep "^ cagecall/1 dead=" "$T/dead.txt")
contains "a dead call keeps its reason" "$line" 'error="handler failed: flaky refuses"'
contains "and its payload" "$line" "payload=bad input"
equal "a dead call can be requeued" "$(status POST "/v1/calls/$dead/requeue")" 202
contains "the answer names it pending" "$(body)" '"state": "pending"'
wait_until "the requeued call to fail again" attempts_at_least "$dead" 2
wait_until "the requeued call to be dead again" state_is "$dead" dead
equal "requeueing a pending call is refused" "$(status POST "/v1/calls/$id/requeue")" 409
equal "GET is not a requeue" "$(status GET "/v1/calls/$id/requeue")" 405
stop_host
check "the dump still reads after a clean stop" "$DUMP" -p -h "$T/data" -f "$T/after.txt" calls.db
check "with the pending call in it" grep -q "id=$id" "$T/after.txt"

done_testing

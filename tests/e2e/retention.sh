#!/bin/sh
# retention.sh - finished calls are forgotten: beyond done_keep_max, oldest
# first, and once older than done_retention; pending calls never are; a
# forgotten call's Idempotency-Key may be used again.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "done_keep_max = 5" "done_retention = 1h" \
	"[queue slow]" "retry_interval = 1h" "retry_max_interval = 1h"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS/alwaysfail.so" alwaysfail
start_host

wait_until "alwaysfail to be loaded" log_has "loaded alwaysfail@1+" ||
	bail "alwaysfail was not loaded"
pending=$(enqueue slow alwaysfail work x)
wait_until "the failing call's first attempt" attempts_at_least "$pending" 1
ids=
for i in 1 2 3 4 5 6 7 8; do
	id=$(curl -s -H "Idempotency-Key: key-$i" -d "call $i" "$URL/v1/enqueue/default/echo/echo" |
		sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
	wait_until "call $i to finish" state_is "$id" done
	ids="$ids $id"
done
set -- $ids
gone() { [ "$(status GET "/v1/calls/$1")" = 404 ]; }
wait_until "the 3 oldest finished calls to be forgotten" gone "$3"
ok $? "beyond done_keep_max = 5 the oldest finished calls are forgotten"
check "the first is forgotten too" gone "$1"
kept=0
for id in $4 $5 $6 $7 $8; do
	[ "$(status GET "/v1/calls/$id")" = 200 ] && kept=$((kept + 1))
done
equal "the 5 newest are kept (done_retention is 1 h)" "$kept" 5
equal "the pending call is kept" "$(field "$pending" state)" pending
check "the metric counts the finished calls forgotten before done_retention" \
	test "$(metric cagehost_done_swept_early_total)" -ge 3
# (the scheduler looks at the sweep's count on its next tick)
early_warned() {
	log_has "done_keep_max (5) made the host forget [0-9]* finished call(s) before done_retention (1h) had passed"
}
wait_until "the warning that Idempotency-Keys are forgotten early" early_warned
ok $? "the log warns that Idempotency-Keys are forgotten early"
again=$(curl -s -H "Idempotency-Key: key-1" -d again "$URL/v1/enqueue/default/echo/echo")
check "a forgotten call's Idempotency-Key makes a new call" \
	sh -c "! echo '$again' | grep -q duplicate"
dup=$(curl -s -H "Idempotency-Key: key-8" -d again "$URL/v1/enqueue/default/echo/echo")
contains "a kept call's key is still a duplicate" "$dup" '"duplicate": true'
stop_host

write_conf "done_keep_max = 5" "done_retention = 1s" \
	"[queue slow]" "retry_interval = 1h" "retry_max_interval = 1h"
start_host
wait_until "finished calls older than done_retention to be forgotten" gone "$8"
ok $? "past done_retention = 1s every finished call is forgotten"
equal "the pending call is still kept" "$(field "$pending" state)" pending
check "the host logged no sweep failure" sh -c "! grep -q 'removing old finished calls:' '$T/host.log'"

done_testing

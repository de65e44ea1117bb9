#!/bin/sh
# dead_calls.sh - the dead store can be looked through and emptied without
# knowing the ids: GET /v1/calls?state=dead (filters, pages, JSON or text),
# `cagectl dead`, requeueing what it lists, the unfinished calls listed the
# same way (state=pending, `cagectl pending`: waiting, or at their first
# attempt), requeueing and deleting a page
# at a time (POST /v1/calls/requeue, DELETE /v1/calls, `cagectl dead
# --requeue / --delete`), deleting one (DELETE /v1/calls/ID), and the
# cagehost_dead_calls gauge following all of it.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue other]"
plugin "$PLUGINS/echo.so" echo
start_host
wait_until "echo to be loaded" log_has "loaded echo@" || bail "echo was not loaded"

dead_calls() { metric cagehost_dead_calls; }
dead_calls_are() { [ "$(dead_calls)" = "$1" ]; }
equal "no dead calls at first" "$(dead_calls)" 0

: > "$T/ids"
for q in default default default default default other other other; do
	enqueue "$q" echo fail "to $q" >> "$T/ids"
done
done_id=$(enqueue default echo echo fine)
wait_until "8 dead calls" dead_calls_are 8
ok $? "cagehost_dead_calls counts the 8 calls that failed"
wait_until "the echo call to be done" state_is "$done_id" done
equal "/metrics counts echo's 8 failed attempts" \
	"$(metric 'cagehost_module_attempts_total{module="echo",outcome="fail"}')" 8
equal "and its 1 that succeeded" \
	"$(metric 'cagehost_module_attempts_total{module="echo",outcome="ok"}')" 1

# ids_of: the ids in a JSON page, in order, one per line
ids_of() { grep -o '"id": "[0-9a-f]*"' | sed 's/.*: "\(.*\)"/\1/'; }
list() { curl -s -m "$CURL_LIMIT" "$URL/v1/calls?$1"; }

page=$(list "state=dead")
equal "the list has the 8 dead calls, oldest first" "$(printf '%s' "$page" | ids_of)" \
	"$(cat "$T/ids")"
contains "and no next page" "$page" '"next": null}'
contains "each with its queue, call and reason" "$page" \
	'"queue": "other", "module": "echo", "method": "fail", "attempts": 1'
contains "and its last error" "$page" '"last_error": "handler failed: echo.fail was asked to fail"'
equal "queue=other lists its 3" "$(list "state=dead&queue=other" | ids_of)" \
	"$(tail -3 "$T/ids")"
equal "module and method filter too" "$(list "state=dead&module=echo&method=fail" | ids_of | wc -l)" 8
equal "a module with no dead calls lists none" "$(list "state=dead&module=billing")" \
	'{"calls": [], "next": null}'

# pages of 3: 3 + 3 + 2, each starting after the last one
: > "$T/paged"
after=
pages=0
while :; do
	page=$(list "state=dead&limit=3${after:+&after=$after}")
	printf '%s' "$page" | ids_of >> "$T/paged"
	pages=$((pages + 1))
	after=$(printf '%s' "$page" | sed -n 's/.*"next": "\([0-9a-f]*\)"}$/\1/p')
	[ -n "$after" ] && [ "$pages" -lt 10 ] || break
done
equal "pages of 3 list every dead call once, in order" "$(cat "$T/paged")" "$(cat "$T/ids")"
check "in 3 or 4 pages" test "$pages" -ge 3 -a "$pages" -le 4

equal "state=done is refused" "$(status GET "/v1/calls?state=done")" 400
contains "saying what it takes" "$(body)" "takes state=pending (calls not finished yet) or state=dead"
equal "an unknown option is refused" "$(status GET "/v1/calls?state=dead&color=red")" 400
equal "limit=0 is refused" "$(status GET "/v1/calls?state=dead&limit=0")" 400
equal "a malformed after= is refused" "$(status GET "/v1/calls?state=dead&after=xyz")" 400
equal "POST is not a listing" "$(status POST "/v1/calls?state=dead")" 405

out=$("$CAGECTL" dead -q other)
ok $? "cagectl dead -q other succeeds"
equal "it prints one line per dead call of the queue" "$(printf '%s\n' "$out" | cut -d' ' -f1)" \
	"$(tail -3 "$T/ids")"
contains "naming the call and its error" "$(printf '%s\n' "$out" | head -1)" \
	"  other  echo.fail  attempts=1  died="
equal "cagectl dead lists all 8" "$("$CAGECTL" dead | wc -l)" 8
"$CAGECTL" dead -x y > /dev/null 2>&1
equal "an unknown option is a usage error" "$?" 2

# requeue what the listing names, with echo gone: the calls wait, and the
# gauge drops by as many
mv "$T/plugins/echo.so" "$T/echo.so.away"
wait_until "echo to go" log_has "module echo is no longer available" || bail "echo stayed"
"$CAGECTL" dead -q other | cut -d' ' -f1 | xargs -n1 "$CAGECTL" requeue > "$T/requeued"
equal "the 3 calls of queue other are requeued" "$(grep -c '^requeued ' "$T/requeued")" 3
wait_until "5 dead calls" dead_calls_are 5
ok $? "cagehost_dead_calls drops to 5"
equal "the listing no longer has them" "$(list "state=dead&queue=other")" \
	'{"calls": [], "next": null}'

# waiting calls are listed the same way: the 3 requeued wait for echo
equal "state=pending lists the 3 waiting calls of queue other" \
	"$(list "state=pending&queue=other" | ids_of)" "$(tail -3 "$T/ids")"
contains "with their next attempt" "$(list "state=pending&queue=other&limit=1")" \
	'"next_attempt": "'
out=$("$CAGECTL" pending -m echo -f fail)
equal "cagectl pending lists them too" "$(printf '%s\n' "$out" | cut -d' ' -f1)" \
	"$(tail -3 "$T/ids")"
contains "one line each, with the next attempt" "$(printf '%s\n' "$out" | head -1)" \
	"  other  echo.fail  attempts="
equal "waiting calls are not deleted a page at a time" \
	"$(status DELETE "/v1/calls?state=pending")" 400
contains "saying so" "$(body)" "only dead calls are deleted a page at a time"
"$CAGECTL" pending --requeue > /dev/null 2>&1
equal "cagectl pending --requeue is a usage error" "$?" 2

# a call at its first attempt (in new.db, not calls.db) is listed too, in
# id order among the others: crashy.slow runs until $T/release exists
plugin "$TPLUGINS/crashy.so" crashy
wait_until "crashy to be loaded" log_has "loaded crashy@" || bail "crashy was not loaded"
running=$(enqueue other crashy slow "$T/release")
wait_until "crashy.slow to start" test -e "$T/release.started"
page=$(list "state=pending&queue=other")
equal "state=pending lists a call running its first attempt after the older ones" \
	"$(printf '%s' "$page" | ids_of)" "$(tail -3 "$T/ids"; echo "$running")"
contains "as running, with no attempt made yet" "$page" \
	"{\"id\": \"$running\", \"state\": \"running\", \"queue\": \"other\", \"module\": \"crashy\", \"method\": \"slow\", \"attempts\": 0"
equal "pages of 2 give the same 4 calls" \
	"$(list "state=pending&queue=other&limit=2" | ids_of;
	   after=$(list "state=pending&queue=other&limit=2" | sed -n 's/.*"next": "\([0-9a-f]*\)"}$/\1/p');
	   list "state=pending&queue=other&limit=2&after=$after" | ids_of)" \
	"$(tail -3 "$T/ids"; echo "$running")"
equal "a module filter selects it alone" "$("$CAGECTL" pending -m crashy | cut -d' ' -f1)" \
	"$running"
equal "cagehost_queue_attempts_in_flight counts it in queue other" \
	"$(metric 'cagehost_queue_attempts_in_flight{queue="other"}')" 1
equal "and nothing in queue default" \
	"$(metric 'cagehost_queue_attempts_in_flight{queue="default"}')" 0
touch "$T/release"
wait_until "crashy.slow to be done" state_is "$running" done
ok $? "it is done once released"
equal "and no longer listed" "$(list "state=pending&module=crashy")" '{"calls": [], "next": null}'
in_flight_other_is_0() {
	[ "$(metric 'cagehost_queue_attempts_in_flight{queue="other"}')" = 0 ]
}
wait_until "queue other to have no attempt in flight" in_flight_other_is_0
ok $? "nor counted in flight"

# the count survives a restart (counted from dead.db at open)
stop_host
start_host
equal "after a restart cagehost_dead_calls is still 5" "$(dead_calls)" 5

# requeue and delete without the ids: a page at a time, or all with cagectl
dead_ids=$(list "state=dead" | ids_of)
first=$(printf '%s\n' "$dead_ids" | sed -n 1p)
second=$(printf '%s\n' "$dead_ids" | sed -n 2p)
third=$(printf '%s\n' "$dead_ids" | sed -n 3p)
pending=$(tail -1 "$T/ids")
equal "a pending call is not deleted" "$(status DELETE "/v1/calls/$pending")" 409
contains "saying why" "$(body)" "is pending, not dead: only dead calls are deleted"
equal "a dead call is deleted by its id" "$(status DELETE "/v1/calls/$first")" 200
equal "which says so" "$(body)" "{\"id\": \"$first\", \"state\": \"deleted\"}"
equal "and it is gone" "$(status GET "/v1/calls/$first")" 404
equal "with its history" "$(status DELETE "/v1/calls/$first")" 404
equal "cagehost_dead_calls drops to 4" "$(dead_calls)" 4
equal "a requeue that selects nothing" "$(status POST "/v1/calls/requeue?state=dead&module=billing")" 200
equal "requeues nothing" "$(body)" '{"requeued": 0, "next": null}'
equal "a page of 2 is requeued" "$(status POST "/v1/calls/requeue?state=dead&limit=2")" 200
equal "saying how many and where the next page starts" "$(body)" \
	"{\"requeued\": 2, \"next\": \"$third\"}"
equal "its calls are pending" "$(field "$second" state) $(field "$third" state)" "pending pending"
equal "cagehost_dead_calls drops to 2" "$(dead_calls)" 2
equal "GET is no requeue" "$(status GET "/v1/calls/requeue?state=dead")" 405
equal "a requeue takes state=dead" "$(status POST "/v1/calls/requeue?module=echo")" 400
equal "cagectl dead --delete deletes the rest" "$("$CAGECTL" dead --delete)" "deleted 2 dead calls"
equal "cagehost_dead_calls drops to 0" "$(dead_calls)" 0
equal "none is left" "$(list "state=dead")" '{"calls": [], "next": null}'
equal "cagectl dead --requeue with none" "$("$CAGECTL" dead --requeue -m echo)" \
	"requeued 0 dead calls"
"$CAGECTL" dead --requeue --delete > /dev/null 2>&1
equal "--requeue and --delete together are a usage error" "$?" 2

# a deleted call's Idempotency-Key is free again
mv "$T/echo.so.away" "$T/plugins/echo.so"
keyed() {
	curl -s -m "$CURL_LIMIT" -H "Idempotency-Key: dead-key" -d x "$URL/v1/enqueue/default/echo/fail" |
		sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p'
}
wait_until "echo to be back" log_has "loaded echo@.*methods" || bail "echo did not come back"
key_id=$(keyed)
wait_until "the keyed call to die" state_is "$key_id" dead
equal "the key names the dead call" "$(keyed)" "$key_id"
equal "cagectl delete deletes it" "$("$CAGECTL" delete "$key_id")" "deleted $key_id"
"$CAGECTL" delete "$key_id" > /dev/null 2>&1
equal "a second delete finds no call (exit 1)" "$?" 1
new_id=$(keyed)
check "the key then makes a new call" test -n "$new_id" -a "$new_id" != "$key_id"

done_testing

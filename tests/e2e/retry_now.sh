#!/bin/sh
# retry_now.sh - calls that fail for a cause outside their module (a
# service down) wait out their retry delay; once the cause is fixed, an
# operator retries them now: POST /v1/calls/retry?module=M (and queue=Q,
# method=F to narrow it), `cagectl retry [-q Q] [-f F] M`.  Only the calls
# selected that wait for a retry move.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue default]" "retry_interval = 1h" "[queue other]" "retry_interval = 1h"
plugin "$TPLUGINS_V1/flaky.so" flaky
plugin "$TPLUGINS/alwaysfail.so" alwaysfail
start_host
wait_until "flaky to be loaded" log_has "loaded flaky@" || bail "flaky was not loaded"
wait_until "alwaysfail to be loaded" log_has "loaded alwaysfail@" || bail "alwaysfail was not loaded"

# flaky.gate fails while the file its payload names exists
touch "$T/gate"
: > "$T/ids"
for i in 1 2 3; do
	enqueue default flaky gate "$T/gate" >> "$T/ids"
done
: > "$T/other_ids"
for i in 1 2; do
	enqueue other flaky gate "$T/gate" >> "$T/other_ids"
done
work=$(enqueue default flaky work x)	# fails in version 1
other=$(enqueue default alwaysfail work x)
delayed=$(curl -s -m "$CURL_LIMIT" -X POST -d "$T/gate" \
	"$URL/v1/enqueue/default/flaky/gate?delay=2h" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
failed_once() { attempts_at_least "$1" 1 && state_is "$1" pending; }
all_failed_once() {
	for id in $(cat "$T/ids" "$T/other_ids") "$work" "$other"; do
		failed_once "$id" || return 1
	done
}
wait_until "the calls to fail once" all_failed_once
ok $? "7 calls failed once and wait an hour for their retry"
contains "behind a closed gate" "$(field "$(head -1 "$T/ids")" last_error)" "the gate is closed"

# the cause goes away; an hour is too long to wait
rm "$T/gate"
equal "GET is no retry" "$(status GET "/v1/calls/retry?module=flaky")" 405
equal "a retry needs module=" "$(status POST "/v1/calls/retry")" 400
equal "an unknown option is refused" "$(status POST "/v1/calls/retry?module=flaky&color=red")" 400
contains "the reason names it, and what the endpoint takes" "$(body)" \
	"unknown option color; /v1/calls/retry takes module=NAME"
equal "so is one given twice" "$(status POST "/v1/calls/retry?module=flaky&module=echo")" 400
contains "and the reason says which" "$(body)" "module is given more than once"
equal "and a queue without a module" "$(status POST "/v1/calls/retry?queue=other")" 400
equal "a module name is checked" "$(status POST "/v1/calls/retry?module=..")" 400
equal "and a queue name" "$(status POST "/v1/calls/retry?module=flaky&queue=a/b")" 400
equal "the retry of flaky's calls in queue other is accepted: 202" \
	"$(status POST "/v1/calls/retry?module=flaky&queue=other")" 202
equal "saying so" "$(body)" '{"module": "flaky", "queue": "other", "retrying": true}'
done_now() {
	for id in $(cat "$1"); do state_is "$id" done || return 1; done
}
wait_until "flaky's calls in queue other to be done" done_now "$T/other_ids"
ok $? "flaky's waiting calls in queue other ran again at once and are done"
equal "those of queue default still wait their hour" \
	"$(field "$(head -1 "$T/ids")" attempts) $(field "$(head -1 "$T/ids")" state)" "1 pending"
equal "method=gate retries the calls of flaky.gate: 202" \
	"$(status POST "/v1/calls/retry?module=flaky&method=gate")" 202
wait_until "flaky.gate's calls to be done" done_now "$T/ids"
ok $? "flaky.gate's waiting calls ran again at once and are done"
equal "at their second attempt" "$(field "$(head -1 "$T/ids")" attempts)" 2
equal "flaky.work's call still waits its hour" \
	"$(field "$work" attempts) $(field "$work" state)" "1 pending"
equal "the retry of all of flaky's calls is accepted: 202" \
	"$(status POST "/v1/calls/retry?module=flaky")" 202
equal "saying so" "$(body)" '{"module": "flaky", "retrying": true}'
wait_until "flaky.work's call to run again" attempts_at_least "$work" 2
ok $? "flaky.work's call ran again (and failed: version 1)"
equal "another module's call still waits its hour" \
	"$(field "$other" attempts) $(field "$other" state)" "1 pending"
equal "a call delayed on enqueue keeps its time" \
	"$(field "$delayed" attempts) $(field "$delayed" state)" "0 pending"
check "the log says who asked" \
	log_has "calls of flaky that wait for a retry are retried now (asked over HTTP)"
check "and which calls" \
	log_has "calls of flaky in queue other that wait for a retry are retried now"

# cagectl
equal "cagectl retry -q default -f work alwaysfail" \
	"$("$CAGECTL" retry -q default -f work alwaysfail)" \
	"the calls of alwaysfail.work in queue default waiting for a retry are being retried"
wait_until "alwaysfail's call to run again" attempts_at_least "$other" 2
ok $? "and alwaysfail's call ran again"
"$CAGECTL" retry > /dev/null 2>&1
equal "cagectl retry without a module is a usage error" "$?" 2
"$CAGECTL" retry -q a/b alwaysfail > /dev/null 2>&1
equal "and with a queue name that is not one" "$?" 2
"$CAGECTL" retry -q > /dev/null 2>&1
equal "and with -q but no queue (not taken for the module)" "$?" 2
"$CAGECTL" retry -q default -q other alwaysfail > /dev/null 2>&1
equal "and with -q given twice" "$?" 2

done_testing

#!/bin/sh
# retry_now.sh - calls that fail for a cause outside their module (a
# service down) wait out their retry delay; once the cause is fixed, an
# operator retries them now: POST /v1/calls/retry?module=M, `cagectl
# retry M`.  Only that module's calls that wait for a retry move.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue default]" "retry_interval = 1h"
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
other=$(enqueue default alwaysfail work x)
delayed=$(curl -s -m "$CURL_LIMIT" -X POST -d "$T/gate" \
	"$URL/v1/enqueue/default/flaky/gate?delay=2h" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
failed_once() { attempts_at_least "$1" 1 && state_is "$1" pending; }
all_failed_once() {
	for id in $(cat "$T/ids") "$other"; do failed_once "$id" || return 1; done
}
wait_until "the calls to fail once" all_failed_once
ok $? "4 calls failed once and wait an hour for their retry"
contains "behind a closed gate" "$(field "$(head -1 "$T/ids")" last_error)" "the gate is closed"

# the cause goes away; an hour is too long to wait
rm "$T/gate"
equal "GET is no retry" "$(status GET "/v1/calls/retry?module=flaky")" 405
equal "a retry needs module=" "$(status POST "/v1/calls/retry")" 400
equal "and only that" "$(status POST "/v1/calls/retry?module=flaky&queue=default")" 400
equal "a module name is checked" "$(status POST "/v1/calls/retry?module=..")" 400
equal "the retry of flaky's calls is accepted: 202" \
	"$(status POST "/v1/calls/retry?module=flaky")" 202
equal "saying so" "$(body)" '{"module": "flaky", "retrying": true}'
done_now() {
	for id in $(cat "$T/ids"); do state_is "$id" done || return 1; done
}
wait_until "flaky's calls to be done" done_now
ok $? "flaky's waiting calls ran again at once and are done"
equal "at their second attempt" "$(field "$(head -1 "$T/ids")" attempts)" 2
equal "another module's call still waits its hour" \
	"$(field "$other" attempts) $(field "$other" state)" "1 pending"
equal "a call delayed on enqueue keeps its time" \
	"$(field "$delayed" attempts) $(field "$delayed" state)" "0 pending"
check "the log says who asked" \
	log_has "calls of flaky that wait for a retry are retried now (asked over HTTP)"

# cagectl
equal "cagectl retry alwaysfail" "$("$CAGECTL" retry alwaysfail)" \
	"the calls of alwaysfail waiting for a retry are being retried"
wait_until "alwaysfail's call to run again" attempts_at_least "$other" 2
ok $? "and alwaysfail's call ran again"
"$CAGECTL" retry > /dev/null 2>&1
equal "cagectl retry without a module is a usage error" "$?" 2

done_testing

#!/bin/sh
# delay.sh - an enqueue with ?delay=DURATION: the call is stored and
# acknowledged at once, its first attempt waits out the delay (and survives
# a restart), a new version of its module does not run it early, and a
# delay that is malformed, unknown or longer than the queue's lifetime is
# refused with 400 and nothing stored.  cagectl passes -d through.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue default]" "retry_interval = 1h" "lifetime = 2h"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS_V1/flaky.so" flaky
start_host

# ms since the epoch of an ISO time the host printed
ms() { date -u -d "$1" +%s%3N; }
enqueued_total() { metric cagehost_enqueued_total; }

# --- a delayed call waits, and survives a restart ---
equal "an enqueue with delay=30m is accepted" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=30m' later)" 202
id=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body")
equal "the delayed call is pending" "$(field "$id" state)" pending
equal "it has had no attempt" "$(field "$id" attempts)" 0
contains "so its JSON has no version or finish time yet (null)" "$(curl -s "$URL/v1/calls/$id")" \
	'"finished": null, "version": null, "last_error": null'
gap=$(( $(ms "$(field "$id" next_attempt)") - $(ms "$(field "$id" enqueued)") ))
equal "its first attempt is 30 minutes after its enqueue" "$gap" 1800000
next=$(field "$id" next_attempt)
stop_host
start_host
equal "after a restart it is still pending" "$(field "$id" state)" pending
equal "with the same next attempt" "$(field "$id" next_attempt)" "$next"
equal "and still no attempt" "$(field "$id" attempts)" 0

# --- a short delay runs, no sooner than asked ---
equal "an enqueue with delay=1500ms is accepted" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=1500ms' soon)" 202
id2=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body")
wait_until "the short-delay call to finish" state_is "$id2" done
ran=$(curl -s "$URL/v1/calls/$id2" | sed -n 's/.*"history": \[{"attempt": 1, "at": "\([^"]*\)".*/\1/p')
waited=$(( $(ms "$ran") - $(ms "$(field "$id2" enqueued)") ))
echo "# the call ran ${waited} ms after its enqueue"
check "it ran at least 1500 ms after its enqueue" test "$waited" -ge 1500

# --- a new version of the module does not run a delayed call early ---
equal "a delayed call to flaky is accepted" \
	"$(status POST '/v1/enqueue/default/flaky/work?delay=30m' x)" 202
waiting=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body")
failed=$(enqueue default flaky work y)
wait_until "the undelayed call's first attempt" attempts_at_least "$failed" 1
plugin "$TPLUGINS_V2/flaky.so" flaky
wait_until "the fix to retry the failed call" state_is "$failed" done
equal "the delayed call is still pending" "$(field "$waiting" state)" pending
equal "with no attempt" "$(field "$waiting" attempts)" 0

# --- bad delays: 400 with the reason, nothing stored ---
before=$(enqueued_total)
equal "a delay without a unit is 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=30' x)" 400
contains "the reason names the missing unit" "$(body)" "no unit"
equal "an unknown option is 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?dealy=30s' x)" 400
contains "the reason names the option" "$(body)" "unknown option dealy"
equal "an option without a value is 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay' x)" 400
contains "the reason says how options are written and which there are" "$(body)" \
	"malformed query string: options are NAME=VALUE, joined by &; enqueue takes delay=DURATION"
equal "a delay longer than the queue's lifetime is 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=3h' x)" 400
contains "the reason names the lifetime" "$(body)" "lifetime of queue default (2h)"
equal "a negative delay is 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=-5s' x)" 400
equal "two delays are 400" \
	"$(status POST '/v1/enqueue/default/echo/noop?delay=1h&delay=2h' x)" 400
contains "saying so" "$(body)" "more than once"
equal "none of them was stored" "$(enqueued_total)" "$before"

# --- cagectl ---
"$CAGECTL" --help > "$T/out" 2> "$T/err"
equal "cagectl --help exits with status 0" "$?" 0
contains "and prints the usage on stdout" "$(cat "$T/out")" "usage: cagectl [-u URL] call"
"$CAGECTL" frobnicate > "$T/out" 2> "$T/err"
equal "an unknown command is a usage error (exit status 2)" "$?" 2
contains "with the usage on stderr" "$(cat "$T/err")" "usage: cagectl"
out=$("$CAGECTL" enqueue -d 20m echo noop z)
id3=${out%% *}
gap=$(( $(ms "$(field "$id3" next_attempt)") - $(ms "$(field "$id3" enqueued)") ))
equal "cagectl enqueue -d 20m delays the call by 20 minutes" "$gap" 1200000
"$CAGECTL" enqueue -d 20 echo noop z 2> "$T/err"
equal "cagectl reports a bad delay with exit status 1" "$?" 1
contains "and the host's reason" "$(cat "$T/err")" "no unit"
"$CAGECTL" enqueue -d "1 h" echo noop z 2> "$T/err"
equal "a delay cagectl cannot send is a usage error (exit status 2)" "$?" 2
contains "naming what -d takes" "$(cat "$T/err")" "-d takes a duration such as 90s"
# what cagectl cannot send as given is refused before anything is sent
before=$(enqueued_total)
long=$(printf 'k%.0s' $(seq 300))
"$CAGECTL" enqueue -k "$long" echo noop z 2> "$T/err"
equal "a 300-character idempotency key is a usage error (exit status 2)" "$?" 2
contains "saying how long a key may be" "$(cat "$T/err")" "1 to 200 characters"
"$CAGECTL" enqueue -k "$(printf 'a\r\nX-Evil: 1')" echo noop z 2> "$T/err"
equal "a key with a line break is a usage error" "$?" 2
"$CAGECTL" enqueue -q 'de/fault' echo noop z 2> "$T/err"
equal "a queue name with a / is a usage error" "$?" 2
contains "naming the queue" "$(cat "$T/err")" "not a valid queue name"
"$CAGECTL" show '../../healthz' 2> "$T/err"
equal "so is a call id with a /" "$?" 2
"$CAGECTL" -u "https://127.0.0.1:$PORT" call echo echo x 2> "$T/err"
equal "an https URL is a usage error" "$?" 2
contains "saying cagectl speaks plain HTTP" "$(cat "$T/err")" "plain HTTP only"
"$CAGECTL" -u "$URL/prefix" call echo echo x 2> "$T/err"
equal "so is a URL with a path (it was dropped)" "$?" 2
equal "a URL with a trailing / works" "$("$CAGECTL" -u "$URL/" call echo echo x)" x
equal "nothing was stored" "$(enqueued_total)" "$before"
check "the host is alive at the end" host_alive
done_testing

#!/bin/sh
# queue_concurrency.sh - a queue's concurrency caps its attempts at once,
# and its backlog does not hold up other queues: with more of its calls due
# than the host dispatches at a time (1,024), a new call and a delayed call
# of another queue still run at once.  (Scans of the due calls used to stop
# among the held-back ones, and every queue waited.)
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

BACKLOG=1200
# four workers: the two slow attempts leave two for the other queue
write_conf "workers = 4" "[queue slow]" "concurrency = 2" "attempt_timeout = 120s"
plugin "$TPLUGINS/crashy.so" crashy
plugin "$PLUGINS/echo.so" echo
start_host

ok_attempts() { metric 'cagehost_attempts_total{outcome="ok"}'; }
ok_at_least() { [ "$(ok_attempts)" -ge "$1" ] 2>/dev/null; }
slow_running() { metric 'cagehost_queue_attempts_in_flight{queue="slow"}'; }
slow_running_is() { [ "$(slow_running)" = "$1" ]; }

# crashy.slow with a file's path waits until that file exists
printf '%s' "$T/gate" > "$T/gate.path"
urls=$(i=0; while [ $i -lt $BACKLOG ]; do echo "$URL/v1/enqueue/slow/crashy/slow"; i=$((i + 1)); done)
# shellcheck disable=SC2086 # one URL per word: curl sends them all on one connection
curl -s -m "$CURL_LIMIT" -o /dev/null -w '%{http_code}\n' -X POST --data-binary @"$T/gate.path" \
	$urls > "$T/codes"
equal "all $BACKLOG calls to the slow queue are accepted" \
	"$(grep -c '^202$' "$T/codes")" "$BACKLOG"
wait_until "two of them to start" slow_running_is 2
check "two of them started" slow_running_is 2

# --- the rest of the backlog waits; other queues do not ---
fresh=$(enqueue default echo upper fresh)
wait_until "a new call of another queue to finish" state_is "$fresh" done
equal "a new call of another queue runs at once" "$(field "$fresh" state)" done
equal "a delayed call of another queue is accepted" \
	"$(status POST '/v1/enqueue/default/echo/upper?delay=1s' later)" 202
later=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body")
wait_until "the delayed call to finish" state_is "$later" done
equal "and so does a delayed one, once due" "$(field "$later" state)" done
equal "still only two of the slow queue run" "$(slow_running)" 2
equal "and none of its calls has finished" "$(ok_attempts)" 2

# --- open the gate: the backlog drains, two at a time ---
max=0
touch "$T/gate"
deadline=$(( $(now_ms) + WAIT_LIMIT * 1000 ))
until ok_at_least $((BACKLOG + 2)) || [ "$(now_ms)" -ge "$deadline" ]; do
	n=$(slow_running)
	[ "${n:-0}" -gt "$max" ] && max=$n
	sleep 0.02
done
equal "the whole backlog ran" "$(ok_attempts)" $((BACKLOG + 2))
check "never more than two at once (seen: $max)" test "$max" -le 2
check "the host is alive at the end" host_alive
done_testing

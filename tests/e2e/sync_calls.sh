#!/bin/sh
# sync_calls.sh - synchronous calls and their error statuses, request size
# limits, health and metrics, and Idempotency-Key on enqueue.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "max_body_size = 64k" "max_header_size = 4k" "sync_timeout = 2s"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS/crashy.so" crashy
plugin "$TPLUGINS_V1/flaky.so" flaky
start_host

equal "healthz answers 200" "$(status GET /healthz)" 200
equal "echo.echo replies 200" "$(status POST /v1/call/echo/echo 'hello world')" 200
equal "echo.echo replies with its payload" "$(body)" "hello world"
printf 'a\000b\377' > "$T/binary"
curl -s --data-binary @"$T/binary" "$URL/v1/call/echo/echo" > "$T/binary.back"
check "binary payloads come back byte for byte" cmp -s "$T/binary" "$T/binary.back"

equal "unknown module is 404" "$(status POST /v1/call/nosuch/echo x)" 404
contains "unknown module says so" "$(body)" '"error": "no module nosuch"'
equal "unknown method is 404" "$(status POST /v1/call/echo/nosuch x)" 404
contains "unknown method names module, version and method" "$(body)" "module echo@1.0+"
equal "an empty module name is 400" "$(status POST /v1/call//echo x)" 400
contains "saying the name is invalid" "$(body)" "invalid module name ''"
equal "an empty module name in an enqueue is 400" "$(status POST /v1/enqueue/default//noop x)" 400
equal "a trailing slash is allowed" "$(status POST /v1/call/echo/echo/ x)" 200
equal "so is a doubled leading one (a base URL ending in /)" \
	"$(curl -s -o /dev/null -w '%{http_code}' --path-as-is -d x "$URL//v1/call/echo/echo")" 200
equal "CAGE_FAIL is 422" "$(status POST /v1/call/echo/fail x)" 422
contains "CAGE_FAIL carries the handler's message" "$(body)" "echo.fail was asked to fail"
equal "CAGE_RETRY is 503" "$(status POST /v1/call/flaky/work x)" 503
contains "CAGE_RETRY carries the handler's message" "$(body)" "flaky v1 always fails"
equal "a segfaulting handler is 502" "$(status POST /v1/call/crashy/segv x)" 502
contains "the crash is named with module and version" "$(body)" "worker killed by SIGSEGV in crashy@1+"
equal "an aborting handler is 502" "$(status POST /v1/call/crashy/abort x)" 502
contains "abort is named" "$(body)" "worker killed by SIGABRT in crashy@1+"
equal "a handler calling exit() is 502" "$(status POST /v1/call/crashy/exit x)" 502
contains "exit status is named" "$(body)" "worker exited with status 3 in crashy@1+"
equal "a hanging handler is 504" "$(status POST /v1/call/crashy/hang x)" 504
contains "the timeout is named" "$(body)" "attempt timed out after 2000 ms"
equal "the host serves on after all that" "$(status POST /v1/call/echo/upper abc)" 200
equal "and the reply is right" "$(body)" "ABC"
check "the host process is still alive" host_alive

equal "invalid module name is 400" "$(status POST /v1/call/..%2Fetc/x x)" 400
equal "a name with a dot first is 400" "$(status POST /v1/call/.hidden/x x)" 400
equal "GET on a call endpoint is 405" "$(status GET /v1/call/echo/echo)" 405
code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X PUT -d x "$URL/v1/call/echo/echo")
equal "PUT on a call endpoint is 405 too (not evhttp's 501)" "$code" 405
contains "in JSON, saying to use POST" "$(body)" '{"error": "use POST"}'
check "with an Allow header" grep -qi '^Allow: POST' "$T/headers"
equal "POST to /healthz is 405" "$(status POST /healthz x)" 405
# a HEAD answer has the length of the body it leaves out, and no body: the
# next answer on the connection follows it directly
bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
	printf "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3 &&
	cat <&3' "$PORT" | tr -d '\r' > "$T/head.out"
equal "HEAD then GET on one connection: two answers" "$(grep -c '^HTTP/1.1 200' "$T/head.out")" 2
equal "one body between them (the GET's)" "$(grep -cx ok "$T/head.out")" 1
check "the HEAD answer gives the length" sh -c "sed '/^\$/q' '$T/head.out' | grep -qx 'Content-Length: 3'"
equal "unknown endpoint is 404" "$(status GET /v2/whatever)" 404
head -c 70000 /dev/zero > "$T/big"
code=$(curl -s -o "$T/body" -w '%{http_code}' --data-binary @"$T/big" "$URL/v1/call/echo/echo")
equal "a body over max_body_size is 413" "$code" 413
contains "in JSON, naming the setting" "$(body)" '{"error": "the body is over max_body_size"}'
long=$(head -c 5000 /dev/zero | tr '\0' a)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Long: $long" -d x "$URL/v1/call/echo/echo")
equal "headers over max_header_size are 431" "$code" 431
equal "the host serves on after oversized requests" "$(status POST /v1/call/echo/echo ok)" 200

equal "enqueue to an unknown queue is 404" "$(status POST /v1/enqueue/nosuch/echo/echo x)" 404
contains "and names the queue" "$(body)" "no queue nosuch"
a=$(curl -s -H 'Idempotency-Key: order-42' -d one "$URL/v1/enqueue/default/echo/echo")
b=$(curl -s -H 'Idempotency-Key: order-42' -d two "$URL/v1/enqueue/default/echo/echo")
ida=$(echo "$a" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
idb=$(echo "$b" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
check "the first enqueue with a key gets an id" test -n "$ida"
equal "a repeated Idempotency-Key returns the first call's id" "$idb" "$ida"
contains "and says it is a duplicate" "$b" '"duplicate": true'
wait_until "the keyed call to finish" state_is "$ida" done
equal "HEAD of a call is 200" "$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/v1/calls/$ida")" 200
# the text form for an Accept that lists text/plain, in any case or place
for accept in 'text/plain' 'TEXT/Plain' 'text/html, text/plain;q=0.5'; do
	contains "Accept: $accept gives the text form" \
		"$(curl -s -H "Accept: $accept" "$URL/v1/calls/$ida")" "id:            $ida"
done
for accept in 'text/plain;q=0' 'text/plainer' 'text/*'; do
	contains "Accept: $accept gives JSON" \
		"$(curl -s -H "Accept: $accept" "$URL/v1/calls/$ida")" "{\"id\": \"$ida\""
done
n=$(metric cagehost_enqueued_total)
equal "only one call was stored" "$n" 1
contains "the stored call ran with the first payload" "$(curl -s "$URL/v1/calls/$ida")" '"attempts": 1'
c=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Idempotency-Key: order-42' -d one \
	"$URL/v1/enqueue/default/echo/upper")
equal "the same key for another method is 422" "$c" 422
contains "naming the call it was first used for" "$(body)" "default/echo.echo (call $ida)"
c=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Idempotency-Key: order-43' \
	-H 'Idempotency-Key: order-44' -d one "$URL/v1/enqueue/default/echo/echo")
equal "two Idempotency-Keys are 400" "$c" 400
equal "neither stored a call" "$(metric cagehost_enqueued_total)" 1
equal "metrics answer 200" "$(status GET /metrics)" 200
contains "metrics are Prometheus text" "$(body)" "# TYPE cagehost_attempts_total counter"

# workers are exec'ed copies of the host's program, named for ps and top
all_workers_named() {
	for w in $(pgrep -P "$HOST_PID"); do
		[ "$(cat "/proc/$w/comm")" = cagehost-worker ] || return 1
	done
}
check "the workers show as cagehost-worker" all_workers_named

# stopping the host while a sync call runs: a clean exit (under the
# sanitizers, a sync call left unfreed would make this exit status 23)
busy_workers() {
	[ "$(metric cagehost_workers_busy)" -ge 1 ]
}
curl -s -o /dev/null -d x "$URL/v1/call/crashy/sleep" &
wait_until "the sleeping sync call to reach a worker" busy_workers
kill -TERM "$HOST_PID"
wait "$HOST_PID"
equal "the host exits with status 0 when stopped during a sync call" "$?" 0
HOST_PID=

# a sync call that has not reached a worker within sync_timeout of its
# arrival is 504 and never runs (its caller may try again).  One worker,
# held by a queued call until $T/release exists.
remove_data_dir "$T/data"
write_conf "workers = 1" "sync_timeout = 1s" "[queue default]" "attempt_timeout = 60s"
start_host
id=$(enqueue default crashy slow "$T/release")
wait_until "the queued call to take the worker" busy_workers
started=$(now_ms)
c=$(curl -s -m 20 -o "$T/body" -w '%{http_code}' -d 5 "$URL/v1/call/crashy/slow")
took=$(( $(now_ms) - started ))
equal "a sync call that finds no free worker within sync_timeout is 504" "$c" 504
contains "saying it did not run" "$(body)" "no worker was free within sync_timeout (1000 ms); the call did not run"
check "answered at sync_timeout, not after (${took} ms)" test "$took" -lt 30000
touch "$T/release"
wait_until "the queued call to finish" state_is "$id" done
equal "then a sync call runs at once" "$(status POST /v1/call/echo/echo after)" 200
equal "the timed-out call did not run once the worker was free" \
	"$(log_count 'crashy slow done')" 1
# the same for a call parked while a new module is checked (the check needs
# the busy worker too), past its sync_timeout by the time the check is done
id=$(enqueue default crashy slow "$T/release2")
wait_until "the queued call to take the worker" busy_workers
before=$(metric cagehost_sync_calls_total)
plugin "$TPLUGINS/crashy.so" crashy2
curl -s -m 30 -o "$T/parked.body" -w '%{http_code}' -d 5 "$URL/v1/call/crashy2/slow" \
	> "$T/parked.status" &
parked=$!
arrived() { [ "$(metric cagehost_sync_calls_total)" -gt "$before" ]; }
wait_until "the call to crashy2 to arrive" arrived
sleep 1.5	# its sync_timeout (1 s) passes while it is parked
touch "$T/release2"
wait "$parked"
equal "a call parked past its sync_timeout is 504 when its module is ready" \
	"$(cat "$T/parked.status")" 504
contains "saying it did not run" "$(cat "$T/parked.body")" "the call did not run"
wait_until "the second queued call to finish" state_is "$id" done
equal "only the queued calls ran" "$(log_count 'crashy slow done')" 2
stop_host

# a caller that gives up before a worker is free (closes its connection)
# has its call taken back: it never runs, not even once the worker is free
# (attempt_timeout is long: a worker killed at it would hand back the jobs
# queued behind its slow one, and the pool would refuse the abandoned ones
# then, late; the checks of the call being taken back wait 20 s at most)
write_conf "workers = 1" "sync_timeout = 300s" "[queue default]" "attempt_timeout = 300s"
start_host
id=$(enqueue default crashy slow "$T/release3")
wait_until "the queued call to take the worker" busy_workers
ran=$(log_count 'crashy slow done')
c=$(curl -s -m 1 -o /dev/null -w '%{http_code}' -d 5 "$URL/v1/call/crashy/slow")
equal "a caller that waits 1 s for a sync call gives up" "$c" 000
gone_logged() {
	log_has "sync call crashy.slow: its caller closed the connection before the call started; it does not run"
}
check "the host logs that the call will not run" \
	wait_until "the host to see the caller go" gone_logged
equal "and counts it" "$(metric cagehost_sync_calls_abandoned_total)" 1
touch "$T/release3"
wait_until "the queued call to finish" state_is "$id" done
equal "the worker is free: a sync call runs at once" "$(status POST /v1/call/echo/echo x)" 200
equal "the abandoned call never ran" "$(log_count 'crashy slow done')" "$((ran + 1))"
abandoned_are() { [ "$(metric cagehost_sync_calls_abandoned_total)" = "$1" ]; }
# the same for a call parked while its new module is checked (the check
# needs the busy worker too): refused when the check is done
id=$(enqueue default crashy slow "$T/release5")
wait_until "the queued call to take the worker" busy_workers
ran=$(log_count 'crashy slow done')
plugin "$TPLUGINS/crashy.so" crashy3
c=$(curl -s -m 1 -o /dev/null -w '%{http_code}' -d 5 "$URL/v1/call/crashy3/slow")
equal "a caller of a module being checked gives up after 1 s" "$c" 000
touch "$T/release5"
wait_until "the queued call to finish" state_is "$id" done
wait_until "crashy3 to be loaded" log_has "loaded crashy3@"
equal "the worker is free: a call to crashy3 runs at once" \
	"$(status POST /v1/call/crashy3/slow 1)" 200
equal "the parked call whose caller left never ran" "$(log_count 'crashy slow done')" \
	"$((ran + 2))"
check "and is counted as abandoned when the check is done" \
	wait_until "the parked call to be counted" abandoned_are 2
# a caller that waits gets its call run as before
id=$(enqueue default crashy slow "$T/release4")
wait_until "the queued call to take the worker" busy_workers
curl -s -m 30 -o "$T/patient.body" -d 5 "$URL/v1/call/crashy/slow" &
patient=$!
waits() { [ "$(metric cagehost_sync_calls_total)" -ge 5 ]; }
wait_until "the patient call to arrive" waits
touch "$T/release4"
wait "$patient"
equal "a caller that keeps its connection open gets its answer" "$(cat "$T/patient.body")" "slow ok"
equal "nothing more was abandoned" "$(metric cagehost_sync_calls_abandoned_total)" 2
# after many quick calls a worker takes several jobs at a time, but never
# one behind a job that is already slow: a sync call waits in the host, where
# its caller can still take it back
urls=
for i in $(seq 200); do urls="$urls $URL/v1/call/echo/echo"; done
# shellcheck disable=SC2086
curl -s -d x $urls > /dev/null
id=$(enqueue default crashy slow "$T/release6")
wait_until "the queued call to take the worker" busy_workers
ran=$(log_count 'crashy slow done')
c=$(curl -s -m 1 -o /dev/null -w '%{http_code}' -d 5 "$URL/v1/call/crashy/slow")
equal "after 200 quick calls, a caller gives up after 1 s" "$c" 000
WAIT_LIMIT=20 check "its call was still in the host, and is taken back" \
	wait_until "the call to be taken back" abandoned_are 3
touch "$T/release6"
wait_until "the queued call to finish" state_is "$id" done
equal "the worker is free: a sync call runs at once" "$(status POST /v1/call/echo/echo x)" 200
equal "and the abandoned call never ran" "$(log_count 'crashy slow done')" "$((ran + 1))"
# a caller whose next request arrives, pipelined, while its call waits
# (the host reads no more from that connection meanwhile): the host does not
# spin on the readable connection, and still sees the caller leave
id=$(enqueue default crashy slow "$T/release7")
wait_until "the queued call to take the worker" busy_workers
ran=$(log_count 'crashy slow done')
calls=$(metric cagehost_sync_calls_total)
bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"'
	printf "POST /v1/call/crashy/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n5" >&3
	while [ ! -e "'"$T"'/send_next" ]; do sleep 0.05; done
	printf "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" >&3
	while [ ! -e "'"$T"'/close_now" ]; do sleep 0.05; done
	exec 3>&-' &
pipeliner=$!
arrived() { [ "$(metric cagehost_sync_calls_total)" -gt "$calls" ]; }
wait_until "the call to arrive" arrived
touch "$T/send_next"
sleep 0.5
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$HOST_PID/stat"; }
before=$(cpu_ticks)
sleep 2
spent=$(( $(cpu_ticks) - before ))
# a spinning event loop burns a core: about 200 ticks in these 2 s
check "the host idles while the call waits ($spent ticks of CPU in 2 s)" test "$spent" -lt 50
touch "$T/close_now"
wait "$pipeliner"
WAIT_LIMIT=20 check "the close behind a pipelined request is seen and the call taken back" \
	wait_until "the close to be seen" abandoned_are 4
# a caller that resets its connection (a client killed with unread data)
printf 'POST /v1/call/crashy/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n5' \
	> "$T/call.in"
"$HALFCLOSE" "$PORT" "$T/call.in" 1 reset
WAIT_LIMIT=20 check "a reset is seen and the call taken back" \
	wait_until "the reset to be seen" abandoned_are 5
touch "$T/release7"
wait_until "the queued call to finish" state_is "$id" done
equal "the worker is free: a sync call runs at once" "$(status POST /v1/call/echo/echo x)" 200
equal "and neither call ran" "$(log_count 'crashy slow done')" "$((ran + 1))"

# Two sync calls that come together are handed to the worker together: one
# runs, the other is queued in the worker behind it.  If the running one
# turns out slow and the other's caller leaves, the worker is told to skip
# the other.
#
# send_pair NAME [PAD]: two sync calls to crashy.slow, on two connections,
# sent at once: call a waits for the file $T/NAME.a, call b for $T/NAME.b
# (crashy creates FILE.started when it starts one; each payload is the
# path, a NUL and PAD more bytes).  Which one the host takes first is up
# to it.  The client closes a's connection once $T/close_a exists (b's,
# once $T/close_b does) and copies the other's answer to $T/NAME.out.
# Sets $pair (the client's pid).
send_pair() {
	rm -f "$T/close_a" "$T/close_b"
	bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' 4<>/dev/tcp/127.0.0.1/'"$PORT"'
		call() {
			printf "POST /v1/call/crashy/slow HTTP/1.1\r\nHost: x\r\n"
			printf "Content-Length: %d\r\n\r\n%s\0%*s" $((${#1} + 1 + $2)) "$1" "$2" ""
		}
		call "$1.a" "$2" >&3
		call "$1.b" "$2" >&4
		while :; do
			[ -e "'"$T"'/close_a" ] && { exec 3>&-; head -c 200 <&4 > "$1.out"; break; }
			[ -e "'"$T"'/close_b" ] && { exec 4>&-; head -c 200 <&3 > "$1.out"; break; }
			sleep 0.05
		done' send_pair "$T/$1" "${2:-0}" &
	pair=$!
}
# pair_started NAME: one call of the pair started; sets $first and $second
# (a or b) to the one running and the one behind it
pair_started() {
	if [ -e "$T/$1.a.started" ]; then first=a; second=b
	elif [ -e "$T/$1.b.started" ]; then first=b; second=a
	else return 1
	fi
}
stopped_in_worker="the worker that holds it is told not to start it"
stopped_in_host="closed the connection before the call started"
# second_stopped WORKER HOST: the log tells of one more stopped call than
# the counts WORKER and HOST of its two kinds of line
second_stopped() {
	[ "$(log_count "$stopped_in_worker")" -gt "$1" ] ||
		[ "$(log_count "$stopped_in_host")" -gt "$2" ]
}
# leave_second NAME: the second call's caller leaves, and the host sees it
leave_second() {
	told=$(log_count "$stopped_in_worker")
	dropped=$(log_count "$stopped_in_host")
	pair_started "$1"
	touch "$T/close_$second"
	WAIT_LIMIT=20 check "the host sees the caller of the call behind go ($2)" \
		wait_until "the host to see the second caller go" second_stopped "$told" "$dropped"
	# (the two calls reach the host together, so the second is queued in
	# the worker, unless the machine stalled the client between them)
	[ "$(log_count "$stopped_in_worker")" -gt "$told" ] &&
		echo "# the second call was in the worker" ||
		echo "# the second call was still in the host"
}
both_arrived() { [ "$(metric cagehost_sync_calls_total)" -ge $((calls + 2)) ]; }
# pair_behind NAME WHAT [PAD]: on a warm pool again (quick jobs, deep
# queues), send_pair NAME PAD; once one call runs, the other's caller
# leaves (leave_second NAME WHAT)
pair_behind() {
	curl -s -d x $urls > /dev/null
	calls=$(metric cagehost_sync_calls_total)
	send_pair "$1" "${3:-0}"
	wait_until "both calls to arrive" both_arrived
	wait_until "one of them to start" pair_started "$1"
	leave_second "$1" "$2"
}

pair_behind p8 "5 ms calls"
touch "$T/p8.$first"
wait "$pair"
contains "the first call is answered" "$(cat "$T/p8.out")" "200 OK"
WAIT_LIMIT=20 check "the second is counted as abandoned" \
	wait_until "the second call to be counted" abandoned_are 6
equal "the worker is free: a sync call runs at once" "$(status POST /v1/call/echo/echo x)" 200
check "and the second call never started" test ! -e "$T/p8.$second.started"

# the same, but the worker dies before it gets to the second call: the
# jobs behind its running one come back to the host, which does not run the
# one whose caller left
pair_behind p9 "then the worker dies"
kill -9 $(pgrep -P "$HOST_PID")
wait "$pair"
contains "the first call, whose worker died, is 502" "$(cat "$T/p9.out")" "502"
WAIT_LIMIT=20 check "the second is counted as abandoned" \
	wait_until "the second call to be counted" abandoned_are 7
equal "a new worker runs a sync call at once" "$(status POST /v1/call/echo/echo x)" 200
check "and the second call never started" test ! -e "$T/p9.$second.started"

# the same with two calls of 400 KB, whose jobs reach the worker in pieces:
# the skip sent after the second is still read before it starts
pair_behind p10 "400 KB calls" 400000
touch "$T/p10.$first"
wait "$pair"
contains "the first call is answered" "$(cat "$T/p10.out")" "200 OK"
WAIT_LIMIT=20 check "the 400 KB call is counted as abandoned" \
	wait_until "the second call to be counted" abandoned_are 8
check "and it never started" test ! -e "$T/p10.$second.started"

done_testing

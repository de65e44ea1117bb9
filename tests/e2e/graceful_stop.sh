#!/bin/sh
# graceful_stop.sh - SIGTERM stops the host without dropping work it took:
# a sync call in progress gets its 200, a queued call running in a worker
# finishes (and does not run again after the restart), enqueues in flight
# get their 202, and requests meanwhile, on new connections or one kept
# open, get 503 "stopping"; an answer is written out in full, however
# slowly its client reads.  A second SIGTERM, or
# stop_timeout, cuts the wait short, and the log says what was left.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "stop_timeout = 30s" "[queue default]" "retry_interval = 1h" \
	"attempt_timeout = 60s"
plugin "$TPLUGINS/crashy.so" crashy
plugin "$PLUGINS/echo.so" echo
start_host

workers_busy() { metric cagehost_workers_busy; }
busy_workers_are() { [ "$(workers_busy)" = "$1" ]; }
stopping_logged() { log_has "stopping: taking no new work"; }
# stop_sent: SIGTERM, then wait until the host has begun to stop
stop_sent() {
	kill -TERM "$HOST_PID"
	wait_until "the host to begin stopping" stopping_logged
}
# host_exit: waits for the host to exit (killed after WAIT_LIMIT seconds)
# and sets EXIT_STATUS.  The watchdog's sleep must not hold the test's
# output open, or the test driver waits for it.
host_exit() {
	(sleep "$WAIT_LIMIT"; kill -9 "$HOST_PID" 2>/dev/null) > /dev/null 2>&1 &
	watchdog=$!
	wait "$HOST_PID"
	EXIT_STATUS=$?
	kill "$watchdog" 2>/dev/null
	wait "$watchdog" 2>/dev/null
	HOST_PID=
}

# --- SIGHUP (a closed terminal, or an operator expecting a reload) ---
hangup_logged() { log_has "got SIGHUP: ignored"; }
kill -HUP "$HOST_PID"
if wait_until "the SIGHUP to be logged" hangup_logged; then
	ok 0 "SIGHUP is logged as ignored"
else
	ok 1 "SIGHUP is logged as ignored"
fi
contains "saying there is no reload" "$(grep 'got SIGHUP' "$T/host.log")" \
	"does not reload its configuration"
check "the host is still running after SIGHUP" host_alive
equal "and serves" "$(status GET /healthz)" 200

# --- work in progress at SIGTERM is finished and answered ---
# both slow calls last until $T/release exists: until the checks of the
# stop below are done, however slow the machine
id=$(enqueue default crashy slow "$T/release")
check "a slow queued call is accepted" test -n "$id"
curl -s -o "$T/sync.body" -w '%{http_code} %{exitcode}' -X POST --data-binary "$T/release" \
	"$URL/v1/call/crashy/slow" > "$T/sync.status" &
sync_curl=$!
wait_until "both slow calls to be running" busy_workers_are 2
lag_over() { awk -v l="$(metric cagehost_queue_lag_seconds)" -v m="$1" 'BEGIN { exit !(l > m) }'; }
wait_until "the queue lag to pass 1 s while the calls run" lag_over 1
ok $? "cagehost_queue_lag_seconds grows while a queued call runs long"
# a connection opened before the stop, used again after it
bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"'
	answer() {	# the status line, the headers, a body of 3 bytes ("ok\n")
		IFS= read -r line <&3 && echo "$line"
		while IFS= read -r line <&3 && [ "$line" != "$(printf "\r")" ]; do
			echo "$line"
		done
	}
	printf "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" >&3
	answer > "'"$T"'/keep1.tmp"
	head -c 3 <&3 > /dev/null
	mv "'"$T"'/keep1.tmp" "'"$T"'/keep1"
	while [ ! -e "'"$T"'/stopping" ]; do sleep 0.05; done
	printf "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" >&3
	cat <&3 > "'"$T"'/keep2"' &
keep_conn=$!
wait_until "the kept connection's first answer" test -s "$T/keep1"
# enqueues in a stream while the host stops: each is answered or refused
for loop in 1 2 3; do
	(while [ ! -e "$T/stopped" ]; do
		curl -s -o /dev/null -w '%{http_code} %{exitcode}\n' -X POST --data-binary x \
			"$URL/v1/enqueue/default/echo/noop" >> "$T/enqueues.$loop"
	done) &
	loops="${loops:-} $!"
done
wait_until "enqueues to flow" test -s "$T/enqueues.3"
stop_sent
touch "$T/stopping"
equal "a request on a new connection gets 503 while the host stops" \
	"$(status GET /healthz)" 503
contains "saying so" "$(body)" "stopping"
# the enqueue loops end while the host still waits for the slow calls
touch "$T/stopped"
for pid in $loops; do wait "$pid"; done
wait "$keep_conn"
contains "a request on a connection open before the stop gets 503" \
	"$(head -1 "$T/keep2")" "503"
contains "saying the host is stopping" "$(cat "$T/keep2")" "stopping"
check "the host still waits for the slow calls" host_alive
touch "$T/release"
wait "$sync_curl"
equal "the sync call in progress gets its answer" "$(cat "$T/sync.status")" "200 0"
equal "with the handler's reply" "$(cat "$T/sync.body")" "slow ok"
host_exit
cat "$T"/enqueues.* > "$T/enqueues"
bad=$(grep -cv '^202 0$\|^503 0$' "$T/enqueues")
echo "# enqueues around the stop: $(sort "$T/enqueues" | uniq -c | tr '\n' ' ')"
equal "every enqueue got its 202 or a 503 (none was cut off)" "$bad" 0
equal "the host exits with status 0" "$EXIT_STATUS" 0
check "and logs 'stopped' last" sh -c "grep 'cagehost ' '$T/host.log' | tail -1 | grep -q 'cagehost info: stopped$'"
check "it did not give up on anything" sh -c "! grep -q 'after stop_timeout' '$T/host.log'"
equal "the queued call ran once" "$(log_count 'crashy slow done')" 2
start_host
equal "after the restart the queued call is done" "$(field "$id" state)" done
equal "and the queue lag is 0 again" "$(metric cagehost_queue_lag_seconds)" 0.000
equal "after one attempt" "$(field "$id" attempts)" 1

# --- a second SIGTERM stops at once ---
curl -s -o /dev/null -X POST --data-binary 300000 "$URL/v1/call/crashy/slow" &
slow_curl=$!
wait_until "the long call to be running" busy_workers_are 1
stop_sent
kill -TERM "$HOST_PID"
host_exit
equal "after a second SIGTERM the host exits" "$EXIT_STATUS" 0
check "and says why" log_has "got SIGTERM again; stopping now"
kill "$slow_curl" 2>/dev/null
wait "$slow_curl" 2>/dev/null

# --- stop_timeout bounds the wait ---
write_conf "stop_timeout = 1s"
start_host
curl -s -o /dev/null -X POST --data-binary 300000 "$URL/v1/call/crashy/slow" &
slow_curl=$!
wait_until "the long call to be running" busy_workers_are 1
stop_sent
host_exit
equal "past stop_timeout the host exits" "$EXIT_STATUS" 0
check "the log says what was left" \
	log_has "stopping after stop_timeout (1s) with 1 request(s) unanswered, 1 worker(s) busy"
kill "$slow_curl" 2>/dev/null
wait "$slow_curl" 2>/dev/null

# --- an answer is written out in full, however slowly its client reads ---
# 16 MB is more than the kernel's socket buffers take in: the rest waits in
# the host's own buffer until the client reads
write_conf "stop_timeout = 30s" "max_body_size = 20M"
gave_up=$(log_count 'after stop_timeout')
start_host
head -c 16000000 /dev/zero | tr '\0' y > "$T/big"
bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"'
	printf "POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\nConnection: close\r\n\r\n" >&3
	cat "'"$T"'/big" >&3
	IFS= read -r line <&3
	echo "$line" > "'"$T"'/big.status"
	while [ ! -e "'"$T"'/big.read" ]; do sleep 0.05; done
	cat <&3 > "'"$T"'/big.out"' &
reader=$!
wait_until "the answer to the 16 MB call to begin" test -s "$T/big.status"
contains "a 16 MB sync call is answered 200" "$(cat "$T/big.status")" "200"
stop_sent
sleep 1		# the host used to exit 50 ms after its last answer
check "a stopping host waits while its client has not read the answer" \
	kill -0 "$HOST_PID"
touch "$T/big.read"
wait "$reader"
equal "the client gets all 16 MB of it" "$(sed '1,/^\r$/d' "$T/big.out" | tr -cd y | wc -c)" \
	16000000
host_exit
equal "then the host exits with status 0" "$EXIT_STATUS" 0
equal "without giving up on anything" "$(log_count 'after stop_timeout')" "$gave_up"
done_testing

#!/bin/sh
# crashing_plugins.sh - queued calls whose handler crashes, aborts, exits or
# hangs become failed attempts naming the crash and module@version, and are
# retried; the host keeps serving; a handler that writes to stdout/stderr works.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue default]" "retry_interval = 200ms" "retry_max_interval = 1s" \
	"attempt_timeout = 1s"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS/crashy.so" crashy
start_host

wait_until "crashy to be loaded" log_has "loaded crashy@1+" ||
	bail "crashy was not loaded"
version=$(sed -n 's/.*loaded crashy@\(1+[0-9a-f]*\) from.*/\1/p' "$T/host.log" | tail -1)
check "crashy has a version 1+HASH" test -n "$version"
echo "# crashy version: $version"

# sync_echo LABEL: a synchronous call still works between the crashes
sync_echo() {
	equal "a sync echo call succeeds $1" "$(status POST /v1/call/echo/upper "x$1")" 200
	equal "and its reply is right $1" "$(body)" "X$(printf '%s' "$1" | tr a-z A-Z)"
}

# each_method METHOD EXPECTED-ERROR
crash_case() {
	method=$1
	want=$2
	id=$(enqueue default crashy "$method" payload)
	check "crashy.$method is enqueued" test -n "$id"
	# two attempts: the crash is a retry, not the end of the call
	if wait_until "two attempts of crashy.$method" attempts_at_least "$id" 2; then
		ok 0 "crashy.$method was attempted again after failing"
	else
		ok 1 "crashy.$method was attempted again after failing"
	fi
	equal "crashy.$method is still pending" "$(field "$id" state | sed 's/running/pending/')" \
		pending
	contains "crashy.$method: last_error names the crash and module@version" \
		"$(field "$id" last_error)" "$want in crashy@$version"
	hist=$(history "$id")
	first=$(printf '%s\n' "$hist" | head -1)
	equal "crashy.$method: the first attempt is recorded as a retry of $version" \
		"$first" "1 $version retry"
	js=$(curl -s "$URL/v1/calls/$id")
	contains "crashy.$method: the history carries the error text" "$js" \
		"\"outcome\": \"retry\", \"error\": \"$want in crashy@$version\""
	check "crashy.$method: the host's log line names the queued call" \
		log_has "$want in crashy@$version (queued call crashy.$method $id)"
	check "the host is alive after crashy.$method" host_alive
	sync_echo "after-$method"
}

sync_echo "before"
crash_case segv "worker killed by SIGSEGV"
crash_case abort "worker killed by SIGABRT"
# what a plugin printed just before it crashed reaches the log, named
n=$(field "$id" attempts)
check "crashy.abort's last words before each of its $n crashes are in the log" \
	test "$(log_count "crashy@$version call $id: printed: crashy abort: last words")" -ge "$n"
crash_case term "worker killed by SIGTERM"
crash_case exit "worker exited with status 3"
crash_case hang "attempt timed out after 1000 ms (worker killed)"

id=$(enqueue default crashy chatty payload)
check "crashy.chatty is enqueued" test -n "$id"
if wait_until "crashy.chatty to finish" state_is "$id" done; then
	ok 0 "crashy.chatty (writing to stdout and stderr) is done"
else
	ok 1 "crashy.chatty (writing to stdout and stderr) is done"
fi
equal "crashy.chatty took one attempt" "$(field "$id" attempts)" 1
equal "crashy.chatty's attempt is recorded ok" "$(history "$id")" "1 $version ok"
equal "a sync crashy.chatty replies 200" "$(status POST /v1/call/crashy/chatty x)" 200
equal "and its reply is not mixed with its output" "$(body)" "chatty ok"
equal "a sync crashy.ok after all the crashes replies 200" "$(status POST /v1/call/crashy/ok x)" 200
equal "and its reply is right" "$(body)" "crashy ok"
sync_echo "at-the-end"
check "the host process is still alive" host_alive
equal "healthz still answers 200" "$(status GET /healthz)" 200

done_testing

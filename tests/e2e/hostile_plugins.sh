#!/bin/sh
# hostile_plugins.sh - handlers that attack their worker or the host through
# it are contained: a worker shares no writable memory with the host, what a
# plugin forks dies with its worker (process group) and with the host, a
# plugin that closes the host's channel costs one attempt, memory hogs hit
# worker_memory_limit, oversized replies are refused, CPU burners hit
# attempt_timeout or worker_cpu_limit (SIGXCPU, a budget per attempt).  Sync
# and queued calls; one worker, so the worker that ran a call is known.  The
# host stays small, alive and serving.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

WORKERS=1
SHORT=${SHORT_WAIT:-30}	# seconds for waits on things that take a moment

# Process groups of workers that ran hostile.fork: killed at exit whatever
# happened, so a failing run leaves no paused process behind.
GROUPS_SEEN=
trap 'for g in $GROUPS_SEEN; do kill -9 "-$g" 2>/dev/null; done; cleanup' EXIT

# proc_field PID N: the Nth field after the command in /proc/PID/stat
# (1 state, 2 ppid, 3 process group)
proc_field() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f"$2"; }

# proc_live PID: the process exists and is not a zombie
proc_live() {
	st=$(proc_field "$1" 1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# group_live PGID: some process of the group exists and is not a zombie
group_live() {
	ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { exit !n }'
}
group_gone() { ! group_live "$1"; }

# settled ID STATE: the call had its attempt and is in STATE
settled() { attempts_at_least "$1" 1 && state_is "$1" "$2"; }

# queued METHOD STATE [QUEUE]: enqueues hostile.METHOD (to queue default)
# and waits for its first attempt to leave it in STATE; prints the id
queued() {
	qid=$(enqueue "${3:-default}" hostile "$1" x)
	WAIT_LIMIT=$SHORT wait_until "queued hostile.$1 to be $2" settled "$qid" "$2" >&2
	echo "$qid"
}

rss_kb() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$HOST_PID/status"; }

sync_ok() {	# sync_ok LABEL: the well-behaved method still works
	equal "hostile.ok replies 200 $1" "$(status POST /v1/call/hostile/ok x)" 200
	equal "with its reply $1" "$(body)" "hostile ok"
}

# fork_grandchild LABEL: runs hostile.fork; sets GC (the forked process) and
# W (its process group: the worker's)
fork_grandchild() {
	GC= W=
	equal "hostile.fork replies 200 $1" "$(status POST /v1/call/hostile/fork x)" 200
	GC=$(body | sed -n 's/^forked \([0-9][0-9]*\)$/\1/p')
	check "and names the process it forked $1" test -n "$GC"
	[ -n "$GC" ] || return 0
	W=$(proc_field "$GC" 3)
	GROUPS_SEEN="$GROUPS_SEEN $W"
	check "the forked process lives on after the call $1" proc_live "$GC"
	check "in its worker's process group, not the host's $1" \
		test -n "$W" -a "$W" != "$HOST_PID" -a "$(proc_field "$W" 2)" = "$HOST_PID"
}

# Part 1: worker_memory_limit, attempt_timeout 1 s, sync_timeout 2 s.  A
# failed queued attempt waits an hour, so each queued call has one attempt.
# Queue roomy gives the memory cases time to fill memory on a busy machine.
write_conf "sync_timeout = 2s" "worker_memory_limit = 256M" \
	"[queue default]" "retry_interval = 1h" "attempt_timeout = 1s" \
	"[queue roomy]" "retry_interval = 1h" "attempt_timeout = 20s"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS/crashy.so" crashy
plugin "$TPLUGINS/hostile.so" hostile
start_host
wait_until "hostile to be loaded" log_has "loaded hostile@1+" || bail "hostile was not loaded"
sync_ok "at the start"

# the worker must share no writable memory with the host (the Berkeley DB
# regions the host has mapped, say): plugin code could corrupt it
equal "hostile.maps replies 200" "$(status POST /v1/call/hostile/maps x)" 200
equal "a worker has no writable shared mapping (such as the host's __db.* regions)" \
	"$(body)" none

# fork: the forked process keeps the channel open and outlives the call; it
# must not outlive its worker.
fork_grandchild "(sync)"
sync_ok "while the forked process holds the channel"
equal "a segfault ends the worker (502)" "$(status POST /v1/call/crashy/segv x)" 502
contains "the crash is named" "$(body)" "worker killed by SIGSEGV in crashy@1+"
if [ -n "$W" ]; then
	if WAIT_LIMIT=$SHORT wait_until "worker group $W to be gone" group_gone "$W"; then
		ok 0 "no process of the dead worker's group is left"
	else
		ok 1 "no process of the dead worker's group is left"
		ps -e -o pid,ppid,pgid,stat,args | awk -v g="$W" '$3 == g' | sed 's/^/#   /'
	fi
	check "the forked process is gone" sh -c "! [ -d /proc/$GC ] || grep -q '^State:.*Z' /proc/$GC/status"
fi
sync_ok "after the worker was replaced"
id=$(queued fork done)
GROUPS_SEEN="$GROUPS_SEEN $(pgrep -P "$HOST_PID" | tr '\n' ' ')"
contains "a queued hostile.fork is done" "$(field "$id" state)" done
equal "the host is still alive after fork" "$(status GET /healthz)" 200

# closefds: the worker closes the host's channel (fd 3) under itself
equal "hostile.closefds is a failed attempt (502)" "$(status POST /v1/call/hostile/closefds x)" 502
reason=$(body)
case "$reason" in
*"worker closed its channel to the host in hostile@1+"* | \
*"worker exited with status "*" in hostile@1+"* | *"worker killed by SIG"*" in hostile@1+"*)
	ok 0 "closefds: the reason is readable and names hostile@version" ;;
*)	ok 1 "closefds: the reason is readable and names hostile@version"
	echo "#   got: $reason" ;;
esac
echo "# closefds reason: $reason"
sync_ok "after closefds"
id=$(queued closefds pending)
contains "a queued hostile.closefds is a retry naming hostile" "$(field "$id" last_error)" " in hostile@1+"
sync_ok "after a queued closefds"

# bigreply: a 100 MiB reply is refused by cage_reply (first, while the
# worker has its memory to itself)
equal "hostile.bigreply is refused: 422" "$(status POST /v1/call/hostile/bigreply x)" 422
contains "with the handler's reason" "$(body)" "reply refused"
id=$(queued bigreply dead roomy)
contains "a queued hostile.bigreply goes dead with the reason" "$(field "$id" last_error)" \
	"reply refused"
check "the host is alive after bigreply" host_alive

# hog: allocates until worker_memory_limit stops it (a sanitizer build
# reserves terabytes of shadow address space, so it runs without that limit)
if [ -n "${CAGE_SANITIZED:-}" ]; then
	for what in "hostile.hog is contained" "hostile.hog: worker_memory_limit stopped it" \
		"a queued hostile.hog is a retry for want of memory"; do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $what # SKIP no worker_memory_limit in a sanitizer build"
	done
else
	code=$(status POST /v1/call/hostile/hog x)
	reason=$(body)
	echo "# hog: $code $reason"
	case "$code" in
	502 | 503 | 422) ok 0 "hostile.hog is contained: $code" ;;
	*) ok 1 "hostile.hog is contained: $code" ;;
	esac
	case "$reason" in
	*"out of memory after "*" MiB"* | *"worker killed by SIG"*" in hostile@1+"*)
		ok 0 "hostile.hog: worker_memory_limit stopped it, with a reason" ;;
	*)	ok 1 "hostile.hog: worker_memory_limit stopped it, with a reason"
		echo "#   got: $reason" ;;
	esac
	id=$(queued hog pending roomy)
	contains "a queued hostile.hog is a retry for want of memory" "$(field "$id" last_error)" \
		"out of memory after"
fi
check "the host is alive after hog" host_alive
rss=$(rss_kb)
echo "# host VmRSS: $rss kB"
check "the host's RSS stays under 200 MB" test "${rss:-999999}" -lt 204800
sync_ok "after hog"

# overrun: CPU past the attempt timeout
equal "hostile.overrun times out: 504" "$(status POST /v1/call/hostile/overrun x)" 504
contains "naming the sync timeout" "$(body)" "attempt timed out after 2000 ms"
id=$(queued overrun pending)
contains "a queued hostile.overrun times out after attempt_timeout" \
	"$(field "$id" last_error)" "attempt timed out after 1000 ms (worker killed) in hostile@1+"
sync_ok "after overrun"

# stdio: output on stdout and stderr does not disturb the channel
equal "hostile.stdio replies 200" "$(status POST /v1/call/hostile/stdio x)" 200
equal "with its reply, not its output" "$(body)" "stdio ok"
id=$(queued stdio done)
contains "a queued hostile.stdio is done" "$(field "$id" state)" done
check "the handler's output went to the log, naming the call" \
	log_has "hostile@1+[0-9a-f]* call $id: printed: hostile stdio: stdout line 3"
check "and a sync call's, naming it" \
	log_has "hostile@1+[0-9a-f]* sync call stdio: printed: hostile stdio: stderr line 2"
check "a last line without a newline comes too, control characters as spaces" \
	log_has "call $id: printed: hostile stdio:  \[31mred \[0m, a tab, no newline\$"

# a handler printing more than a pipe holds is not blocked; the log takes
# 100 of its lines a second, and says how many it left out once the storm
# is over, with no later line needed
equal "hostile.flood (100,000 lines) replies 200" "$(status POST /v1/call/hostile/flood x)" 200
equal "with its reply" "$(body)" "flood ok"
check "its first line is in the log" log_has "sync call flood: printed: hostile flood: line 1\$"
# lines left out: said by a line of its own once the storm is over, or,
# for a storm that spans seconds, by the next second's first line
left_out() {
	sed -n -e 's/.* \([0-9]*\) more lines printed by plugins were not logged (over 100 a second)$/\1/p' \
		-e 's/.*printed: hostile flood: .* (and \([0-9]*\) more like it not logged: over 100 a second)$/\1/p' \
		"$T/host.log" | awk '{ n += $1 } END { print n + 0 }'
}
flood_logged() { grep -c "sync call flood: printed: hostile flood: line" "$T/host.log"; }
flood_counted() { [ "$(($(flood_logged) + $(left_out)))" -ge 100000 ]; }
wait_until "the count of lines left out" flood_counted
equal "the log says how many of the 100,000 lines it left out" \
	"$(($(flood_logged) + $(left_out)))" 100000

# a graceful stop takes what a plugin forked with it
fork_grandchild "(before a stop)"
stop_host
if [ -n "$W" ]; then
	if WAIT_LIMIT=$SHORT wait_until "worker group $W to be gone" group_gone "$W"; then
		ok 0 "after a stop no process of the worker's group is left"
	else
		ok 1 "after a stop no process of the worker's group is left"
	fi
fi

# Part 2: worker_cpu_limit 1 s, with a sync_timeout far longer: SIGXCPU, not
# the timeout, ends the call (the reason says which).
# A fresh data_dir: the calls waiting from part 1 stay out of the way.
remove_data_dir "$T/data"
write_conf "sync_timeout = 60s" "worker_memory_limit = 256M" "worker_cpu_limit = 1s" \
	"[queue default]" "retry_interval = 1h" "attempt_timeout = 10s"
start_host
sync_ok "with worker_cpu_limit"
start=$(now_ms)
equal "hostile.cpuburn is killed: 502" "$(status POST /v1/call/hostile/cpuburn x)" 502
echo "# the burn ended after $(( $(now_ms) - start )) ms"
contains "by SIGXCPU, named" "$(body)" "worker killed by SIGXCPU in hostile@1+"
id=$(queued cpuburn pending)
contains "a queued hostile.cpuburn is killed by SIGXCPU" "$(field "$id" last_error)" \
	"worker killed by SIGXCPU in hostile@1+"
# the limit is per attempt: two attempts of 600 ms each in one worker (the
# one started after the SIGXCPU above) both fit in 1 s
equal "a first 600 ms attempt in a fresh worker fits the 1 s limit" \
	"$(status POST /v1/call/hostile/spin 600)" 200
equal "a second 600 ms attempt in the same worker fits too" \
	"$(status POST /v1/call/hostile/spin 600)" 200
echo "# second spin: $(body)"
equal "so does a third" "$(status POST /v1/call/hostile/spin 600)" 200
sync_ok "after cpuburn"

# Part 3: when the host is killed outright, its workers die, and what a
# plugin forked must not live on either.  The worker learns of the host's
# death in one of two ways (its channel's EOF, the parent-death signal), in
# either order, so this takes a few rounds on fresh hosts.
leaked=
for round in 1 2 3 4 5 6 7 8; do
	if [ -z "$HOST_PID" ]; then
		remove_data_dir "$T/data"	# nothing waiting that would run first
		start_host
	fi
	curl -s -o "$T/body" -X POST -d x "$URL/v1/call/hostile/fork"
	GC=$(body | sed -n 's/^forked \([0-9][0-9]*\)$/\1/p')
	W=$(proc_field "${GC:-0}" 3)
	if [ -z "$GC" ] || [ -z "$W" ]; then
		leaked="$leaked round $round: no forked process ($(body));"
		kill9_host
		continue
	fi
	GROUPS_SEEN="$GROUPS_SEEN $W"
	kill9_host
	if ! WAIT_LIMIT=30 wait_until "worker group $W to be gone" group_gone "$W"; then
		leaked="$leaked round $round: $(ps -o pid=,ppid=,pgid=,stat= -p "$GC");"
		kill -9 "-$W" 2>/dev/null
	fi
done
equal "after kill -9 of the host no process of the worker's group is left (8 rounds)" \
	"$leaked" ""

start_host
# what a handler writes reaches the log and the caller cleaned up
equal "hostile.forge fails: 422" "$(status POST /v1/call/hostile/forge x)" 422
contains "its error's bytes that are not UTF-8 are U+FFFD in the JSON" "$(body)" \
	'bad \ufffd\ufffd bytes, and'
contains "and well-formed UTF-8 is kept" "$(body)" "$(printf 'and \303\251 (e acute) kept')"
check "its log line stays one line" log_has "hostile@1+[0-9a-f]*: hostile says FORGED cagehost error"
check "no line of the log is forged" sh -c "! grep -q '^FORGED' '$T/host.log'"
# a module that leaves the worker without a free descriptor: the worker
# cannot tell whether it left threads either, so it ends before loading the
# next module, and a fresh one serves (one worker: every call goes to it)
equal "hostile.leakfds uses up the worker's descriptors" \
	"$(status POST /v1/call/hostile/leakfds x)" 200
contains "and says how many" "$(body)" "leaked "
# two calls at once: both go to the fresh worker, the one queued behind
# the first in the same worker too
curl -s -o /dev/null -w '%{http_code}\n' -d one "$URL/v1/call/echo/echo" > "$T/two.1" &
c1=$!
curl -s -o /dev/null -w '%{http_code}\n' -d two "$URL/v1/call/echo/echo" > "$T/two.2" &
c2=$!
wait "$c1" "$c2"
equal "two calls that reach it at once are both served" \
	"$(cat "$T/two.1" "$T/two.2" | sort | tr '\n' ' ')" "200 200 "
check "the worker says it ends and a fresh one takes over" \
	log_has "cannot count this worker's threads (no /proc/self/status), so hostile@[^ ]* may have left some running; this worker ends before loading echo@"
check "no call is charged with its end" sh -c "! grep -q 'killed by SIGKILL in echo' '$T/host.log'"
equal "the call after it is served by a fresh worker" "$(status POST /v1/call/echo/echo again)" 200
equal "with the right reply" "$(body)" "again"
equal "and so is the module that leaked" "$(status POST /v1/call/hostile/ok x)" 200
# a module that leaves a thread running in its code: unloading it for
# another module would crash the worker in that module's call, so the
# worker ends first and a fresh one runs the call, which is no attempt lost
equal "hostile.thread starts a thread that runs on" "$(status POST /v1/call/hostile/thread x)" 200
equal "hostile's next call shares the worker with that thread" \
	"$(status POST /v1/call/hostile/ok x)" 200
equal "a call of another module after it is served" "$(status POST /v1/call/echo/echo after-thread)" 200
equal "with its reply" "$(body)" "after-thread"
check "the worker said why it ended before loading echo" \
	log_has "hostile@1+[0-9a-f]* left 1 thread running; this worker ends before loading echo@[^ ]*, and a fresh one runs that"
equal "hostile.thread again" "$(status POST /v1/call/hostile/thread x)" 200
id=$(enqueue default echo echo queued-after-thread)
WAIT_LIMIT=$SHORT wait_until "the queued echo after hostile.thread to be done" state_is "$id" done
equal "a queued call after it is done" "$(field "$id" state)" done
equal "at its first attempt" "$(field "$id" attempts)" 1
equal "both calls after a thread met a fresh worker" \
	"$(log_count "left 1 thread running; this worker ends before loading echo@")" 2
check "no worker crashed under another module" sh -c "! grep -q 'killed by SIG[A-Z]* in echo' '$T/host.log'"
# a plugin that writes that answer (the worker retires) itself: the call is
# not handed round the workers for ever, uncharged.  Believed once from a
# worker that has run jobs, it is not from the fresh worker that gets the
# call next: that one is killed, and the call fails like a crash.
equal "a forged retirement (hostile.retire) fails like a crash: 502" \
	"$(status POST /v1/call/hostile/retire x)" 502
contains "the worker retired before it ran any job" "$(body)" \
	"worker retired before it ran any job in hostile@1+"
id=$(enqueue default hostile retire x)
WAIT_LIMIT=$SHORT wait_until "the queued hostile.retire to have its attempt" attempts_at_least "$id" 1
equal "queued, it is one failed attempt" "$(field "$id" attempts) $(field "$id" state)" "1 pending"
contains "for the same reason" "$(field "$id" last_error)" "worker retired before it ran any job"
equal "two forgeries, two workers killed for them" \
	"$(log_count "worker retired before it ran any job")" 2
equal "echo is served after them" "$(status POST /v1/call/echo/echo after-forgery)" 200
equal "after everything the host serves echo" "$(status POST /v1/call/echo/echo fine)" 200
equal "with the right reply" "$(body)" "fine"
equal "healthz answers 200" "$(status GET /healthz)" 200
check "the host process is alive" host_alive

# Part 4, two workers, each with a thread hostile left running: the call
# the first retires on goes to the fresh worker started in its place, not
# to the other, which would retire on it too (and was taken for a forger)
stop_host
WORKERS=2
write_conf "sync_timeout = 10s"
start_host
wait_until "hostile to be loaded again" log_has "loaded hostile@1+" || bail "no hostile"
equal "a thread in the first worker" "$(status POST /v1/call/hostile/thread x)" 200
curl -s -o /dev/null -d 1500 "$URL/v1/call/hostile/spin" &
spinning=$!
busy_is_1() { [ "$(metric cagehost_workers_busy)" = 1 ]; }
wait_until "the first worker to spin" busy_is_1
equal "a thread in the second (the first is busy)" "$(status POST /v1/call/hostile/thread x)" 200
wait "$spinning"
threads_of_workers() {
	for w in $(pgrep -P "$HOST_PID"); do ls "/proc/$w/task" | wc -l; done | sort | tr '\n' ' '
}
equal "both workers have a thread of hostile's" "$(threads_of_workers)" "2 2 "
before=$(log_count "left 1 thread running")
equal "echo is served" "$(status POST /v1/call/echo/echo both)" 200
equal "with its reply" "$(body)" "both"
equal "by the fresh worker, after one retirement" \
	"$(($(log_count "left 1 thread running") - before))" 1
check "no worker was taken for a forger" sh -c "! grep -q 'retired twice' '$T/host.log'"

done_testing

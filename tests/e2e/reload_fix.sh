#!/bin/sh
# reload_fix.sh - the product's story: a queued call to a failing module is
# retried with growing delays, waits, and succeeds on the first retry after
# a fixed version arrives - moved in with mv, and again copied over the
# live file with cp - with each attempt's module version recorded.  Also:
# a call to a module that is not there yet waits with "no module NAME".
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

LOG_LEVEL=debug write_conf "[queue default]" "retry_interval = 200ms" "retry_factor = 2" \
	"retry_max_interval = 2s" "lifetime = 10m" "wake_on_new_version = no"
plugin "$TPLUGINS_V1/flaky.so" flaky
start_host

# --- mv of a fixed version ---
id=$(enqueue default flaky work 'pay 5')
check "the enqueue is acknowledged with an id" test -n "$id"
wait_until "3 failed attempts" attempts_at_least "$id" 3
equal "the waiting call is pending" "$(field "$id" state)" pending
contains "its last error is the module's" "$(field "$id" last_error)" "flaky v1 always fails"
history "$id" > "$T/h1"
check "every attempt so far ran version 1" sh -c "! grep -v ' 1+' '$T/h1'"
check "at log_level = debug each retry is logged with its reason and next time" \
	log_has "call $id (flaky.work) attempt 1: flaky v1 always fails; next attempt 20"

# A retry is planned from when the failed attempt was due (here: the
# enqueue), not from when it happened to start, so the first wait is
# measured from the enqueue time.
times=$(curl -s -H 'Accept: text/plain' "$URL/v1/calls/$id" |
	sed -n -e 's/^enqueued: *[0-9-]*T\([0-9:.]*\)Z.*/\1/p' \
	       -e 's/^  #[0-9]* *[0-9-]*T\([0-9:.]*\)Z.*/\1/p' | head -3 |
	awk -F'[:.]' '{ printf "%d\n", ($1 * 3600 + $2 * 60 + $3) * 1000 + $4 }')
wait1=$(echo "$times" | awk 'NR==1{a=$1} NR==3{print int($1-a+0.5)}')
echo "# enqueue to attempt 2: ${wait1} ms"
check "the first retry waited retry_interval after the enqueue" test "$wait1" -ge 199
# The plan itself: after N failed attempts the next one is due 200 + 400 +
# ... ms (doubling, at most 2 s each) after the enqueue, however late the
# attempts started.  Read while the call waits, not while one runs.
planned_after() {
	awk -v n="$1" 'BEGIN { d = 200; s = 0
		for (i = 0; i < n; i++) { s += d; d = d * 2 > 2000 ? 2000 : d * 2 }
		print s }'
}
json_ms() {	# NAME: a time field of $T/plan.json, in ms since the epoch
	date -u -d "$(sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$T/plan.json")" +%s%3N
}
waiting() {
	curl -s "$URL/v1/calls/$id" > "$T/plan.json" && grep -q '"state": "pending"' "$T/plan.json"
}
wait_until "the call to wait for its next retry" waiting
n=$(sed -n 's/.*"attempts": \([0-9]*\).*/\1/p' "$T/plan.json")
planned=$(( $(json_ms next_attempt) - $(json_ms enqueued) ))
echo "# after $n attempts the next is planned ${planned} ms after the enqueue"
equal "the delays grow by retry_factor (plan after $n attempts)" "$planned" "$(planned_after "$n")"

plugin "$TPLUGINS_V2/flaky.so" flaky
wait_until "the call to finish" state_is "$id" done
history "$id" > "$T/h2"
earlier=$(( $(wc -l < "$T/h2") - 1 ))
equal "it succeeded on the first attempt after the fix (one ran version 2)" \
	"$(grep -c ' 2+' "$T/h2")" 1
last=$(tail -1 "$T/h2")
contains "the last attempt ran version 2" "$last" " 2+"
contains "and its outcome was ok" "$last" " ok"
equal "every earlier attempt is recorded with version 1" \
	"$(head -n "$earlier" "$T/h2" | grep -c ' 1+.* retry')" "$earlier"
check "the host logged the replacement" log_has "replaced flaky@1+"

# --- cp over the live file, while calls wait ---
plugin "$TPLUGINS_V1/flaky.so" flaky
wait_until "version 1 to be back" log_has "replaced flaky@2+[0-9a-f]* with flaky@1+"
id2=$(enqueue default flaky work 'pay 6')
wait_until "2 failed attempts" attempts_at_least "$id2" 2
id=$id2
wait_until "the call to wait for its next retry" waiting	# none runs now
before=$(sed -n 's/.*"attempts": \([0-9]*\).*/\1/p' "$T/plan.json")
cp "$TPLUGINS_V2/flaky.so" "$T/plugins/flaky.so"
wait_until "the second call to finish" state_is "$id2" done
check "the host survived cp over the live plugin" host_alive
contains "the copied-in version ran the call" "$(history "$id2" | tail -1)" " 2+"
after=$(field "$id2" attempts)
check "the call needed at most two attempts after the cp" test "$after" -le "$((before + 2))"
equal "sync calls run the copied version too" "$(status POST /v1/call/flaky/work x)" 200

# --- a module that is not there yet ---
id3=$(enqueue default later work 'x')
check "a call to a missing module is accepted" test -n "$id3"
wait_until "an attempt of the missing module" attempts_at_least "$id3" 1
equal "it waits as pending" "$(field "$id3" state)" pending
equal "its error says the module is missing" "$(field "$id3" last_error)" "no module later"
equal "a sync call to the missing module is 404" "$(status POST /v1/call/later/work x)" 404
plugin "$TPLUGINS_V2/flaky.so" later
wait_until "the call to the late module to finish" state_is "$id3" done

# --- a new version while calls are on their way to the old one ---
# Calls handed to the pool before the new version arrived name the old
# version's private copy; a worker that has meanwhile loaded the new one
# (to check it) opens that copy again for them.  It must still be there:
# none of these calls may fail.  12 calls of 300 ms on 2 workers take
# about 2 s; the new version arrives within the first few hundred ms.
plugin "$TPLUGINS/crashy.so" busy
busy_loaded() { [ "$(status POST /v1/call/busy/ok x)" = 200 ]; }
wait_until "busy to be loaded" busy_loaded
ids=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
	ids="$ids $(enqueue default busy slow 300)"
done
# the same code with one more byte: another version (another hash)
{ cat "$TPLUGINS/crashy.so"; printf x; } > "$T/busy2.so"
plugin "$T/busy2.so" busy
all_done() { for i in $ids; do state_is "$i" done || return 1; done; }
both_busy_now() { [ "$(metric cagehost_workers_busy)" = 2 ]; }
if wait_until "the 12 calls to finish" all_done; then
	ok 0 "12 calls waiting when a new version arrives all finish"
else
	ok 1 "12 calls waiting when a new version arrives all finish"
fi
ran_once=0
for i in $ids; do [ "$(field "$i" attempts)" = 1 ] && ran_once=$((ran_once + 1)); done
equal "each at its first attempt" "$ran_once" 12
check "the new version was checked meanwhile" log_has "replaced busy@1+"

# --- the same version back while calls still name its copy ---
# rm, then the same file again: its private copy goes out of service and
# comes back while the calls running on it keep it; once they are done it
# must not be deleted as retired (workers that load it again need it)
ids=""
for i in 1 2; do ids="$ids $(enqueue default busy slow 1500)"; done
wait_until "both workers to run a call of busy" both_busy_now
rm "$T/plugins/busy.so"
busy_gone() { [ "$(status POST /v1/call/busy/ok x)" = 404 ]; }
wait_until "busy to be out of service" busy_gone
ok $? "with its file removed, busy is out of service"
plugin "$T/busy2.so" busy
wait_until "the 2 calls to finish" all_done
wait_until "busy to be back" busy_loaded
ok $? "the same file back, busy serves again"
# retired copies are looked at every second: give that two turns (there
# is no event to wait for when nothing is deleted)
sleep 2
check "its private copy is still there" sh -c "ls '$T/data/modules/' | grep -q '^busy-'"
served=0
for i in 1 2 3 4; do	# each worker moves to flaky and back to busy
	[ "$(status POST /v1/call/flaky/work x)" = 200 ] &&
		[ "$(status POST /v1/call/busy/ok x)" = 200 ] && served=$((served + 1))
done
equal "after its calls are done, workers still load that version (4 rounds)" "$served" 4
check "no worker failed to load a module" sh -c "! grep -q 'this worker ends' '$T/host.log'"
check "the host is alive at the end" host_alive

done_testing

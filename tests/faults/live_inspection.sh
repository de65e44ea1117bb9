#!/bin/sh
# live_inspection.sh - a person inspects the live environment with
# `db5.3_dump -p -h DATA calls.db` while the host holds PENDING calls and
# takes a steady stream of enqueues:
#   (a) the dump is piped into a reader that does not read for 5 s;
#   (b) the same, and the dump is killed with -9 while it is blocked.
# The host must keep serving and never wedge: after (b) an enqueue must be
# acknowledged within RECOVER_S seconds, and no acknowledged call may be
# lost.  The worst enqueue latency in each phase is printed.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/faults/faults.sh"

PENDING=2000
RECOVER_S=30
READER_PAUSE=5
trap 'kill -9 $DUMP_PID $READER_PID 2>/dev/null; touch "$T/stop"; cleanup' EXIT
DUMP_PID=
READER_PID=
write_conf "[queue default]" "retry_interval = 1h" "wake_on_new_version = no"
start_host

# PENDING calls to a module that is not installed, over 4 keep-alive clients
i=0
while [ "$i" -lt 4 ]; do
	i=$((i + 1))
	awk -v n="$((PENDING / 4))" -v u="$URL" -v c="$i" 'BEGIN {
		for (k = 1; k <= n; k++)
			printf "%surl = \"%s/v1/enqueue/default/nomod/keep\"\ndata = \"pending %d-%d\"\n", (k > 1 ? "next\n" : ""), u, c, k
	}' > "$T/fill.$i.cfg"
	curl -s -K "$T/fill.$i.cfg" > "$T/fill.$i.out" &
	fillers="${fillers:-} $!"
done
for pid in $fillers; do wait "$pid"; done
cat "$T"/fill.*.out | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' > "$T/acked"
equal "$PENDING pending calls acknowledged" "$(wc -l < "$T/acked")" "$PENDING"

# set_phase NAME: atomically, so the load loop never reads a half-written name
set_phase() { echo "$1" > "$T/phase.new" && mv "$T/phase.new" "$T/phase"; }

# the load: one enqueue at a time, to whatever port the host serves on now
# (a host that restarts itself in place may get a new one); each line of
# $T/lat is "PHASE HTTP SECONDS"
set_phase base
current_url() {
	sed -n 's/.* serving on [^ ]*:\([0-9]*\) .*/http:\/\/127.0.0.1:\1/p' "$T/host.log" | tail -1
}
load_loop() {
	k=0
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		phase=$(cat "$T/phase")
		out=$(curl -s --max-time 120 -o "$T/load.body" -w '%{http_code} %{time_total}' \
			-d "load $k" "$(current_url)/v1/enqueue/default/nomod/load")
		echo "$phase $out" >> "$T/lat"
		case $out in
		202*) sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/load.body" >> "$T/acked.load" ;;
		000*) sleep 0.02 ;;
		esac
	done
}
: > "$T/lat"
: > "$T/acked.load"
load_loop &
LOAD_PID=$!
samples() { [ "$(awk -v p="$1" '$1 == p' "$T/lat" | wc -l)" -ge "$2" ]; }
wait_until "baseline latency samples" samples base 20

# worst PHASE: the worst latency (s) of the requests started in PHASE
worst() { awk -v p="$1" '$1 == p { print $3 }' "$T/lat" > "$T/w"; max_of "$T/w"; }
codes() {	# codes PHASE: "N x HTTP C, ..." of the requests started in PHASE
	awk -v p="$1" '$1 == p { print $2 }' "$T/lat" | sort | uniq -c |
		awk '{ printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2 } END { print "" }'
}
blocked() {	# blocked PID: asleep in a write to a full pipe (Linux)
	case $(cat "/proc/$1/wchan" 2>/dev/null) in *pipe_write*) return 0 ;; esac
	return 1
}
mkfifo "$T/pipe"

# (a) a reader that does not read for READER_PAUSE seconds
set_phase a
t0=$(date +%s%N)
(sleep "$READER_PAUSE"; cat > /dev/null) < "$T/pipe" &
READER_PID=$!
"$DUMP" -p -h "$T/data" calls.db > "$T/pipe" 2> "$T/dump.a.err" &
DUMP_PID=$!
wait_until "the dump to block on the pipe" blocked "$DUMP_PID"
ok $? "(a) the dump blocks on a reader that does not read"
wait "$DUMP_PID"
dump_rc=$?
DUMP_PID=
wait "$READER_PID"
READER_PID=
echo "# (a) the dump took $(ms_between "$t0" "$(date +%s%N)") ms, exit $dump_rc $(head -c 200 "$T/dump.a.err")"
set_phase after-a
wait_until "an enqueue after (a)" samples after-a 3
worst_a=$(worst a)
echo "# (a) worst enqueue latency while the dump was stalled: ${worst_a} s (baseline worst $(worst base) s)"
echo "# (a) answers: $(codes a)"
check "(a) the host acknowledges enqueues once the reader reads on" \
	test "$(awk '$1 == "after-a" && $2 == 202' "$T/lat" | wc -l)" -gt 0
check "(a) no enqueue waits as long as the reader stalls ($READER_PAUSE s)" \
	awk -v w="$worst_a" -v p="$READER_PAUSE" 'BEGIN { exit !(w < p) }'

# (b) the dump is killed with -9 while it is blocked
starts_before=$(grep -c "serving on" "$T/host.log")
set_phase b
sleep 600 < "$T/pipe" &	# opens the pipe and never reads
READER_PID=$!
"$DUMP" -p -h "$T/data" calls.db > "$T/pipe" 2> "$T/dump.b.err" &
DUMP_PID=$!
wait_until "the dump to block on the pipe" blocked "$DUMP_PID"
ok $? "(b) the dump blocks on a reader that does not read"
wait_until "enqueues answered while the dump is blocked" samples b 3
kill -9 "$DUMP_PID"
wait "$DUMP_PID" 2>/dev/null
DUMP_PID=
killed=$(date +%s%N)
set_phase after-b
kill "$READER_PID"
wait "$READER_PID" 2>/dev/null
READER_PID=
acked_after_b() { awk '$1 == "after-b" && $2 == 202' "$T/lat" | grep -q .; }
WAIT_LIMIT=$RECOVER_S
if wait_until "an enqueue acknowledged after the kill" acked_after_b; then
	ok 0 "(b) an enqueue is acknowledged within $RECOVER_S s of the kill -9 (the host does not wedge)"
	echo "# (b) first 202 seen $(ms_between "$killed" "$(date +%s%N)") ms after the kill"
else
	ok 1 "(b) an enqueue is acknowledged within $RECOVER_S s of the kill -9 (the host does not wedge)"
	echo "# (b) the host is wedged; db5.3_stat -Cl:"
	"$DBSTAT" -h "$T/data" -Cl 2>&1 | sed 's/^/#   /' | head -40
fi
WAIT_LIMIT=60
wait_until "a few more enqueues after (b)" samples after-b 10
touch "$T/stop"
wait "$LOAD_PID"
restarts=$(( $(grep -c "serving on" "$T/host.log") - starts_before ))
echo "# (b) worst enqueue latency from the kill on: $(worst after-b) s; answers: $(codes after-b)"
echo "# (b) while the dump was blocked, before the kill: worst $(worst b) s; answers: $(codes b)"
echo "# (b) the host restarted itself in place $restarts time(s) after the kill"
grep -e failchk -e "needs recovery" -e BDB2053 -e "Thread died" "$T/host.log" | head -6 | sed 's/^/#   log: /'
check "the host process is still alive" host_alive

# nothing acknowledged may be lost
URL=$(current_url)
cat "$T/acked" "$T/acked.load" > "$T/all"
call_states "$T/all" > "$T/states"
lost=$(awk '$2 != 200' "$T/states" | wc -l)
echo "# $(wc -l < "$T/all") calls acknowledged in all, $lost lost"
equal "every acknowledged call is still there" "$lost" 0
other=$(awk '$2 != 202 && $2 != 503 && $2 != 000' "$T/lat" | wc -l)
equal "enqueues were answered 202, or 503 while storage was blocked, never anything else" "$other" 0

done_testing

#!/bin/sh
# kill9_restart.sh - calls acknowledged with 202 survive a kill -9 of the host
# in the middle of a stream of enqueues, and all of them run once the module
# they wait for arrives.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

LOOPS=4
HALF=150		# acknowledged enqueues before the kill
write_conf "[queue default]" "retry_interval = 200ms" "retry_max_interval = 1s"
start_host

# enqueue_loop N: enqueues calls to flaky.work (not installed yet) until an
# enqueue is not answered 202 (the host is gone), appending the id of each
# one answered 202 to $T/ids.N and the first other answer to $T/end.N
enqueue_loop() {
	i=0
	while [ "$i" -lt 10000 ]; do
		i=$((i + 1))
		reply=$(curl -s -w ' %{http_code}' -d "loop $1 call $i" \
			"$URL/v1/enqueue/default/flaky/work")
		case "$reply" in
		*' 202')
			echo "$reply" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' >> "$T/ids.$1"
			;;
		*)
			echo "$reply" > "$T/end.$1"
			return
			;;
		esac
	done
}

acked() { cat "$T"/ids.* 2>/dev/null | wc -l; }
acked_at_least() { [ "$(acked)" -ge "$1" ]; }

start_loops "$LOOPS" enqueue_loop "$T/ids"

# kill the host once enough calls are acknowledged, the loops still running
wait_until "$HALF enqueues to be acknowledged" acked_at_least "$HALF"
ok $? "enqueues are being acknowledged"
at_kill=$(acked)
kill9_host
echo "# killed the host with SIGKILL after $at_kill acknowledged enqueues"
wait_loops
total=$(acked)
echo "# acknowledged before the kill was noticed: $total"
ended=$(cat "$T"/end.* 2>/dev/null | grep -c ' 000$')
equal "the host was killed while all $LOOPS enqueue loops were going on (each then found no host)" \
	"$ended" "$LOOPS"
check "calls were acknowledged before the kill" test "$total" -gt 0
cat "$T"/ids.* | sort > "$T/acked"
equal "every acknowledged id is distinct" "$(sort -u "$T/acked" | wc -l)" "$total"

start_host
check "the host restarts on the same data" host_alive

# every acknowledged call must exist and wait (flaky is not installed)
lost=0
notpending=0
while read -r id; do
	st=$(status GET "/v1/calls/$id")
	if [ "$st" != 200 ]; then
		lost=$((lost + 1))
		echo "# lost: $id (GET answered $st)"
		continue
	fi
	case "$(body)" in
	*'"state": "pending"'*|*'"state": "running"'*) ;;
	*) notpending=$((notpending + 1)); echo "# not pending: $(body | head -c 300)" ;;
	esac
done < "$T/acked"
echo "# after the restart: $total acknowledged, $lost lost, $notpending not pending"
equal "no acknowledged call was lost" "$lost" 0
equal "every acknowledged call is still pending" "$notpending" 0
id=$(head -1 "$T/acked")
wait_until "a waiting call to be attempted" attempts_at_least "$id" 1
contains "a waiting call failed with 'no module flaky'" "$(field "$id" last_error)" \
	"no module flaky"

# the module arrives: every acknowledged call runs
plugin "$TPLUGINS_V2/flaky.so" flaky
wait_until "flaky to be loaded" log_has "loaded flaky@2" || bail "flaky v2 not loaded"
count_done() {
	n=0
	while read -r id; do
		[ "$(field "$id" state)" = done ] && n=$((n + 1))
	done < "$T/acked"
	echo "$n"
}
cp "$T/acked" "$T/left"
wait_until "every acknowledged call to be done" all_done "$T/left"
ok $? "every acknowledged call is done once flaky v2 is installed"
done_n=$(count_done)
echo "# done: $done_n of $total"
equal "all $total acknowledged calls are done" "$done_n" "$total"
id=$(head -1 "$T/acked")
contains "a done call ran flaky v2" "$(history "$id" | tail -1)" " 2+"
check "the host process is still alive" host_alive

# --- a second host on a copy of this one's data_dir (a backup restored on
# the same machine): the copy's record of workers names this host's
# workers, and the second host must leave them alone
workers_before=$(pgrep -P "$HOST_PID" | sort | tr '\n' ' ')
check "the running host has workers" test -n "$workers_before"
mkdir -m 755 -p "$T/copy/plugins" "$T/copy/data"
cp "$T/data/workers" "$T/copy/data/workers"
printf '[host]\nlisten = 127.0.0.1:0\ndata_dir = data\nplugin_dir = plugins\nworkers = 1\n' \
	> "$T/copy/cagehost.conf"
serve_from "$T/copy" "the host on the copy"
copy_pid=$SERVED_PID
contains "the second host says the record names a running host's workers" \
	"$(cat "$T/copy/host.log")" "lists the workers of cagehost $HOST_PID, which is still running"
equal "and the first host's workers all live on" "$(pgrep -P "$HOST_PID" | sort | tr '\n' ' ')" \
	"$workers_before"
kill -TERM "$copy_pid"
wait "$copy_pid" 2>/dev/null
release_shm "$T/copy"

done_testing

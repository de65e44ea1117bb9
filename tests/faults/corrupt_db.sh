#!/bin/sh
# corrupt_db.sh - the host on a damaged data_dir.  For each kind of damage,
# done to a copy of a data_dir holding CALLS pending calls, the host must
# either start with every call there, or refuse to start - exit non-zero,
# quickly - with a message that names the damaged file and the command to
# recover it.  It must never serve with calls silently missing.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/faults/faults.sh"

CALLS=200
QUICK_S=10	# a refusal must come within this many seconds
WAIT_LIMIT=20	# a start that neither serves nor exits by then is wedged
write_conf "checkpoint_interval = 1h" \
	"[queue default]" "retry_interval = 1h" "wake_on_new_version = no"

# fill_data NAME: CALLS calls of 2 KiB to a missing module in a new data_dir,
# kept as $T/NAME (ids in $T/NAME.ids)
fill_data() {
	remove_data_dir "$T/data"
	start_host
	pad=$(head -c 2000 /dev/zero | tr '\0' c)
	: > "$T/$1.ids"
	i=0
	while [ "$i" -lt "$CALLS" ]; do
		i=$((i + 1))
		enqueue default nomod store "call $i $pad" >> "$T/$1.ids"
	done
	equal "$1: $CALLS calls acknowledged" "$(grep -c . "$T/$1.ids")" "$CALLS"
}

fill_data clean
stop_host
mv "$T/data" "$T/clean"
fill_data crashed
kill9_host	# its newest calls are in the log only (no checkpoint for 1h)
mv "$T/data" "$T/crashed"
echo "# calls.db after a clean stop: $(wc -c < "$T/clean/calls.db") bytes; log files: $(cd "$T/clean" && echo log.*)"
echo "# calls.db after kill -9: $(wc -c < "$T/crashed/calls.db") bytes; log files: $(cd "$T/crashed" && echo log.*)"

# try_damage NAME FROM FILE COMMAND...: COMMAND damages FILE in a copy of
# $T/FROM (run in it); then the host starts on it and must keep every call
# or refuse clearly, naming FILE
try_damage() {
	name=$1 from=$2 file=$3
	shift 3
	remove_data_dir "$T/data"
	cp -a "$T/$from" "$T/data"
	(cd "$T/data" && "$@")
	t0=$(date +%s%N)
	if try_start; then
		call_states "$T/$from.ids" > "$T/states"
		missing=$(awk '$2 != 200' "$T/states" | wc -l)
		notpending=$(awk '$2 == 200 && $3 != "pending"' "$T/states" | wc -l)
		echo "# $name: the host STARTED; $missing of $CALLS calls missing, $notpending not pending"
		awk '$2 != 200 { print $2 }' "$T/states" | sort | uniq -c |
			sed 's/^ *\([0-9]*\) \(.*\)/#   GET answered \2 for \1 calls/'
		grep -e error -e warning "$T/start.log" | head -5 | sed 's/^/#   log: /'
		equal "$name: started, so no call may be missing" "$missing" 0
		equal "$name: and every call is still pending" "$notpending" 0
		health=$(status GET /healthz)
		starts=$(starts_since_try)
		[ "$starts" -gt 1 ] && echo "# $name: the host restarted itself $((starts - 1)) time(s) meanwhile"
		check "$name: the host keeps serving on its port after reading the damaged data ($health)" \
			test "$health" = 200
		equal "$name: and it did not restart itself" "$starts" 1
		if reap_host; then
			echo "# $name: the host died: $(describe_status "$HOST_STATUS")"
			tail -5 "$T/host.log" | sed 's/^/#   /'
		else
			stop_host
		fi
	else
		ms=$(ms_between "$t0" "$(date +%s%N)")
		echo "# $name: the host REFUSED to start ($(describe_status "$START_STATUS"), after $ms ms):"
		sed 's/^/#   /' "$T/start.log" | tail -12
		if [ "$START_STATUS" = timeout ]; then
			ok 1 "$name: the host neither serves nor exits (wedged at start)"
			kill -9 "$HOST_PID"
			wait "$HOST_PID" 2>/dev/null
			HOST_PID=
			return
		fi
		check "$name: it exits non-zero" test "$START_STATUS" != 0
		check "$name: within $QUICK_S s" test "$ms" -le "$((QUICK_S * 1000))"
		log=$(cat "$T/start.log")
		contains "$name: the message names the damaged file" "$log" "$file"
		case $log in
		*db5.3_recover*|*db_recover*|*db5.3_verify*|*db_verify*|*db5.3_dump*-r*|*db_dump*-r*|*db5.3_hotbackup*)
			ok 0 "$name: the message gives the recovery command" ;;
		*)	ok 1 "$name: the message gives the recovery command" ;;
		esac
	fi
}

truncate_half() { truncate -s "$(( $(wc -c < "$1") / 2 ))" "$1"; }
garbage_page() {	# garbage_page FILE: one 4 KiB page in the middle
	pages=$(( $(wc -c < "$1") / 4096 ))
	head -c 4096 /dev/urandom | dd of="$1" bs=4096 seek=$((pages / 2)) count=1 conv=notrunc status=none
}
delete_logs() { rm -f log.*; }

try_damage "calls.db truncated to half" clean calls.db truncate_half calls.db
try_damage "a garbage page in calls.db" clean calls.db garbage_page calls.db
try_damage "log files deleted after a clean stop" clean "log file" delete_logs
try_damage "log files deleted after kill -9" crashed "log file" delete_logs
try_damage "calls.db truncated to half after kill -9" crashed calls.db truncate_half calls.db
try_damage "a garbage page in calls.db after kill -9" crashed calls.db garbage_page calls.db

done_testing

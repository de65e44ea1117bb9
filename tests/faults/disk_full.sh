#!/bin/sh
# disk_full.sh - data_dir on a small tmpfs.  Calls of 64 KiB are enqueued to
# a module that is not installed (so they stay) until the disk is full.
# Then an enqueue must get an error status with a reason (not 202, not a
# dropped connection), the host must keep serving, every call acknowledged
# before must still be there, and once a filler file made before the run is
# deleted, enqueues must succeed again without a restart, and a module
# moved in while the disk was full (refused: no room for its private copy)
# must load.  Last, a restart on the same disk finds every acknowledged
# call.  With under 64 MB free the host writes no log file ahead
# (log_ahead.c): that room is Berkeley DB's.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/faults/faults.sh"

if [ "$(id -u)" != 0 ]; then
	echo "ok 1 # SKIP not root (mounts a tmpfs)"
	echo "1..1"
	exit 0
fi

FILLER_MB=${FILLER_MB:-16}	# freed to end the shortage: room for a log file (8 MB)
ROOM_MB=${ROOM_MB:-12}		# what the calls may fill
MAX_CALLS=2000

fault_cleanup() {
	if [ -n "$HOST_PID" ]; then
		kill -9 "$HOST_PID" 2>/dev/null
		wait "$HOST_PID" 2>/dev/null
		HOST_PID=
	fi
	release_shm "$T"	# its record is on the tmpfs
	umount "$T/data/modules" 2>/dev/null || umount -l "$T/data/modules" 2>/dev/null
	umount "$T/data" 2>/dev/null || umount -l "$T/data" 2>/dev/null
	cleanup
}
trap fault_cleanup EXIT
mkdir -m 700 "$T/data"
mount -t tmpfs -o size=256m,mode=700 tmpfs "$T/data" || bail "cannot mount a tmpfs on $T/data"

write_conf "[queue default]" "retry_interval = 1h" "wake_on_new_version = no"
start_host

# size the file system to what the host uses at rest, plus a filler file,
# plus ROOM_MB for the calls (a fixed size would guess the region files)
used_k() { df -k "$T/data" | awk 'NR == 2 { print $3 }'; }
# blank_logs: how many log files are still blank (made ahead, all zeros)
blank_logs() {
	n=0
	for f in "$T"/data/log.*; do
		[ -e "$f" ] || continue
		[ -n "$(head -c 64 "$f" | tr -d '\000')" ] || n=$((n + 1))
	done
	echo "$n"
}
dd if=/dev/zero of="$T/data/filler" bs=1M count="$FILLER_MB" status=none
size_k=$(( $(used_k) + ROOM_MB * 1024 ))
mount -o remount,size="${size_k}k" "$T/data" || bail "cannot resize the tmpfs"
echo "# tmpfs of $((size_k / 1024)) MiB: the host uses $(( $(used_k) / 1024 - FILLER_MB )) MiB at rest, plus a $FILLER_MB MiB filler"

head -c 65536 /dev/zero | tr '\0' p > "$T/payload"
: > "$T/acked"
n=0
n431=0
last=
while [ "$n" -lt "$MAX_CALLS" ]; do
	n=$((n + 1))
	: > "$T/body"
	last=$(curl -s --max-time 30 -o "$T/body" -w '%{http_code}' --data-binary @"$T/payload" \
		"$URL/v1/enqueue/default/nomod/store")
	case $last in
	202) sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body" >> "$T/acked" ;;
	431) n431=$((n431 + 1)) ;;	# a host bug, see the check below
	*) break ;;
	esac
done
acked=$(wc -l < "$T/acked")
echo "# $acked calls of 64 KiB acknowledged, then HTTP $last: $(head -c 300 "$T/body" 2>/dev/null)"
echo "# disk: $(( $(used_k) / 1024 )) of $((size_k / 1024)) MiB used"
equal "no valid enqueue was refused with 431 (request headers are 180 bytes)" "$n431" 0
check "some calls were acknowledged before the disk filled" test "$acked" -gt 0
check "the disk filled up before $MAX_CALLS calls" test "$n" -lt "$MAX_CALLS"
equal "the enqueue that does not fit is answered 503" "$last" 503
contains "with a reason that names the shortage" "$(cat "$T/body")" "No space left on device"
if reap_host; then
	echo "# the host died: $(describe_status "$HOST_STATUS")"
	grep -v -e BDB0137 -e BDB3015 -e BDB3027 "$T/host.log" | tail -8 | sed 's/^/#   /'
	ok 1 "the host keeps running on a full disk"
else
	ok 0 "the host keeps running on a full disk"
fi

if [ -n "$HOST_PID" ]; then
	equal "healthz answers 200 on a full disk" "$(status GET /healthz)" 200
	call_states "$T/acked" > "$T/states"
	equal "every acknowledged call is still readable on a full disk" \
		"$(awk '$2 != 200' "$T/states" | wc -l)" 0
	# A checkpoint may remove an old log file after that 503 (one runs
	# each second once 4 MB of log were written), and the room it frees
	# takes calls again: enqueue until the disk refuses once more.
	more=0
	while [ "$more" -lt "$MAX_CALLS" ]; do
		: > "$T/body"
		code=$(curl -s --max-time 30 -o "$T/body" -w '%{http_code}' --data-binary @"$T/payload" \
			"$URL/v1/enqueue/default/nomod/store")
		[ "$code" = 202 ] || break
		sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body" >> "$T/acked"
		more=$((more + 1))
	done
	echo "# $more more calls acknowledged in room freed since, then HTTP $code"
	equal "further enqueues on the full disk are answered 503 again" "$code" 503
	contains "again naming the shortage" "$(cat "$T/body")" "No space left on device"
	equal "cagehost_enqueued_total counts the 202s only, not the calls refused" \
		"$(metric cagehost_enqueued_total)" \
		"$(wc -l < "$T/acked")"
	check "cagehost_enqueues_failed_total counts the enqueues refused for want of disk" \
		test "$(metric cagehost_enqueues_failed_total)" -ge 2
	check "with under 64 MB free no log file is written ahead (the room is Berkeley DB's)" \
		log_has "less than 64 MB free"
	equal "no blank log file made ahead takes any of the disk" "$(blank_logs)" 0
	reap_host && echo "# the host died on a further enqueue: $(describe_status "$HOST_STATUS")"
fi
if [ -n "$HOST_PID" ]; then
	# a new module moved in now: its private copy cannot be written in
	# data_dir/modules, and the module is read again until it can be.
	# That directory gets a full tmpfs of its own: the rest of the disk
	# may get room back meanwhile (a checkpoint removing an old log file)
	mount -t tmpfs -o size=1m,mode=700 tmpfs "$T/data/modules" ||
		bail "cannot mount a tmpfs on $T/data/modules"
	dd if=/dev/zero of="$T/data/modules/filler" bs=4k status=none 2>/dev/null
	plugin "$PLUGINS/echo.so" mod
	mod_sum=$(cksum < "$T/plugins/mod.so")
	wait_until "the refusal of mod" log_has "refused $T/plugins/mod.so: cannot .*private copy"
	ok $? "a module moved in on the full disk is refused: no room for its private copy"
	contains "for now: it is read again" \
		"$(grep "refused $T/plugins/mod.so" "$T/host.log" | head -1)" \
		"No space left on device (read again, at most 10 s apart, until it can be)"
	reap_host && echo "# the host died with its disk filled up: $(describe_status "$HOST_STATUS")"
fi

# space returns: the filler goes, and enqueues must succeed again by themselves
rm -f "$T/data/filler" "$T/data/modules/filler"
echo "# filler deleted: $(( $(used_k) / 1024 )) of $((size_k / 1024)) MiB used"
if [ -n "$HOST_PID" ]; then
	enqueue_ok() {
		reap_host && return 2
		c=$(curl -s --max-time 30 -o "$T/body" -w '%{http_code}' -d small \
			"$URL/v1/enqueue/default/nomod/store")
		[ "$c" = 202 ] && sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body" >> "$T/acked"
		[ "$c" = 202 ]
	}
	started=$(date +%s%N)
	wait_until "an enqueue to succeed once space returns" enqueue_ok
	ok $? "enqueues succeed again once space returns, without a restart"
	echo "# first 202 after $(ms_between "$started" "$(date +%s%N)") ms"
	code=$(curl -s --max-time 30 -o "$T/body" -w '%{http_code}' --data-binary @"$T/payload" \
		"$URL/v1/enqueue/default/nomod/store")
	[ "$code" = 202 ] && sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body" >> "$T/acked"
	equal "and a 64 KiB call is acknowledged again" "$code" 202
	wait_until "mod to load" log_has "loaded mod@"
	ok $? "the module refused on the full disk loads once space returns"
	equal "its file untouched meanwhile" "$(cksum < "$T/plugins/mod.so")" "$mod_sum"
	equal "and it serves" "$(status POST /v1/call/mod/echo back)" 200
	reap_host && echo "# the host died after space returned: $(describe_status "$HOST_STATUS")"
else
	ok 1 "enqueues succeed again once space returns, without a restart (the host is dead)"
fi

# restart on the same disk: everything acknowledged must be there
[ -n "$HOST_PID" ] && stop_host
acked=$(wc -l < "$T/acked")
if try_start; then
	ok 0 "the host restarts on the same disk once the filler is gone"
else
	ok 1 "the host restarts on the same disk once the filler is gone"
	echo "# it did not: $(describe_status "$START_STATUS"); disk $(( $(used_k) / 1024 )) of $((size_k / 1024)) MiB used; its log:"
	grep -v -e BDB0137 -e BDB3015 -e BDB3027 "$T/start.log" | tail -8 | sed 's/^/#   /'
	ls -ls "$T/data" | sed 's/^/#   /'
	# check the data anyway, with room to spare
	mount -o remount,size=256m "$T/data"
	try_start || bail "the host does not start even with 256 MiB: $(describe_status "$START_STATUS")"
	echo "# with 256 MiB it starts"
fi
call_states "$T/acked" > "$T/states"
lost=$(awk '$2 != 200' "$T/states" | wc -l)
awk '$2 != 200 { print "# lost: " $0 }' "$T/states" | head
equal "after the restart all $acked acknowledged calls are there" "$lost" 0
equal "and all of them are pending" "$(awk '$3 != "pending"' "$T/states" | wc -l)" 0

done_testing

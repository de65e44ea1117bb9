#!/bin/sh
# plugin_read_again.sh - a new module file the host cannot read, or its
# workers cannot load, for a cause that passes (here: no file descriptor
# left) is refused with that reason, and read again until it can be: once
# descriptors are free it loads, with nobody touching the file.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

command -v prlimit > /dev/null || bail "prlimit (util-linux) is needed"

write_conf
start_host

# open_fds: how many descriptors the host has open
open_fds() { ls "/proc/$HOST_PID/fd" | wc -l; }
# fds_at LIMIT: the host has all LIMIT open
fds_at() { [ "$(open_fds)" -ge "$1" ]; }

# the workers out of descriptors (while they have loaded no module: one
# that has would hand the new one to a fresh worker): the probe's dlopen()
# of a new module fails for want of one, and the module loads once they
# have some again (its bytes were not refused for good)
# lowest_free PID: the lowest descriptor number PID has not open (a limit
# of that many leaves it none to open)
lowest_free() {
	n=0
	while [ -e "/proc/$1/fd/$n" ]; do n=$((n + 1)); done
	echo "$n"
}
workers=$(pgrep -P "$HOST_PID")
check "the host has workers" test -n "$workers"
for w in $workers; do
	soft=$(awk '/^Max open files/ { print $4 }' "/proc/$w/limits")
	echo "$w $soft" >> "$T/worker_limits"
	prlimit --pid "$w" --nofile="$(lowest_free "$w"):" ||
		echo "# could not lower worker $w's descriptor limit"
done
plugin "$PLUGINS/echo.so" mod2
check "mod2.so is refused: no worker could open it" \
	wait_until "the refusal of mod2" log_has "refused $T/plugins/mod2.so: cannot load: "
line=$(grep "refused $T/plugins/mod2.so" "$T/host.log" | head -1)
echo "# ${line#* cagehost }"
contains "naming the cause" "$line" "Too many open files"
contains "and saying it is read again" "$line" "read again, at most 10 s apart, until it can be"
while read -r w soft; do
	prlimit --pid "$w" --nofile="$soft:" 2>/dev/null
done < "$T/worker_limits"
check "with descriptors free in the workers, mod2 loads without the file changing" \
	wait_until "mod2 to load" log_has "loaded mod2@"
equal "mod2.echo serves" "$(status POST /v1/call/mod2/echo two)" 200
check "the host is alive" host_alive

# the host out of descriptors
limit=$(( $(open_fds) + 4 ))
check "the host's descriptor limit is lowered to $limit" \
	prlimit --pid "$HOST_PID" --nofile="$limit:"
# connections the host takes until it is out of descriptors (the rest
# wait in its listen queue)
"$HOLDCONNS" "$PORT" 8 120 > "$T/hold.out" &
holder=$!
check "the connections take the host's last descriptors" wait_until "$limit open" fds_at "$limit"

check "the host still has none free" fds_at "$limit"
plugin "$PLUGINS/echo.so" mod
check "mod.so is refused: no descriptor to open it" \
	wait_until "the refusal" log_has "refused $T/plugins/mod.so: cannot open: Too many open files"
line=$(grep "refused $T/plugins/mod.so" "$T/host.log" | head -1)
echo "# ${line#* cagehost }"
contains "the reason says it is read again" "$line" "read again, at most 10 s apart, until it can be"
check "the host is alive" host_alive

kill "$holder"
wait "$holder" 2>/dev/null
check "with descriptors free again, mod loads without the file changing" \
	wait_until "mod to load" log_has "loaded mod@"
equal "mod.echo serves" "$(status POST /v1/call/mod/echo again)" 200
equal "with mod's reply" "$(body)" again
equal "the refusal was logged once" "$(log_count "refused $T/plugins/mod.so")" 1
check "the host is alive" host_alive


done_testing

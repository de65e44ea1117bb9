#!/bin/sh
# plugin_read_again.sh - a new module file the host cannot read for a cause
# that passes (here: it has no file descriptor left) is refused with that
# reason, and read again until it can be: once descriptors are free it
# loads, with nobody touching the file.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

command -v prlimit > /dev/null || bail "prlimit (util-linux) is needed"

write_conf
start_host

# open_fds: how many descriptors the host has open
open_fds() { ls "/proc/$HOST_PID/fd" | wc -l; }
# fds_at LIMIT: the host has all LIMIT open
fds_at() { [ "$(open_fds)" -ge "$1" ]; }

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

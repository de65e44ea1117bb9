#!/bin/sh
# log_ahead.sh - while the log is busy, the host writes Berkeley DB's next
# log file ahead of time, zero-filled.  BDB then writes its records into
# that file; recovery after a kill -9 ignores a blank one; the check for
# missing log files is not fooled by one; and no acknowledged call is lost.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

PRINTLOG=$(command -v db5.3_printlog || command -v db_printlog)
write_conf
start_host

# a 200 KB payload: ten delayed enqueues fill a 2 MB log file
head -c 200000 /dev/zero | tr '\0' x > "$T/big"
: > "$T/ids"
big_enqueue() {
	curl -s --data-binary @"$T/big" "$URL/v1/enqueue/default/echo/noop?delay=1h" |
		sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' >> "$T/ids"
}

# blank FILE: the file's first 64 bytes are zero (no log record yet)
blank() { ! od -An -tx1 -N64 "$1" 2>/dev/null | grep -q '[1-9a-f]'; }

# newest_blank / newest_written: the newest log file of each kind ("" if none)
newest_blank() {
	for f in "$T"/data/log.[0-9]*; do blank "$f" && echo "$f"; done | tail -1
}
newest_written() {
	for f in "$T"/data/log.[0-9]*; do blank "$f" || echo "$f"; done | tail -1
}

blank_ahead() {
	b=$(newest_blank)
	[ -n "$b" ] && [ "$b" \> "$(newest_written)" ]
}

# fill_until_blank: enqueues until a blank file exists beyond the newest
# written one, giving the host's thread up to a second after each enqueue
# (at most 60 enqueues: six log files)
fill_until_blank() {
	n=0
	while [ "$n" -lt 60 ]; do
		big_enqueue
		n=$((n + 1))
		polls=0
		while [ "$polls" -lt 20 ]; do
			blank_ahead && return 0
			sleep 0.05
			polls=$((polls + 1))
		done
	done
	return 1
}

all_pending() {
	for id in $(cat "$T/ids"); do
		state_is "$id" pending || { echo "# $id is not pending"; return 1; }
	done
}

fill_until_blank
ok $? "a busy log gets its next file written ahead, zero-filled"
ahead=$(newest_blank)
equal "it is one full log file (2 MB)" "$(stat -c %s "$ahead")" 2097152
check "only the host's files are left (no temporary file)" \
	test ! -e "$T/data/log.ahead.tmp"

kill9_host
start_host
equal "after kill -9 the host starts with the blank file there" "$(host_alive && echo up)" up
check "every call acknowledged before the kill is pending" all_pending

# write past the file made ahead: BDB must take it as its next log file
before=$(wc -l < "$T/ids")
n=0
while blank "$ahead" && [ "$n" -lt 60 ]; do
	big_enqueue
	n=$((n + 1))
done
check "Berkeley DB writes its records into the file made ahead" eval '! blank "$ahead"'
check "the enqueues meanwhile were acknowledged" test "$(wc -l < "$T/ids")" -gt "$before"

kill9_host
start_host
check "after another kill -9 every acknowledged call is still pending" all_pending
equal "the log answers GET /v1/calls for each" "$(wc -l < "$T/ids" | tr -d ' ')" \
	"$(for id in $(cat "$T/ids"); do field "$id" id; done | grep -c .)"

fill_until_blank
ok $? "files are written ahead again after a restart"
stop_host
"$PRINTLOG" -h "$T/data" > "$T/printlog.txt" 2> "$T/printlog.err"
ok $? "db5.3_printlog reads the whole log, blank file included"
check "and it found records" grep -q "__db_addrem" "$T/printlog.txt"

# the missing-log check: remove every log file with records, keep the blank
# one (numbered past the last checkpoint); the host must not take it for
# the log and start with the commits gone
for f in "$T"/data/log.[0-9]*; do blank "$f" || rm -f "$f"; done
check "a blank log file is left" test -n "$(newest_blank)"
"$CAGEHOST" -c "$T/cagehost.conf" > "$T/missing.log" 2>&1
code=$?
equal "with its log files deleted the host refuses to start" "$code" 1
contains "and says log files are missing" "$(cat "$T/missing.log")" "log files are missing"

done_testing

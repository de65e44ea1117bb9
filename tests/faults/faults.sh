# faults.sh - helpers shared by the fault-injection tests, sourced after
# tests/lib.sh.  Nothing here sleeps to decide an outcome.

LC_ALL=C
export LC_ALL
DUMP=$(command -v db5.3_dump || command -v db_dump)
DBSTAT=$(command -v db5.3_stat || command -v db_stat)

# call_states IDFILE: one GET /v1/calls/ID per id in IDFILE (first word of
# each line), all over one keep-alive curl; prints "ID HTTP STATE ATTEMPTS"
# per id ("-" where the body has no such field, HTTP 000 if unreachable)
call_states() {
	awk -v u="$URL" '{ printf "url = \"%s/v1/calls/%s\"\n", u, $1 }' "$1" > "$T/states.cfg"
	curl -s --max-time 120 -K "$T/states.cfg" -w 'HTTP %{http_code} %{url_effective}\n' |
		awk '
		/^HTTP [0-9]+ / {
			n = split($3, p, "/"); st = "-"; at = "-"
			if (match(body, /"state": "[a-z]+"/)) st = substr(body, RSTART + 10, RLENGTH - 11)
			if (match(body, /"attempts": [0-9]+/)) at = substr(body, RSTART + 12, RLENGTH - 12)
			print p[n], $2, st, at
			body = ""
			next
		}
		{ body = body $0 }'
}

# ms_between A B: milliseconds from A to B, both "date +%s%N" readings
ms_between() { echo $(( ($2 - $1) / 1000000 )); }

# random_ms MIN MAX: a random whole number in [MIN, MAX]
random_ms() { echo $(( $1 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % ($2 - $1 + 1) )); }

# sleep_ms N (N < 10000)
sleep_ms() { sleep "$(( $1 / 1000 )).$(printf '%03d' $(( $1 % 1000 )))"; }

# max_of FILE: the largest number in the first column (0 if none)
max_of() { awk 'BEGIN { m = 0 } $1 + 0 > m { m = $1 + 0 } END { printf "%.3f\n", m }' "$1"; }

# try_start: start_host that does not bail: returns 0 once the host serves
# (HOST_PID, PORT, URL set), or 1 if it exits first (its status in
# START_STATUS) or does not serve within WAIT_LIMIT seconds (START_STATUS
# "timeout", the host is left running).  New log lines are in $T/start.log.
try_start() {
	[ -f "$T/cagehost.conf" ] || write_conf
	lines=$(cat "$T/host.log" 2>/dev/null | wc -l)
	START_LINE=$lines
	START_STATUS=
	"$CAGEHOST" -c "$T/cagehost.conf" >> "$T/host.log" 2>&1 &
	HOST_PID=$!
	deadline=$(( $(date +%s) + WAIT_LIMIT ))
	until serving_since "$lines"; do
		if ! running "$HOST_PID"; then
			wait "$HOST_PID"
			START_STATUS=$?
			HOST_PID=
			tail -n +"$((lines + 1))" "$T/host.log" > "$T/start.log"
			return 1
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			START_STATUS=timeout
			tail -n +"$((lines + 1))" "$T/host.log" > "$T/start.log"
			return 1
		fi
		sleep 0.05
	done
	tail -n +"$((lines + 1))" "$T/host.log" > "$T/start.log"
	PORT=$(sed -n 's/.* serving on [^ ]*:\([0-9]*\) .*/\1/p' "$T/start.log" | tail -1)
	URL=http://127.0.0.1:$PORT
	export CAGEHOST_URL=$URL
	return 0
}

# running PID: the process exists and is not a zombie (Linux)
running() {
	st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# reap_host: if the host process has died, collects its exit status into
# HOST_STATUS (e.g. 135 = killed by SIGBUS), clears HOST_PID, returns 0;
# returns 1 while it is alive
reap_host() {
	if [ -n "$HOST_PID" ] && running "$HOST_PID"; then return 1; fi
	HOST_STATUS=none
	if [ -n "$HOST_PID" ]; then
		wait "$HOST_PID"
		HOST_STATUS=$?
	fi
	HOST_PID=
	return 0
}

# describe_status N: "exit status N" or "killed by SIGNAME"
describe_status() {
	case $1 in
	''|none|timeout) echo "$1" ;;
	*) if [ "$1" -gt 128 ]; then echo "killed by SIG$(kill -l "$(( $1 - 128 ))")"; else echo "exit status $1"; fi ;;
	esac
}

# starts_since_try: how many times the host logged "serving on" since the
# last try_start (more than 1: it restarted itself in place)
starts_since_try() { tail -n +"$((START_LINE + 1))" "$T/host.log" | grep -c "serving on"; }

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

# count_of FILE: lines in FILE (0 if it does not exist)
count_of() { if [ -f "$1" ]; then wc -l < "$1" | tr -d ' '; else echo 0; fi; }

# lib.sh - helpers for the end-to-end tests.  Each test is a TAP script that
# runs the real cagehost from the build tree on a fresh temporary directory
# and a kernel-chosen port, with real plugins built by the build.
#
# Environment (set by `make check`): CAGE_BUILD, CAGE_SRC, TMPDIR.
# Waits are bounded polls of the host's observable state, never sleeps whose
# length decides the outcome.

set -u
CAGE_BUILD=${CAGE_BUILD:-$(cd "$(dirname "$0")/.." && pwd)}
CAGE_SRC=${CAGE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$CAGE_SRC/tests/shm.sh"
CAGEHOST=$CAGE_BUILD/host/cagehost
CAGECTL=$CAGE_BUILD/host/cagectl
PLUGINS=$CAGE_BUILD/plugins/.libs
TPLUGINS=$CAGE_BUILD/tests/plugins/.libs
HOLDCONNS=$CAGE_BUILD/tests/e2e/holdconns
HALFCLOSE=$CAGE_BUILD/tests/e2e/halfclose
# the helpers' requests fail after this long, so that a wedged host fails
# its test instead of hanging the suite
CURL_LIMIT=${CURL_LIMIT:-120}
TPLUGINS_V1=$CAGE_BUILD/tests/plugins/v1/.libs
TPLUGINS_V2=$CAGE_BUILD/tests/plugins/v2/.libs
WAIT_LIMIT=${WAIT_LIMIT:-60}	# seconds any single wait may take

T=$(mktemp -d "${TMPDIR:-/tmp}/cage-e2e.XXXXXX")
chmod 755 "$T"
mkdir -m 755 "$T/plugins"
HOST_PID=
PORT=
URL=
tap_n=0
tap_failed=0

cleanup() {
	if [ -n "$HOST_PID" ]; then
		kill -9 "$HOST_PID" 2>/dev/null
		wait "$HOST_PID" 2>/dev/null
	fi
	release_shm "$T"
	if [ "$tap_failed" = 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$T"
	else
		echo "# test directory kept: $T"
	fi
}
trap cleanup EXIT

ok() {	# ok CONDITION-EXIT-STATUS DESCRIPTION
	tap_n=$((tap_n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

check() {	# check DESCRIPTION COMMAND...: passes when COMMAND succeeds
	desc=$1
	shift
	if "$@"; then ok 0 "$desc"; else ok 1 "$desc"; fi
}

equal() {	# equal DESCRIPTION ACTUAL EXPECTED
	if [ "$2" = "$3" ]; then
		ok 0 "$1"
	else
		ok 1 "$1"
		echo "#   got:      '$2'"
		echo "#   expected: '$3'"
	fi
}

contains() {	# contains DESCRIPTION HAYSTACK NEEDLE
	case "$2" in
	*"$3"*) ok 0 "$1" ;;
	*) ok 1 "$1"; echo "#   '$3' not in: $(printf '%s' "$2" | head -c 600)" ;;
	esac
}

done_testing() {
	echo "1..$tap_n"
	if [ "$tap_failed" != 0 ]; then
		echo "# host log:"
		sed 's/^/#   /' "$T/host.log" 2>/dev/null | tail -40
	fi
	exit 0
}

bail() {
	echo "Bail out! $*"
	sed 's/^/#   /' "$T/host.log" 2>/dev/null | tail -40
	exit 1
}

# write_conf: the [host] section plus any extra lines given (queues...)
write_conf() {
	# the [host] keys the lines set (before their first section) replace
	# the defaults: a key may not be set twice
	given=" "
	for line in "$@"; do
		case "$line" in
		"["*) break ;;
		*=*) key=${line%%=*}; given="$given$(echo $key) " ;;
		esac
	done
	{
		echo "[host]"
		for default in "listen = 127.0.0.1:${FIXED_PORT:-0}" "data_dir = data" \
			"plugin_dir = plugins" "workers = ${WORKERS:-2}" "log_level = ${LOG_LEVEL:-info}"; do
			case "$given" in
			*" ${default%% *} "*) ;;
			*) echo "$default" ;;
			esac
		done
		for line in "$@"; do echo "$line"; done
	} > "$T/cagehost.conf"
}

# now_ms: the wall clock in milliseconds
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_until DESCRIPTION COMMAND...: polls COMMAND (every 50 ms) until it
# succeeds; returns 1 after WAIT_LIMIT seconds (whole seconds, counted in ms
# so that a short limit is not cut by up to a second).
wait_until() {
	what=$1
	shift
	deadline=$(( $(now_ms) + WAIT_LIMIT * 1000 ))
	until "$@" >/dev/null 2>&1; do
		if [ "$(now_ms)" -ge "$deadline" ]; then
			echo "# gave up waiting for: $what"
			return 1
		fi
		sleep 0.05
	done
	return 0
}

log_has() { grep -q -- "$1" "$T/host.log"; }

# metric NAME [BASE_URL]: the value on NAME's line of /metrics (NAME as
# written there, labels included), of this host or the one at BASE_URL
metric() {
	curl -s -m "$CURL_LIMIT" "${2:-$URL}/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'
}
log_count() { grep -c -- "$1" "$T/host.log"; }

# serve_from DIR WHAT: starts cagehost on DIR/cagehost.conf, logging to
# DIR/host.log, and waits until it serves (bails out naming WHAT if it
# does not); sets SERVED_PID and SERVED_PORT (the port it listens on)
serve_from() {
	lines=$(cat "$1/host.log" 2>/dev/null | wc -l)
	"$CAGEHOST" -c "$1/cagehost.conf" >> "$1/host.log" 2>&1 &
	SERVED_PID=$!
	wait_until "$2 to serve" served_since "$1" "$lines" || bail "$2 did not start"
	SERVED_PORT=$(tail -n +"$((lines + 1))" "$1/host.log" |
		sed -n 's/.* serving on [^ ]*:\([0-9]*\) .*/\1/p' | tail -1)
}
# served_since DIR LINES: DIR/host.log says "serving on" after line LINES
served_since() { tail -n +"$(($2 + 1))" "$1/host.log" | grep -q "serving on"; }
serving_since() { served_since "$T" "$1"; }

# start_host: starts cagehost on $T/cagehost.conf; sets HOST_PID, PORT, URL
start_host() {
	[ -f "$T/cagehost.conf" ] || write_conf
	serve_from "$T" cagehost
	HOST_PID=$SERVED_PID
	PORT=$SERVED_PORT
	URL=http://127.0.0.1:$PORT
	export CAGEHOST_URL=$URL
}

host_alive() { kill -0 "$HOST_PID" 2>/dev/null; }

stop_host() {
	kill -TERM "$HOST_PID"
	wait "$HOST_PID" 2>/dev/null
	HOST_PID=
}

kill9_host() {
	kill -9 "$HOST_PID"
	wait "$HOST_PID" 2>/dev/null
	HOST_PID=
}

# remove_data_dir DIR: deletes a data_dir no host runs on, and first the
# shared memory a host killed on it left (keyed by the directory's inode:
# a new directory would not find it, and cleanup could not either)
remove_data_dir() {
	release_shm "$1"
	rm -rf "$1"
}

# plugin FILE NAME: installs a plugin the way operators are told to (mv of a
# complete file within the same directory)
plugin() {
	install -m 755 "$1" "$T/plugins/.$2.so.tmp"
	mv "$T/plugins/.$2.so.tmp" "$T/plugins/$2.so"
}

# status METHOD PATH [DATA]: prints the HTTP status; the body is in $T/body
status() {
	curl -s -m "$CURL_LIMIT" -o "$T/body" -w '%{http_code}' -X "$1" ${3+--data-binary "$3"} "$URL$2"
}

body() { cat "$T/body"; }

# enqueue QUEUE MODULE METHOD [DATA]: prints the new call's id
enqueue() {
	curl -s -m "$CURL_LIMIT" -X POST ${4+--data-binary "$4"} "$URL/v1/enqueue/$1/$2/$3" |
		sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p'
}

# field ID NAME: a top-level JSON field of GET /v1/calls/ID (string or number)
field() {
	curl -s -m "$CURL_LIMIT" "$URL/v1/calls/$1" |
		sed -n "s/^{.*\"$2\": \"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p" | head -1
}

state_is() { [ "$(field "$1" state)" = "$2" ]; }

# start_loops N FUNCTION FILE: runs FUNCTION 1 ... FUNCTION N in the
# background, each after emptying FILE.I for it; wait_loops waits for them
start_loops() {
	n=1
	LOOP_PIDS=
	while [ "$n" -le "$1" ]; do
		: > "$3.$n"
		"$2" "$n" &
		LOOP_PIDS="$LOOP_PIDS $!"
		n=$((n + 1))
	done
}
wait_loops() { for pid in $LOOP_PIDS; do wait "$pid"; done; }

# call_state ID [BASE_URL]: the state of call ID, on this host or the one at
# BASE_URL
call_state() {
	curl -s -m "$CURL_LIMIT" "${2:-$URL}/v1/calls/$1" |
		sed -n 's/^{.*"state": "\([a-z]*\)".*/\1/p'
}

# all_done LIST [BASE_URL]: every call whose id is in the file LIST is done.
# Ids seen done are dropped from LIST, so that a poll (wait_until) checks
# only the rest: give it a copy.
all_done() {
	: > "$1.left"
	while read -r id; do
		[ "$(call_state "$id" "${2:-}")" = done ] || echo "$id" >> "$1.left"
	done < "$1"
	mv "$1.left" "$1"
	[ ! -s "$1" ]
}
attempts_at_least() { [ "$(field "$1" attempts)" -ge "$2" ] 2>/dev/null; }

# history ID: one line per attempt: "N VERSION OUTCOME"
history() {
	curl -s -m "$CURL_LIMIT" -H 'Accept: text/plain' "$URL/v1/calls/$1" |
		sed -n 's/^  #\([0-9]*\) *[^ ]* *\([^ ]*\) *\([a-z]*\).*/\1 \2 \3/p'
}

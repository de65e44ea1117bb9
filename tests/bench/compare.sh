#!/usr/bin/env bash
# compare.sh - two builds of cagehost under the same load, in paired runs,
# to tell whether a change to the host made it faster.
#
# Usage: tests/bench/compare.sh HOST_A HOST_B [PAIRS]
#
# HOST_A and HOST_B are cagehost binaries (copy host/cagehost aside before
# rebuilding).  Each pair runs both for DURATION seconds on fresh data
# directories, one after the other, and the order alternates from pair to
# pair: on a small VM whichever runs second in a fixed order comes out
# about 5 % ahead (an A/A comparison showed it).  Single runs vary by
# about 10 % there, so a difference means something only when B wins most
# of 10 or more pairs.  Prints each pair, then the medians, the means and
# how many pairs B won.
#
# Environment: PAIRS (10), DURATION (3 s), CONNS (64), PAYLOAD (100),
# URL_PATH (/v1/enqueue/default/echo/noop?delay=1h: row 1a's load; use
# /v1/enqueue/default/echo/noop for calls that run, or METHOD=GET and
# /healthz), METHOD (POST), CAGE_BUILD (two levels above this script),
# TMPDIR (where data lives: its disk is measured).

set -u

here=$(cd "$(dirname "$0")" && pwd)
CAGE_BUILD=${CAGE_BUILD:-$(cd "$here/../.." && pwd)}
LOADGEN=${LOADGEN:-$CAGE_BUILD/tests/bench/loadgen}
ECHO_SO=$CAGE_BUILD/plugins/.libs/echo.so
: "${DURATION:=3}" "${CONNS:=64}" "${PAYLOAD:=100}" "${METHOD:=POST}"
: "${URL_PATH:=/v1/enqueue/default/echo/noop?delay=1h}"

if [ $# -lt 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
	echo "usage: $0 HOST_A HOST_B [PAIRS]  (two cagehost binaries)" >&2
	exit 2
fi
PAIRS=${3:-${PAIRS:-10}}
for f in "$LOADGEN" "$ECHO_SO"; do
	[ -e "$f" ] || { echo "$0: $f is missing: build first (make; make bench)" >&2; exit 2; }
done

W=$(mktemp -d "${TMPDIR:-/tmp}/cage-compare.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait; rm -rf "$W"' EXIT

# One run of binary $1: prints the loadgen's rate.
run() {
	local dir=$W/run port rate
	rm -rf "$dir"
	mkdir -p "$dir/plugins"
	cp "$ECHO_SO" "$dir/plugins/"
	port=$((20000 + RANDOM % 20000))
	printf '[host]\nlisten = 127.0.0.1:%s\ndata_dir = data\nplugin_dir = plugins\n' "$port" \
		> "$dir/host.conf"
	printf 'workers = 2\nlog_level = warning\n' >> "$dir/host.conf"
	(cd "$dir" && exec "$1" -c host.conf > host.log 2>&1) &
	pid=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break
		sleep 0.1
	done
	if ! curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; then
		echo "$0: $1 did not start on port $port:" >&2
		cat "$dir/host.log" >&2
		exit 1
	fi
	rate=$("$LOADGEN" http --url "http://127.0.0.1:$port$URL_PATH" --method "$METHOD" \
		--conns "$CONNS" --payload "$PAYLOAD" --duration "$DURATION" 2>&1 |
		sed -n 's/.*rate=\([0-9]*\).*/\1/p' | tail -1)
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
	echo "${rate:-0}"
}

a=()
b=()
wins=0
for i in $(seq "$PAIRS"); do
	if [ $((i % 2)) = 1 ]; then
		x=$(run "$1"); y=$(run "$2")
	else
		y=$(run "$2"); x=$(run "$1")
	fi
	a+=("$x")
	b+=("$y")
	[ "$y" -gt "$x" ] && wins=$((wins + 1))
	echo "pair $i: A $x/s  B $y/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.0f", s / NR }'; }
echo "median A $(median "${a[@]}")/s  B $(median "${b[@]}")/s;" \
	"mean A $(mean "${a[@]}")/s  B $(mean "${b[@]}")/s; B faster in $wins of $PAIRS pairs"

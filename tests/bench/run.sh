#!/usr/bin/env bash
# run.sh - the cagehost benchmark: cagehost and beanstalkd on loopback, same
# machine, same payloads, same client concurrency, one run; prints one table
# and writes it as CSV.  tests/bench/README says what each row measures.
#
# Usage: tests/bench/run.sh            (or `make bench`)
#        QUICK=1 tests/bench/run.sh    (smoke check, about a minute)
#
# Environment:
#   CAGE_BUILD  build tree (host/cagehost, plugins/.libs, tests/plugins/v*/.libs,
#               tests/bench/loadgen); default: two levels above this script
#   BENCH_BIN   where loadgen and fsyncrate are (default CAGE_BUILD/tests/bench)
#   OUT         the CSV (default CAGE_BUILD/tests/bench/results.csv)
#   RUNS        runs per measurement, reported as median (min-max); default 3
#   DURATION    seconds per rate measurement (5)
#   E2E_SECONDS row 2's sustained run (30), E2E_RUNS runs of it (2: 3 runs of
#               30 s on both sides would take the default run past 8 minutes)
#   BIG         calls for rows 5 and 6 (1000000), BIG_RUNS runs of them (1)
#   CONNS       client connections (64), PAYLOAD bytes per call (100)
#   TMPDIR      where data lives: its disk is the one measured; KEEP=1 keeps it
#   ROWS        which rows to run, e.g. "1 3" (default all)
#
# Every process this script starts is stopped by pid on exit.

set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../shm.sh"
CAGE_BUILD=${CAGE_BUILD:-$(cd "$here/../.." && pwd)}
BENCH_BIN=${BENCH_BIN:-$CAGE_BUILD/tests/bench}
OUT=${OUT:-$CAGE_BUILD/tests/bench/results.csv}
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
	QUICK=1
	: "${RUNS:=1}" "${DURATION:=2}" "${E2E_SECONDS:=5}" "${E2E_RUNS:=1}" "${BIG:=100000}"
else
	QUICK=0
	: "${RUNS:=3}" "${DURATION:=5}" "${E2E_SECONDS:=30}" "${E2E_RUNS:=2}" "${BIG:=1000000}"
fi
: "${BIG_RUNS:=1}" "${CONNS:=64}" "${PAYLOAD:=100}" "${ROWS:=1 2 3 4 5 6 7}"
DRAIN_CALLS=${DRAIN_CALLS:-10000}	# row 4
PENDING_CALLS=${PENDING_CALLS:-1000}	# row 6
WAIT_LIMIT=${WAIT_LIMIT:-900}		# seconds any single wait may take

CAGEHOST=$CAGE_BUILD/host/cagehost
ECHO_SO=$CAGE_BUILD/plugins/.libs/echo.so
FLAKY_V1=$CAGE_BUILD/tests/plugins/v1/.libs/flaky.so
FLAKY_V2=$CAGE_BUILD/tests/plugins/v2/.libs/flaky.so
RELAYER_SO=$CAGE_BUILD/tests/plugins/.libs/relayer.so
LOADGEN=$BENCH_BIN/loadgen
FSYNCRATE=$BENCH_BIN/fsyncrate
BEANSTALKD=${BEANSTALKD:-$(command -v beanstalkd || true)}

W=$(mktemp -d "${TMPDIR:-/tmp}/cage-bench.XXXXXX")
chmod 755 "$W"
R=$W/results			# one file per measured key, one value per line
mkdir "$R"
HOST_PID=
HOST_DIR=
PORT=
URL=
BS_PID=
BS_DIR=
BS_PORT=
BS6_AHEAD=			# row 6's beanstalkd part already ran (in row 5)
RAM_W=				# row 1e's work directory, in memory (ram_dir)
mkdir "$W/pids"			# one empty file per process started and running

say() { echo "# $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

# started PID / stopped PID: what cleanup must end if the run is cut short
started() { : > "$W/pids/$1"; }
stopped() { rm -f "$W/pids/$1"; }

cleanup() {
	local f

	for f in "$W"/pids/*; do
		[ -e "$f" ] && kill -9 "${f##*/}" 2>/dev/null
	done
	wait 2>/dev/null
	release_shm "$W"	# a host killed here leaves its shared memory
	[ -n "$RAM_W" ] && release_shm "$RAM_W"
	if [ -n "${KEEP:-}" ]; then
		say "work directory kept: $W${RAM_W:+ (and $RAM_W)}"
	else
		rm -rf "$W" ${RAM_W:+"$RAM_W"}
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }

# kv LINE KEY: the value of KEY=... in a loadgen output line
kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# cpu_times: "IDLE TOTAL" jiffies of the whole machine (idle counts iowait)
cpu_times() { awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
# idle_since "IDLE TOTAL": the machine's idle share since then, in percent
idle_since() {
	# shellcheck disable=SC2086 # two numbers each
	set -- $1 $(cpu_times)
	awk -v i0="$1" -v t0="$2" -v i1="$3" -v t1="$4" \
		'BEGIN { printf "%d", (t1 > t0 ? 100 * (i1 - i0) / (t1 - t0) : 0) }'
}

# record KEY VALUE: one more measurement of KEY
record() { echo "$2" >> "$R/$1"; }

# thread_ticks PID: one "NAME TICKS" line per thread of PID, with the CPU it
# has used (user + system, in clock ticks); the host names its threads
# (cage-writer, cage-flusher, ...; the event loop is the main thread)
thread_ticks() {
	local t

	for t in /proc/"$1"/task/*; do
		printf '%s %s\n' "$(cat "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
	done 2>/dev/null
}
# cpu_per_request BEFORE AFTER COUNT: each thread's CPU between two
# thread_ticks, in µs per request ("cagehost" is the event loop), then
# "host" and their sum
cpu_per_request() {
	awk -v n="$3" -v hz="$(getconf CLK_TCK)" '
		FNR == NR { t0[$1] += $2; next }
		{ t1[$1] += $2 }
		END { for (k in t1) { us = n > 0 ? (t1[k] - t0[k]) * 1e6 / hz / n : 0
				      sum += us; if (us >= 0.05) s = s sprintf("%s %.1f, ", k, us) }
		      printf "%shost %.1f\n", s, sum }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND every 20 ms, up to WAIT_LIMIT
# seconds, then gives up (wait_for_quiet) or stops the benchmark (wait_for)
wait_for_quiet() {
	local what=$1 deadline=$(( $(date +%s) + WAIT_LIMIT ))

	shift
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			say "gave up waiting for $what"
			return 1
		fi
		sleep 0.02
	done
}
wait_for() { wait_for_quiet "$@" || die "gave up waiting for $1"; }

# listen_port PID: the TCP port PID listens on (from /proc, no log needed)
listen_port() {
	local inodes hex

	inodes=$(for f in /proc/"$1"/fd/*; do readlink "$f"; done 2>/dev/null |
		 sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
	hex=$(awk -v inodes=" $inodes" 'NR > 1 && $4 == "0A" && index(inodes, " " $10 " ") {
		split($2, a, ":"); print a[2]; exit }' /proc/net/tcp)
	[ -n "$hex" ] && echo $((16#$hex))
}

rss_kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" /proc/"$1"/status; }
disk_bytes() { du -sb "$1" | cut -f1; }

# ram_dir: makes RAM_W, a work directory under /dev/shm, if it is a tmpfs
# (where an fdatasync costs nothing); false when there is none
ram_dir() {
	[ -n "$RAM_W" ] && return 0
	[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || return 1
	RAM_W=$(mktemp -d /dev/shm/cage-bench.XXXXXX 2>/dev/null) || { RAM_W=; return 1; }
	chmod 755 "$RAM_W"
}

# host_new [CONF LINES...]: a fresh data_dir and plugin_dir with echo.so,
# under HOST_BASE (default W)
host_new() {
	HOST_DIR=$(mktemp -d "${HOST_BASE:-$W}/host.XXXXXX")
	chmod 755 "$HOST_DIR"
	mkdir -m 755 "$HOST_DIR/plugins"
	install -m 755 "$ECHO_SO" "$HOST_DIR/plugins/echo.so"
	{
		echo "[host]"
		echo "listen = 127.0.0.1:0"
		echo "data_dir = data"
		echo "plugin_dir = plugins"
		echo "workers = 2"
		echo "log_level = warning"
		for line in "$@"; do echo "$line"; done
	} > "$HOST_DIR/cagehost.conf"
}

healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ]; }
host_port_known() { PORT=$(listen_port "$HOST_PID") && [ -n "$PORT" ]; }

# host_start: runs cagehost on HOST_DIR; returns once /healthz answers 200.
# The first start finds the kernel-chosen port; restarts reuse it.
host_start() {
	"$CAGEHOST" -c "$HOST_DIR/cagehost.conf" >> "$HOST_DIR/host.log" 2>&1 &
	HOST_PID=$!
	started "$HOST_PID"
	if [ -z "$PORT" ]; then
		wait_for "cagehost to listen" host_port_known
		URL=http://127.0.0.1:$PORT
		sed -i "s/^listen = .*/listen = 127.0.0.1:$PORT/" "$HOST_DIR/cagehost.conf"
	fi
	wait_for "cagehost /healthz" healthy
}

host_stop() {
	[ -n "$HOST_PID" ] || return 0
	kill -TERM "$HOST_PID" 2>/dev/null
	wait "$HOST_PID" 2>/dev/null
	stopped "$HOST_PID"
	HOST_PID=
	if [ -z "${KEEP:-}" ]; then rm -rf "$HOST_DIR"; fi
	PORT=
}

host_kill9() {
	kill -9 "$HOST_PID"
	wait "$HOST_PID" 2>/dev/null
	stopped "$HOST_PID"
	HOST_PID=
}

# metric NAME: a counter from /metrics (NAME may carry {labels})
metric() {
	curl -s "$URL/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'
}
metric_at_least() { [ "$(metric "$1")" -ge "$2" ] 2>/dev/null; }
OK_METRIC='cagehost_attempts_total{outcome="ok"}'
RETRY_METRIC='cagehost_attempts_total{outcome="retry"}'

# plugin SO NAME: installs a module the way operators are told to
plugin() {
	install -m 755 "$1" "$HOST_DIR/plugins/.$2.so.tmp"
	mv "$HOST_DIR/plugins/.$2.so.tmp" "$HOST_DIR/plugins/$2.so"
}

# load PATH [LOADGEN OPTIONS...]: loadgen against cagehost, POST PATH
load() {
	local path=$1

	shift
	"$LOADGEN" http --url "$URL$path" --conns "$CONNS" --payload "$PAYLOAD" "$@"
}

bs_port_known() { BS_PORT=$(listen_port "$BS_PID") && [ -n "$BS_PORT" ]; }

# bs_answers: beanstalkd has replayed its binlog and answers `stats`
bs_answers() {
	local line

	exec 3<>"/dev/tcp/127.0.0.1/$BS_PORT" || return 1
	printf 'stats\r\n' >&3
	IFS= read -r -t 60 line <&3
	exec 3<&- 3>&-
	case "$line" in OK*) return 0 ;; *) return 1 ;; esac
}

# bs_start SYNC_FLAGS...: beanstalkd on BS_DIR (a fresh one if unset)
bs_start() {
	[ -n "$BS_DIR" ] || BS_DIR=$(mktemp -d "$W/beanstalkd.XXXXXX")
	"$BEANSTALKD" -l 127.0.0.1 -p "${BS_PORT:-0}" -b "$BS_DIR" "$@" \
		>> "$BS_DIR.log" 2>&1 &
	BS_PID=$!
	started "$BS_PID"
	[ -n "$BS_PORT" ] || wait_for "beanstalkd to listen" bs_port_known
	wait_for "beanstalkd to answer" bs_answers
}

bs_stop() {
	[ -n "$BS_PID" ] || return 0
	kill -TERM "$BS_PID" 2>/dev/null
	wait "$BS_PID" 2>/dev/null
	stopped "$BS_PID"
	BS_PID=
	if [ -z "${KEEP:-}" ]; then rm -rf "$BS_DIR"; fi
	BS_DIR=
	BS_PORT=
}

bs_kill9() {
	kill -9 "$BS_PID"
	wait "$BS_PID" 2>/dev/null
	stopped "$BS_PID"
	BS_PID=
}

bs_load() {
	local mode=$1

	shift
	"$LOADGEN" "$mode" --addr "127.0.0.1:$BS_PORT" --payload "$PAYLOAD" "$@"
}

have_bs() { [ -n "$BEANSTALKD" ]; }

# Row 1 (and the rates of row 3): on one fresh host per run, /healthz
# first (idle host), then sync calls, then enqueues, which leave a backlog
# behind, so they go last: first with delay=1h (1a: stored, not run - what
# beanstalkd's put does with nobody reserving), then without (1c: each call
# also runs, which beanstalkd's put does not do).  beanstalkd: put with a
# 1 h delay, then put ready jobs, each on a fresh binlog with -f 0.  Then
# 1e: 1a's enqueues on a host whose data_dir is in memory (/dev/shm), so
# that its fdatasyncs cost nothing: what the host's CPU allows.
rows_1_3() {
	local i out cpu ticks per

	for i in $(seq 1 "$RUNS"); do
		host_new
		host_start
		cpu=$(cpu_times)
		ticks=$(thread_ticks "$HOST_PID")
		out=$("$LOADGEN" http --url "$URL/healthz" --method GET --payload 0 \
		      --conns "$CONNS" --duration "$DURATION")
		per=$(cpu_per_request "$ticks" "$(thread_ticks "$HOST_PID")" "$(kv "$out" ok)")
		record healthz "$(kv "$out" rate)"
		record healthz_cpu "${per##*host }"
		say "run $i: GET /healthz: $out; machine idle $(idle_since "$cpu") %;" \
		    "CPU µs per request: $per, load generator $(kv "$out" cpu_us)"
		if want_row 3; then
			out=$(load /v1/call/echo/noop --duration "$DURATION")
			record sync_rate "$(kv "$out" rate)"
			record sync_p50 "$(kv "$out" p50_us)"
			record sync_p99 "$(kv "$out" p99_us)"
			record sync_errors "$(kv "$out" errors)"
			say "run $i: sync call echo.noop: $out"
		fi
		if want_row 1; then
			cpu=$(cpu_times)
			ticks=$(thread_ticks "$HOST_PID")
			out=$(load "/v1/enqueue/default/echo/noop?delay=1h" --duration "$DURATION")
			per=$(cpu_per_request "$ticks" "$(thread_ticks "$HOST_PID")" \
			      "$(kv "$out" ok)")
			record enqueue "$(kv "$out" rate)"
			record enqueue_errors "$(kv "$out" errors)"
			record enqueue_cpu "${per##*host }"
			say "run $i: enqueue echo.noop, delay=1h: $out; machine idle" \
			    "$(idle_since "$cpu") %; CPU µs per request: $per, load generator" \
			    "$(kv "$out" cpu_us)"
			out=$(load /v1/enqueue/default/echo/noop --duration "$DURATION")
			record enqueue_run "$(kv "$out" rate)"
			record enqueue_run_errors "$(kv "$out" errors)"
			say "run $i: enqueue echo.noop, run at once: $out"
		fi
		host_stop
		if want_row 1 && ram_dir; then
			HOST_BASE=$RAM_W host_new
			host_start
			out=$(load "/v1/enqueue/default/echo/noop?delay=1h" --duration "$DURATION")
			record enqueue_ram "$(kv "$out" rate)"
			say "run $i: enqueue echo.noop, delay=1h, data_dir in memory: $out"
			host_stop
		fi
		if want_row 1 && have_bs; then
			bs_start -f 0
			out=$(bs_load beanstalk-put --conns "$CONNS" --duration "$DURATION" --delay 3600)
			record bs_put "$(kv "$out" rate)"
			say "run $i: beanstalkd put, delay 3600, -f 0: $out"
			bs_stop
			bs_start -f 0
			out=$(bs_load beanstalk-put --conns "$CONNS" --duration "$DURATION")
			record bs_put_ready "$(kv "$out" rate)"
			say "run $i: beanstalkd put, ready, -f 0: $out"
			bs_stop
		fi
	done
}

# Row 2: 30 s of enqueues to echo.noop; the rate is calls *completed* (the
# ok attempts counter) per second of wall clock between two reads of it.
# beanstalkd: CONNS producers put, CONNS consumers reserve + delete.
row_2() {
	local i out ok0 ok1 t0 t1 enq

	for i in $(seq 1 "$E2E_RUNS"); do
		host_new
		host_start
		t0=$(now)
		ok0=$(metric "$OK_METRIC")
		out=$(load /v1/enqueue/default/echo/noop --duration "$E2E_SECONDS")
		ok1=$(metric "$OK_METRIC")
		t1=$(now)
		enq=$(metric cagehost_enqueued_total)
		record e2e "$(calc "($ok1 - $ok0) / $(elapsed "$t0" "$t1")")"
		record e2e_backlog "$((enq - ok1))"
		record e2e_accepted "$(kv "$out" rate)"
		say "run $i: enqueue for ${E2E_SECONDS}s: $out; completed $((ok1 - ok0)), backlog $((enq - ok1))"
		host_stop
		if have_bs; then
			bs_start -f 0
			out=$(bs_load beanstalk-e2e --producers "$CONNS" --consumers "$CONNS" \
			      --duration "$E2E_SECONDS")
			record bs_e2e "$(kv "$out" rate)"
			record bs_e2e_backlog "$(( $(kv "$out" ok) - $(kv "$out" deleted) ))"
			say "run $i: beanstalkd put/reserve/delete -f 0: $out"
			bs_stop
		fi
	done
}

# Row 4: DRAIN_CALLS calls to flaky v1 (always RETRY) in a queue that
# retries after 1 h; once each has failed once, flaky v2 is moved in, and
# the clock runs until all of them have succeeded.
row_4() {
	local i out t0 t1 ok0 retry0

	for i in $(seq 1 "$RUNS"); do
		host_new "[queue bench]" "retry_interval = 1h"
		plugin "$FLAKY_V1" flaky
		host_start
		ok0=$(metric "$OK_METRIC")
		retry0=$(metric "$RETRY_METRIC")
		out=$(load /v1/enqueue/bench/flaky/work --count "$DRAIN_CALLS")
		wait_for "first attempts of $DRAIN_CALLS calls" \
			metric_at_least "$RETRY_METRIC" $((retry0 + DRAIN_CALLS))
		install -m 755 "$FLAKY_V2" "$HOST_DIR/plugins/.flaky.so.tmp"
		t0=$(now)
		mv "$HOST_DIR/plugins/.flaky.so.tmp" "$HOST_DIR/plugins/flaky.so"
		wait_for "$DRAIN_CALLS calls to succeed" \
			metric_at_least "$OK_METRIC" $((ok0 + DRAIN_CALLS))
		t1=$(now)
		record drain_s "$(elapsed "$t0" "$t1")"
		say "run $i: $DRAIN_CALLS calls fixed in $(elapsed "$t0" "$t1") s (fill: $out)"
		host_stop
	done
}

# restart_host: kill -9, start again on the same data; sets RESTART_S
restart_host() {
	local t0

	host_kill9
	t0=$(now)
	host_start
	RESTART_S=$(elapsed "$t0" "$(now)")
}

restart_bs() {
	local t0

	bs_kill9
	t0=$(now)
	bs_start -f 0
	RESTART_S=$(elapsed "$t0" "$(now)")
}

# data_breakdown DIR: the largest files of a data directory, for the log
data_breakdown() {
	du -b "$1"/* | sort -rn | head -"${2:-8}" | sed "s|$1/||" | tr '\n\t' ', '
}

# Row 5: BIG calls pending (flaky v1, next retry in 1 h): host RSS and
# bytes on disk per call once every call has had its first attempt; then
# kill -9 and the time until /healthz answers 200 again: first at once
# (the write-ahead log since the last checkpoint is replayed: the worst
# case), then RUNS more times on the recovered, quiet data.
# beanstalkd holds BIG jobs delayed by 1 h; it is filled with -F (no
# fsync: at the disk's fsync rate a fill would take minutes) while the
# host fills, and restarted with -f 0, which reads the same binlog.
row_5() {
	local i out t0 retry0 fill_pid bs6_pid

	for i in $(seq 1 "$BIG_RUNS"); do
		host_new "[queue bench]" "retry_interval = 1h"
		plugin "$FLAKY_V1" flaky
		host_start
		# Only sizes are measured while the host fills, so beanstalkd's
		# fills (this row's, and row 6's in a subshell) run meanwhile.
		fill_pid=
		bs6_pid=
		if have_bs; then
			bs_start -F
			bs_load beanstalk-put --conns "$CONNS" --count "$BIG" --delay 3600 \
				> "$W/bs_fill.out" &
			fill_pid=$!
			started "$fill_pid"
			if want_row 6; then
				# shellcheck disable=SC2030,SC2031 # its own beanstalkd
				(BS_PID=''; BS_DIR=''; BS_PORT=''; row_6_bs "$i") &
				bs6_pid=$!
				started "$bs6_pid"
				BS6_AHEAD=1
			fi
		fi
		retry0=$(metric "$RETRY_METRIC")
		t0=$(now)
		out=$(load /v1/enqueue/bench/flaky/work --count "$BIG")
		say "run $i: enqueued $BIG: $out"
		wait_for "first attempts of $BIG calls" \
			metric_at_least "$RETRY_METRIC" $((retry0 + BIG))
		say "run $i: $BIG calls pending after $(elapsed "$t0" "$(now)") s"
		if [ -n "$fill_pid" ]; then
			wait "$fill_pid" || die "beanstalkd fill failed: $(cat "$W/bs_fill.out")"
			stopped "$fill_pid"
			say "run $i: beanstalkd filled (-F) with $BIG delayed jobs: $(cat "$W/bs_fill.out")"
		fi
		if [ -n "$bs6_pid" ]; then
			wait "$bs6_pid" || die "row 6 on beanstalkd failed"
			stopped "$bs6_pid"
		fi
		record pending_rss_mib "$(calc "$(rss_kib "$HOST_PID" VmRSS) / 1024")"
		say "run $i: host $(grep -E '^(VmRSS|RssAnon|RssFile|RssShmem)' \
			/proc/"$HOST_PID"/status | tr -s ' \t\n' ' ')"
		record pending_bytes_per_call "$(calc "$(disk_bytes "$HOST_DIR/data") / $BIG")"
		say "run $i: data_dir $(disk_bytes "$HOST_DIR/data") B: $(data_breakdown "$HOST_DIR/data")"
		restart_host
		record restart_first_s "$RESTART_S"
		for _ in $(seq 1 "$RUNS"); do
			restart_host
			record restart_s "$RESTART_S"
		done
		say "run $i: restarts: $(cat "$R/restart_first_s") then $(tr '\n' ' ' < "$R/restart_s")"
		host_stop
		have_bs || continue
		record bs_pending_rss_mib "$(calc "$(rss_kib "$BS_PID" VmRSS) / 1024")"
		record bs_pending_bytes_per_call "$(calc "$(disk_bytes "$BS_DIR") / $BIG")"
		restart_bs
		record bs_restart_first_s "$RESTART_S"
		for _ in $(seq 1 "$RUNS"); do
			restart_bs
			record bs_restart_s "$RESTART_S"
		done
		say "run $i: beanstalkd restarts: $(cat "$R/bs_restart_first_s") then" \
		    "$(tr '\n' ' ' < "$R/bs_restart_s")"
		bs_stop
	done
}

# log_files DIR: how many Berkeley DB log files DIR holds
log_files() { find "$1" -maxdepth 1 -name 'log.*' | wc -l; }

# checkpointed DIR COUNT: fewer log files than COUNT are left
checkpointed() { [ "$(log_files "$1")" -lt "$2" ]; }

# logs_settled DIR: waits (up to 10 checkpoint ticks) until DIR's log file
# count stays the same across a tick and a half: a checkpoint deletes the
# files it no longer needs one by one, and the next may delete more
logs_settled() {
	local before after tries=0

	after=$(log_files "$1")
	while [ "$tries" -lt 10 ]; do
		before=$after
		sleep 1.5
		after=$(log_files "$1")
		[ "$after" = "$before" ] && return 0
		tries=$((tries + 1))
	done
	say "the log files of $1 did not settle ($after)"
}

# Row 6: BIG calls to echo.noop processed while PENDING_CALLS wait (flaky
# v1, retry in 1 h); data_dir size once they are done and again after the
# next checkpoint (by default within 10 s), which removes old log files,
# once their count has settled.
row_6() {
	local i out t0 ok0 logs

	for i in $(seq 1 "$BIG_RUNS"); do
		host_new "[queue bench]" "retry_interval = 1h"
		plugin "$FLAKY_V1" flaky
		host_start
		load /v1/enqueue/bench/flaky/work --count "$PENDING_CALLS" > /dev/null
		ok0=$(metric "$OK_METRIC")
		t0=$(now)
		out=$(load /v1/enqueue/default/echo/noop --count "$BIG")
		say "run $i: enqueued $BIG: $out"
		wait_for "$BIG calls to complete" metric_at_least "$OK_METRIC" $((ok0 + BIG))
		logs=$(log_files "$HOST_DIR/data")
		say "run $i: $BIG calls done after $(elapsed "$t0" "$(now)") s;" \
		    "data_dir $(disk_bytes "$HOST_DIR/data") B, $logs log files"
		WAIT_LIMIT=12 wait_for_quiet "a checkpoint" checkpointed "$HOST_DIR/data" "$logs"
		logs_settled "$HOST_DIR/data"
		record disk_mib "$(calc "$(disk_bytes "$HOST_DIR/data") / 1048576")"
		say "run $i: after a checkpoint: $(log_files "$HOST_DIR/data") log files;" \
		    "$(data_breakdown "$HOST_DIR/data")"
		host_stop
		if have_bs && [ -z "$BS6_AHEAD" ]; then
			row_6_bs "$i"
		fi
	done
}

# row_6_bs RUN: beanstalkd (-F, as in row 5): PENDING_CALLS delayed jobs,
# then BIG jobs put, reserved and deleted; the binlog directory's size.
row_6_bs() {
	local out

	bs_start -F
	bs_load beanstalk-put --conns "$CONNS" --count "$PENDING_CALLS" --delay 3600 > /dev/null
	out=$(bs_load beanstalk-e2e --producers "$CONNS" --consumers "$CONNS" --count "$BIG")
	say "run $1: beanstalkd (-F) put/reserve/delete $BIG for row 6: $out"
	record bs_disk_mib "$(calc "$(disk_bytes "$BS_DIR") / 1048576")"
	bs_stop
}

fsync_reference() {
	local out

	out=$("$FSYNCRATE" "$W" $((QUICK ? 1 : 2)))
	record fsync "$(kv "$out" rate)"
	say "disk: $out"
}

# Row 7 (no target, no beanstalkd counterpart): cage to cage.  A second
# cagehost is the peer; DRAIN_CALLS calls to relayer.pass on the sender each
# enqueue one call on the peer; the rate is calls stored on the peer per
# second, from the first enqueue on the sender to the last one stored there.
row_7() {
	local i out t0 t1 e0 peer_dir peer_pid peer_port peer_url

	for i in $(seq 1 "$RUNS"); do
		host_new
		host_start
		peer_dir=$HOST_DIR peer_pid=$HOST_PID peer_port=$PORT peer_url=$URL
		PORT=
		host_new "[cage peer]" "url = http://127.0.0.1:$peer_port"
		plugin "$RELAYER_SO" relayer
		host_start
		e0=$(URL=$peer_url metric cagehost_enqueued_total)
		t0=$(now)
		out=$(load /v1/enqueue/default/relayer/pass --count "$DRAIN_CALLS")
		URL=$peer_url wait_for "$DRAIN_CALLS calls to reach the peer" \
			metric_at_least cagehost_enqueued_total $((e0 + DRAIN_CALLS))
		t1=$(now)
		record relay_rate "$(awk -v n="$DRAIN_CALLS" -v s="$(elapsed "$t0" "$t1")" \
			'BEGIN { printf "%.0f", n / s }')"
		say "run $i: $DRAIN_CALLS calls delivered to the peer in $(elapsed "$t0" "$t1") s" \
			"(sender: $out)"
		host_stop
		HOST_DIR=$peer_dir HOST_PID=$peer_pid PORT=$peer_port
		host_stop
	done
}

want_row() { case " $ROWS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# stats KEY: "median min max n" of KEY's measurements, or nothing
stats() {
	[ -s "$R/$1" ] || return 0
	sort -g "$R/$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m, v[1], v[NR], NR }'
}

# num VALUE DECIMALS
num() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }

# cell KEY DECIMALS: "median (min-max)" for the table
cell() {
	local s=

	[ "$1" != - ] && s=$(stats "$1")
	[ -n "$s" ] || { echo "-"; return; }
	# shellcheck disable=SC2086 # four numbers
	set -- $s "$2"
	if [ "$4" -gt 1 ]; then
		echo "$(num "$1" "$5") ($(num "$2" "$5")-$(num "$3" "$5"))"
	else
		num "$1" "$5"
	fi
}

# csv_stats KEY: "median,min,max" for the CSV
csv_stats() {
	local s=

	[ "$1" != - ] && s=$(stats "$1")
	[ -n "$s" ] || { echo ",,"; return; }
	# shellcheck disable=SC2086 # four numbers
	set -- $s
	echo "$1,$2,$3"
}

median() { [ "$1" = - ] || stats "$1" | cut -d' ' -f1; }

# line ID SCENARIO UNIT DEC CAGE_KEY BS_KEY REF_KEY RATIO_OF CHECK TARGET_TEXT
#   RATIO_OF: bs or ref (cagehost median / that median), or -
#   CHECK: "ratio>=X", "value<X" or - (information only)
line() {
	local id=$1 scen=$2 unit=$3 dec=$4 ck=$5 bk=$6 rk=$7 rof=$8 check=$9 ttext=${10}
	local c b r ratio="" exact="" result="" other v

	c=$(median "$ck")
	b=$(median "$bk")
	r=$(median "$rk")
	case $rof in
	bs) other=$b ;;
	ref) other=$r ;;
	*) other= ;;
	esac
	if [ -n "$c" ] && [ -n "$other" ]; then
		# cut to two decimals, not rounded: 0.597 of a 0.60 target shows as
		# 0.59, as it fails
		read -r ratio exact < <(awk -v a="$c" -v b="$other" 'BEGIN { if (b > 0)
			printf "%.2f %.6f\n", int(a / b * 100 + 1e-9) / 100, a / b }')
	fi
	case $check in
	ratio*) v=$exact ;;
	value*) v=$c ;;
	*) v= ;;
	esac
	if [ -n "$v" ]; then
		result=$(awk -v v="$v" -v check="$check" 'BEGIN {
			sub(/^[a-z]+/, "", check)
			if (check ~ /^>=/) ok = v + 0 >= substr(check, 3) + 0
			else ok = v + 0 < substr(check, 2) + 0
			print ok ? "pass" : "FAIL" }')
	elif [ "$check" != - ]; then
		result="n/a"
	fi
	TABLE+=("$id|$scen [$unit]|$(cell "$ck" "$dec")|$(cell "$bk" "$dec")|$(cell "$rk" "$dec")|${ratio:--}|$ttext|${result:--}")
	CSV+=("$id,\"${scen#"${scen%%[! ]*}"}\",$unit,$(csv_stats "$ck"),$(csv_stats "$bk"),$(csv_stats "$rk"),$ratio,\"$ttext\",$result")
}

# align: '|'-separated lines as columns two spaces apart
align() {
	awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i
			if (length($i) > w[i]) w[i] = length($i) }
		     if (NF > nf) nf = NF }
		END { for (r = 1; r <= NR; r++) { out = ""
			for (i = 1; i <= nf; i++)
				out = out (i < nf ? sprintf("%-" w[i] "s  ", cell[r, i]) : cell[r, i])
			print out } }'
}

# runs_note N: how many runs a row's cells are made of, if not RUNS
runs_note() {
	if [ "$1" = "$RUNS" ]; then return; fi
	if [ "$1" = 1 ]; then echo " (1 run)"; else echo " ($1 runs)"; fi
}

print_table() {
	local big_note e2e_note

	big_note=$(runs_note "$BIG_RUNS")
	e2e_note=$(runs_note "$E2E_RUNS")
	TABLE=("row|scenario [unit]|cagehost|beanstalkd|reference|ratio|target|result")
	CSV=("row,scenario,unit,cagehost_median,cagehost_min,cagehost_max,beanstalkd_median,beanstalkd_min,beanstalkd_max,reference_median,reference_min,reference_max,ratio,target,result")
	line 1a "durable enqueue/s, delayed 1 h, $CONNS conns, $PAYLOAD B; ref: disk fdatasync/s" \
		"/s" 0 enqueue bs_put fsync bs "ratio>=5" ">= 5x beanstalkd"
	line 1b "durable enqueue/s vs own GET /healthz/s" "/s" 0 \
		enqueue - healthz ref "ratio>=0.60" ">= 0.60 of /healthz"
	line 1c "  enqueue/s, each call also run (beanstalkd: put, ready)" "/s" 0 \
		enqueue_run bs_put_ready - bs - "(no target)"
	line 1d "  host CPU per delayed enqueue; ref: per GET /healthz" us 1 \
		enqueue_cpu - healthz_cpu ref - "(no target)"
	line 1e "  1a with data_dir in memory (fsync free); ref: GET /healthz/s" "/s" 0 \
		enqueue_ram - healthz ref - "(no target)"
	line 2a "calls completed/s, enqueue -> noop -> done, ${E2E_SECONDS}s$e2e_note" "/s" 0 \
		e2e bs_e2e - bs "ratio>=3" ">= 3x beanstalkd"
	line 2b "  backlog at end (accepted, not done)" calls 0 \
		e2e_backlog bs_e2e_backlog - - - "(honesty check)"
	line 3a "sync call/s, echo.noop; ref: GET /healthz/s" "/s" 0 \
		sync_rate - healthz ref "ratio>=0.50" ">= 0.50 of /healthz"
	line 3b "  sync call p99 latency" us 0 \
		sync_p99 - - - "value<5000" "< 5000 us"
	line 3c "  sync call p50 latency" us 0 sync_p50 - - - - ""
	line 4 "fix-to-drain: $DRAIN_CALLS waiting calls, fixed .so moved in" s 2 \
		drain_s - - - "value<2" "< 2 s"
	line 5a "RSS with $BIG pending$big_note" MiB 1 \
		pending_rss_mib bs_pending_rss_mib - bs "value<100" "< 100 MiB"
	line 5b "  disk per pending call" B 0 \
		pending_bytes_per_call bs_pending_bytes_per_call - bs - ""
	line 5c "  kill -9 right after the fill + restart until serving" s 2 \
		restart_first_s bs_restart_first_s - bs "value<2" "< 2 s"
	line 5d "  kill -9 + restart, data recovered and quiet" s 2 \
		restart_s bs_restart_s - bs "value<2" "< 2 s"
	line 6 "disk after $BIG processed + $PENDING_CALLS pending$big_note" MiB 1 \
		disk_mib bs_disk_mib - bs "value<200" "< 200 MiB"
	line 7 "cage to cage: $DRAIN_CALLS calls enqueued by handlers, stored on a 2nd host" "/s" 0 \
		relay_rate - - - - ""
	printf '%s\n' "${TABLE[@]}" | align
	printf '%s\n' "${CSV[@]}" > "$OUT"
}

[ -x "$CAGEHOST" ] || die "no $CAGEHOST: build first (make)"
for prog in "$LOADGEN" "$FSYNCRATE"; do
	[ -x "$prog" ] || die "no $prog: make bench, or see tests/bench/README"
done
for so in "$ECHO_SO" "$FLAKY_V1" "$FLAKY_V2"; do
	[ -f "$so" ] || die "no $so: make check TESTS= builds the test plugins"
done
command -v curl > /dev/null || die "curl is needed"
have_bs || say "beanstalkd not found (apt-get install beanstalkd): its columns stay empty"

say "cagehost benchmark: $(nproc) cores, $(uname -r), data on $(stat -f -c %T "$W") ($W)"
say "cagehost $(git -C "${CAGE_SRC:-$here}" describe --always --dirty 2>/dev/null || echo '?')," \
    "beanstalkd $("${BEANSTALKD:-false}" -v 2>/dev/null | awk '{print $2}')"
say "RUNS=$RUNS DURATION=${DURATION}s E2E_SECONDS=${E2E_SECONDS}s E2E_RUNS=$E2E_RUNS" \
    "BIG=$BIG BIG_RUNS=$BIG_RUNS" \
    "CONNS=$CONNS PAYLOAD=$PAYLOAD QUICK=$QUICK"
load1=$(cut -d' ' -f1 /proc/loadavg)
say "load average (1 min) at the start: $load1"
awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }' &&
	say "WARNING: the machine is busy; on 2 cores that skews every rate"
case $(stat -f -c %T "$W") in
tmpfs|ramfs) say "WARNING: $W is in memory: fsync costs nothing; set TMPDIR to a disk" ;;
esac
start=$(date +%s)
fsync_reference
if want_row 1 || want_row 3; then rows_1_3; fi
if want_row 2; then row_2; fi
if want_row 4; then row_4; fi
if want_row 5; then row_5; fi
if want_row 6; then row_6; fi
if want_row 7; then row_7; fi
say "done in $(( $(date +%s) - start )) s; load average (1 min) at the end:" \
    "$(cut -d' ' -f1 /proc/loadavg); CSV: $OUT"
echo
print_table

#!/bin/sh
# backup.sh - `cagectl backup` (POST /v1/backup) makes a hot backup while
# enqueues go on and old log files are being removed: none of the enqueues
# fails, every call acknowledged before the backup was asked for is in it,
# and a host started on a copy of the backup, as it is, runs those calls.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

BEFORE=60		# calls acknowledged before the backup
LOOPS=3
MORE=8			# backups in a row under load
# checkpoints (after which old log files are removed) as often as allowed,
# so that log files go while the backup copies them
write_conf "checkpoint_interval = 100ms" \
	"[queue default]" "retry_interval = 200ms" "retry_max_interval = 1s"
# each backup waits 300 ms between the database files and the log files:
# checkpoints come meanwhile, and old log files would go if the backup did
# not hold them (then the copy's pages would miss commits, and its
# recovery fail)
export CAGEHOST_TEST_BACKUP_PAUSE_MS=300
start_host
unset CAGEHOST_TEST_BACKUP_PAUSE_MS

out=$("$CAGEHOST" -c "$T/cagehost.conf" --check)
contains "--check shows backup_dir, beside data_dir by default" "$out" \
	"backup_dir $T/data.backups"
equal "GET /v1/backup is 405" "$(status GET /v1/backup)" 405

# calls to flaky.work wait here (the module is not installed)
i=0
: > "$T/before"
while [ "$i" -lt "$BEFORE" ]; do
	enqueue default flaky work "before $i" >> "$T/before"
	i=$((i + 1))
done
equal "$BEFORE calls acknowledged before the backup" "$(grep -c . "$T/before")" "$BEFORE"

# enqueue_loop N: 256 KB enqueues until $T/stop exists (log files fill and
# go fast); ids answered 202 go to $T/during.N, any other answer to $T/bad.N
head -c 262144 /dev/zero | tr '\0' x > "$T/payload"
enqueue_loop() {
	while [ ! -e "$T/stop" ]; do
		reply=$(curl -s -m "$CURL_LIMIT" -w ' %{http_code}' --data-binary @"$T/payload" \
			"$URL/v1/enqueue/default/flaky/work")
		case "$reply" in
		*' 202') echo "$reply" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' >> "$T/during.$1" ;;
		*) echo "$reply" | tail -c 300 >> "$T/bad.$1" ;;
		esac
	done
}
start_loops "$LOOPS" enqueue_loop "$T/during"
during() { cat "$T"/during.* | wc -l; }
during_at_least() { [ "$(during)" -ge "$1" ]; }
wait_until "enqueues under way" during_at_least 30

flushes_before=$(metric cagehost_log_flushes_total)
dir=$("$CAGECTL" backup)
ok $? "cagectl backup succeeds while enqueues go on"
echo "# backup: $dir"
at_backup=$(during)
contains "it prints the backup's directory, named by the UTC time" "$dir" "$T/data.backups/2"
check "the directory holds calls.db" test -f "$dir/calls.db"
has_log_file() { ls "$1"/log.* >/dev/null 2>&1; }
check "and at least one log file" has_log_file "$dir"
equal "no partial directory is left" "$(ls -A "$T/data.backups" | grep -c '^\.partial-')" 0
equal "no region file is left in it" "$(ls "$dir" | grep -c '^__db')" 0
check "the backup's files are readable by db5.3_verify" db5.3_verify -q -h "$dir" calls.db

# more backups while enqueues go on and log files come and go: each must
# have every log file its pages need, or its recovery fails
dir2=$("$CAGECTL" backup)
ok $? "a second backup succeeds"
check "in a directory of its own" test "$dir2" != "$dir" -a -f "$dir2/calls.db"
failed=0
i=0
while [ "$i" -lt "$MORE" ]; do
	"$CAGECTL" backup > /dev/null 2>> "$T/backup.err" || failed=$((failed + 1))
	i=$((i + 1))
done
equal "$MORE more backups in a row all succeed" "$failed" 0
[ "$failed" = 0 ] || sed 's/^/# /' "$T/backup.err"
wait_until "more enqueues after the backups" during_at_least $((at_backup + 30))
touch "$T/stop"
wait_loops
equal "no enqueue failed during the backups" "$(cat "$T"/bad.* 2>/dev/null | wc -l)" 0
echo "# $(during) enqueues answered 202 while the backups ran; log flushes: " \
	"$((${flushes_before:-0})) -> $(metric cagehost_log_flushes_total)"
equal "/metrics counts the backups" "$(metric 'cagehost_backups_total{result="ok"}')" \
	$((MORE + 2))
contains "the log says where the backup went" "$(cat "$T/host.log")" "backup: $dir is complete"

# --- a host on a copy of the first backup, as it is: every call acknowledged
# before the backup is there and runs once flaky arrives
mkdir -m 755 -p "$T/copy/plugins"
cp -a "$dir" "$T/copy/data"
printf '%s\n' "[host]" "listen = 127.0.0.1:0" "data_dir = data" "plugin_dir = plugins" \
	"workers = 2" "backup_dir = /proc/no-such-dir" "[queue default]" \
	"retry_interval = 200ms" "retry_max_interval = 1s" > "$T/copy/cagehost.conf"
serve_from "$T/copy" "the host on the restored backup"
copy_pid=$SERVED_PID
COPY=http://127.0.0.1:$SERVED_PORT
missing=0
while read -r id; do
	case "$(call_state "$id" "$COPY")" in
	pending|running) ;;
	*) missing=$((missing + 1)); echo "# not pending in the backup: $id" ;;
	esac
done < "$T/before"
equal "every call acknowledged before the backup waits in it" "$missing" 0

install -m 755 "$TPLUGINS_V2/flaky.so" "$T/copy/plugins/.flaky.so.tmp"
mv "$T/copy/plugins/.flaky.so.tmp" "$T/copy/plugins/flaky.so"
cp "$T/before" "$T/left"
wait_until "the restored calls to run" all_done "$T/left" "$COPY"
ok $? "the restored host runs every call acknowledged before the backup"

# a backup_dir that cannot be made: a clear 500, and the host serves on
st=$(curl -s -m "$CURL_LIMIT" -o "$T/body" -w '%{http_code}' -X POST "$COPY/v1/backup")
equal "a backup into a backup_dir that cannot be made is 500" "$st" 500
contains "naming backup_dir and why" "$(body)" "cannot create backup_dir /proc/no-such-dir"
equal "the restored host still serves" \
	"$(curl -s -m "$CURL_LIMIT" -o /dev/null -w '%{http_code}' "$COPY/healthz")" 200
kill -TERM "$copy_pid"
wait "$copy_pid" 2>/dev/null

# backup_keep: a complete backup is followed by the removal of this host's
# oldest beyond the newest N; another host's (its identity differs) stay
sed -i "s|^backup_dir = .*|backup_dir = backups\nbackup_keep = 2|" "$T/copy/cagehost.conf"
mkdir -p "$T/copy/backups/20200101T000000Z"
echo 0123456789abcdef > "$T/copy/backups/20200101T000000Z/identity"
serve_from "$T/copy" "the host on the restored backup, keeping 2 backups"
copy_pid=$SERVED_PID
COPY=http://127.0.0.1:$SERVED_PORT
: > "$T/made"
for n in 1 2 3 4; do
	"$CAGECTL" -u "$COPY" backup >> "$T/made" || echo "# backup $n failed"
done
equal "4 backups made" "$(grep -c . "$T/made")" 4
kept="20200101T000000Z $(tail -2 "$T/made" | sed 's|.*/||' | tr '\n' ' ')"
equal "the newest 2 are kept, and another host's backup" "$(ls "$T/copy/backups" | tr '\n' ' ')" \
	"$kept"
check "the log names each backup removed" \
	test "$(grep -c "backup: removed $T/copy/backups/.* (backup_keep = 2)" "$T/copy/host.log")" = 2
kill -TERM "$copy_pid"
wait "$copy_pid" 2>/dev/null

# SIGTERM while a backup is made: it stops, its caller gets 503, and
# nothing of it is left.  Each backup now waits 60 s before its log files,
# so the signal surely comes while it runs.
export CAGEHOST_TEST_BACKUP_PAUSE_MS=60000
serve_from "$T/copy" "the host on the restored backup, with slow backups"
unset CAGEHOST_TEST_BACKUP_PAUSE_MS
copy_pid=$SERVED_PID
COPY=http://127.0.0.1:$SERVED_PORT
curl -s -m 100 -o "$T/cut.body" -w '%{http_code}' -X POST "$COPY/v1/backup" > "$T/cut.code" &
cut_curl=$!
partial_made() { ls -A "$T/copy/backups" | grep -q '^\.partial-'; }
wait_until "a backup to be under way" partial_made
kill -TERM "$copy_pid"
wait "$cut_curl"
equal "a backup cut short by SIGTERM answers 503" "$(cat "$T/cut.code")" 503
contains "saying why" "$(cat "$T/cut.body")" "the host is stopping: the backup was not finished"
wait "$copy_pid"
equal "the host then stops cleanly" "$?" 0
equal "nothing of the backup is left, and the backups kept stay" \
	"$(ls -A "$T/copy/backups" | grep -v '^\.lock$' | tr '\n' ' ')" "$kept"
release_shm "$T/copy"
check "the first host is still alive" host_alive

done_testing

#!/bin/sh
# removed_queue.sh - calls waiting in a queue whose [queue] section was
# removed from the config keep waiting and are retried under the default
# queue's policy, and the log says so once for that queue.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf "[queue gone]" "retry_interval = 1s" "retry_max_interval = 1s"
start_host
: > "$T/ids"
for i in 1 2 3; do enqueue gone flaky work "call $i" >> "$T/ids"; done
equal "3 calls are enqueued on queue gone" "$(grep -c . "$T/ids")" 3
tried_once() {
	while read -r id; do attempts_at_least "$id" 1 || return 1; done < "$T/ids"
}
wait_until "each call to be tried once" tried_once
ok $? "each call failed once (no module flaky) and waits for its retry"
stop_host

write_conf		# [queue gone] removed
start_host
warning="calls of queue gone are retried under \[queue default\]'s policy"
wait_until "the warning" log_has "$warning"
ok $? "the log says the queue's calls follow the default policy"
tried_twice() {
	while read -r id; do attempts_at_least "$id" 2 || return 1; done < "$T/ids"
}
wait_until "each call's retry" tried_twice
ok $? "the calls are still retried"
equal "the warning is logged once for the queue" "$(log_count "$warning")" 1
id=$(head -1 "$T/ids")
equal "a retried call is still pending" "$(field "$id" state)" pending
next=$(field "$id" next_attempt)
ahead=$(( $(date -d "$next" +%s) - $(date +%s) ))
echo "# next attempt $next, ${ahead} s ahead"
check "its next retry follows the default policy (over 30 s ahead, not 1 s)" \
	test "$ahead" -ge 30
done_testing

#!/bin/sh
# relay_edges.sh - deliveries to other cages at their edges, with two
# receiving cagehosts (R1, R2) and a sender whose handler (relayer) enqueues
# on them:
#   (a) a queue's attempt_timeout holds for its own deliveries, whatever
#       other queues' deliveries share their connections;
#   (b) a delivery that times out closes its connection with a reset, not a
#       FIN, so nothing of it can reach the other cage later;
#   (c) a call keeps to the copy (url) its last attempt went to when the
#       [cage]'s url list changes while it waits: no copy stores it twice;
#   (d) a payload over the other cage's max_body_size goes dead at its
#       first attempt (413), even when the other cage closes while it is
#       still being sent.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

DUMP=$(command -v db5.3_dump || command -v db_dump)
R1_PID= R2_PID= R1_PORT=0 R2_PORT=0

# recv_start N: starts receiver N (on its old port, when it ran before)
recv_start() {
	d=$T/r$1
	mkdir -p -m 755 "$d/plugins"
	install -m 755 "$PLUGINS/echo.so" "$d/plugins/echo.so"
	eval "port=\$R$1_PORT"
	cat > "$d/cagehost.conf" <<CONF
[host]
listen = 127.0.0.1:$port
data_dir = data
plugin_dir = plugins
workers = 1
max_body_size = 64k
[queue slow]
CONF
	serve_from "$d" "receiver $1"
	eval "R$1_PID=$SERVED_PID R$1_PORT=$SERVED_PORT"
}
recv_stop_all() {
	for pid in $R1_PID $R2_PID; do
		kill -CONT "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
}
trap 'recv_stop_all; cleanup' EXIT
# recv_stored N: calls receiver N stored (202, not counting duplicates)
recv_stored() { eval "metric cagehost_enqueued_total http://127.0.0.1:\$R$1_PORT"; }
sender_retries() { metric 'cagehost_attempts_total{outcome="retry"}'; }
retries_at_least() { [ "$(sender_retries)" -ge "$1" ]; }
# tcp_in_state PORT STATES: sockets whose local or remote port is PORT, in
# one of STATES (hex codes of /proc/net/tcp: 04 FIN_WAIT1, 05 FIN_WAIT2,
# 08 CLOSE_WAIT)
tcp_in_state() {
	awk -v port="$(printf '%04X' "$1")" -v states="$2" '
		NR > 1 { split($2, l, ":"); split($3, r, ":")
			 if ((l[2] == port || r[2] == port) && index(states, $4)) n++ }
		END { print n + 0 }' /proc/net/tcp
}
# outgoing DB QUEUE: ids of the sender's calls for the other cage's QUEUE
# in DB (calls.db: waiting; dead.db: dead), as db5.3_dump shows them
outgoing() {
	"$DUMP" -p -h "$T/data" "$1" | grep "cage=peer queue=$2 " |
		sed -n 's/.* id=\([0-9a-f]*\) .*/\1/p'
}
outbox_empty() { [ -z "$(outgoing calls.db default)" ]; }

recv_start 1
recv_start 2

# ---- (a) and (b): a slow queue's delivery among a fast queue's ----------
write_conf "[queue default]" "attempt_timeout = 400ms" "retry_interval = 1h" \
	"[queue slow]" "attempt_timeout = 20s" "retry_interval = 1h" \
	"[cage peer]" "url = http://127.0.0.1:$R1_PORT"
plugin "$TPLUGINS/relayer.so" relayer
start_host
wait_until "relayer to be loaded" log_has "loaded relayer@1+" || bail "relayer was not loaded"
kill -STOP "$R1_PID"
enqueue default relayer to_slow s > /dev/null
slow_stored() { [ -n "$(outgoing calls.db slow)" ]; }
wait_until "the call for R1's slow queue to be stored" slow_stored
slow=$(outgoing calls.db slow)
check "a call for the other cage's slow queue waits at the sender" test -n "$slow"
wait_until "its delivery to start" state_is "$slow" running
ok $? "its delivery starts"
i=0
while [ "$i" -lt 64 ]; do
	i=$((i + 1))
	curl -s -o /dev/null -X POST -d "f$i" "$URL/v1/enqueue/default/relayer/pass"
done
# the 64 fast deliveries (2 behind the slow one on its connection) time out
wait_until "the 64 fast deliveries to time out" retries_at_least 64
ok $? "the fast queue's deliveries end at its attempt_timeout (400 ms)"
equal "the slow queue's delivery is still waiting for its answer" \
	"$(field "$slow" attempts)" 0
equal "timed-out deliveries left no connection half-closed (FIN_WAIT) here" \
	"$(tcp_in_state "$R1_PORT" "04 05")" 0
equal "nor waiting to be closed (CLOSE_WAIT) at the other cage" \
	"$(tcp_in_state "$R1_PORT" 08)" 0
kill -CONT "$R1_PID"
WAIT_LIMIT=25 wait_until "the slow call to be delivered" state_is "$slow" done
ok $? "the slow call is delivered once the other cage answers"
equal "at its first attempt: its 20 s attempt_timeout held" "$(field "$slow" attempts)" 1
stop_host
remove_data_dir "$T/data"

# ---- (c): the url list changes while calls wait -------------------------
# (relayer.pass enqueues its payload on peer default/echo.upper)
write_conf "[queue default]" "attempt_timeout = 1s" "retry_interval = 200ms" \
	"retry_max_interval = 200ms" "[cage peer]" "url = http://127.0.0.1:$R1_PORT"
start_host
stored1=$(recv_stored 1)
stored2=$(recv_stored 2)
kill -STOP "$R1_PID"
i=0
while [ "$i" -lt 12 ]; do
	i=$((i + 1))
	enqueue default relayer pass "c$i" > /dev/null
done
# each delivery to the frozen R1 times out at least once
wait_until "a failed delivery of each" retries_at_least 12
ok $? "deliveries to a frozen copy fail"
equal "12 calls for R1 wait at the sender" "$(outgoing calls.db default | wc -l)" 12
stop_host
# the identity names this host to R1 (in each delivery's key): without it,
# while calls wait, the sender does not start
mv "$T/data/identity" "$T/identity.saved"
timeout 30 "$CAGEHOST" -c "$T/cagehost.conf" > "$T/noid.log" 2>&1
rc=$?	# 124: it ran until the timeout
check "without data_dir/identity, calls waiting for delivery, the host refuses to start" \
	test "$rc" -ne 0 -a "$rc" -ne 124
contains "saying why" "$(cat "$T/noid.log")" "identity is missing, but calls wait here for delivery"
mv "$T/identity.saved" "$T/data/identity"
# R2 is added before R1: hashed again, about half the ids would go to R2
write_conf "[queue default]" "attempt_timeout = 1s" "retry_interval = 200ms" \
	"retry_max_interval = 200ms" \
	"[cage peer]" "url = http://127.0.0.1:$R2_PORT http://127.0.0.1:$R1_PORT"
kill -CONT "$R1_PID"
start_host
wait_until "the 12 calls to be delivered" outbox_empty
ok $? "the waiting calls are delivered after the url list changed"
equal "R1, the copy they were sent to, stored each once" \
	"$(( $(recv_stored 1) - stored1 ))" 12
equal "R2, added meanwhile, stored none of them" "$(( $(recv_stored 2) - stored2 ))" 0
stop_host
remove_data_dir "$T/data"

# ---- (d): a payload too big for the other cage ---------------------------
write_conf "[queue default]" "attempt_timeout = 10s" "retry_interval = 1h" \
	"[cage peer]" "url = http://127.0.0.1:$R1_PORT"
start_host
enqueue default relayer big 8000000 > /dev/null
big_dead() { [ -n "$(outgoing dead.db default)" ]; }
wait_until "the 8 MB delivery to be refused" big_dead
ok $? "an 8 MB call for R1 (max_body_size 64k) goes dead, not waiting for retries"
big=$(outgoing dead.db default)
equal "at its first attempt" "$(field "$big" attempts)" 1
contains "saying the other cage answered 413" "$(curl -s "$URL/v1/calls/$big")" \
	"cage peer (127.0.0.1:$R1_PORT): answered 413"
check "the sender is alive at the end" host_alive

done_testing

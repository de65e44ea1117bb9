#!/bin/sh
# cage_to_cage.sh - a handler on this host (the sender) enqueues calls on
# another cage (the peer, a second cagehost): they are stored with the
# handler's OK and delivered with retries, through a peer that is down, a
# sender killed with -9 and restarted, and a peer that stops answering, and
# the peer stores each call exactly once, and keeps the delivery keys only
# until the sender has the answers.  Calls for a cage taken out of the
# config wait, saying why.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

DUMP=$(command -v db5.3_dump || command -v db_dump)
P=$T/peer
mkdir -m 755 "$P" "$P/plugins"
install -m 755 "$PLUGINS/echo.so" "$P/plugins/echo.so"
PEER_PID=
PEER_PORT=0
PEER_BEFORE_ENQ=0	# the counters of the peer's earlier runs
PEER_BEFORE_OK=0

peer_start() {
	cat > "$P/cagehost.conf" <<CONF
[host]
listen = 127.0.0.1:$PEER_PORT
data_dir = data
plugin_dir = plugins
workers = 1
CONF
	serve_from "$P" "the peer"
	PEER_PID=$SERVED_PID
	PEER_PORT=$SERVED_PORT
}
peer_stop() {
	[ -n "$PEER_PID" ] || return 0
	PEER_BEFORE_ENQ=$(peer_enqueued)
	PEER_BEFORE_OK=$(peer_ok)
	kill -CONT "$PEER_PID" 2>/dev/null
	kill -TERM "$PEER_PID" 2>/dev/null
	wait "$PEER_PID" 2>/dev/null
	PEER_PID=
}
trap 'peer_stop; cleanup' EXIT

# peer_metric NAME: a counter of the peer's /metrics
peer_metric() { metric "$1" "http://127.0.0.1:$PEER_PORT"; }
# calls the peer stored, and attempts it ran OK, over all its runs
peer_enqueued() { echo $((PEER_BEFORE_ENQ + $(peer_metric cagehost_enqueued_total))); }
peer_ok() { echo $((PEER_BEFORE_OK + $(peer_metric 'cagehost_attempts_total{outcome="ok"}'))); }
peer_enqueued_is() { [ "$(peer_enqueued)" = "$1" ]; }
peer_ran_ok() { [ "$(peer_ok)" = "$1" ]; }
# the sender's pending calls to other cages, as db5.3_dump shows them
outbox() { "$DUMP" -p -h "$T/data" calls.db | grep 'cage=' ; }
outbox_empty() { ! outbox > /dev/null; }
sender_retries() { metric 'cagehost_attempts_total{outcome="retry"}'; }
retries_above() { [ "$(sender_retries)" -gt "$1" ]; }

peer_start
# "pair": two copies, the peer and a port where nothing listens
sender_conf() {
	write_conf "[queue default]" "retry_interval = 500ms" "retry_max_interval = 500ms" \
		"attempt_timeout = 2s" "[cage peer]" "url = http://127.0.0.1:$PEER_PORT" \
		"[cage pair]" "url = http://127.0.0.1:$PEER_PORT http://127.0.0.1:1"
}
sender_conf
plugin "$TPLUGINS/relayer.so" relayer
contains "--check lists the cages" "$("$CAGEHOST" -c "$T/cagehost.conf" --check)" \
	"cage pair: http://127.0.0.1:$PEER_PORT http://127.0.0.1:1, token none"
start_host
wait_until "relayer to be loaded" log_has "loaded relayer@1+" || bail "relayer was not loaded"

# both up
id=$(enqueue default relayer pass hello)
wait_until "the sender's call to finish" state_is "$id" done
ok $? "a handler that enqueues on the peer finishes"
wait_until "the peer to receive the call" peer_enqueued_is 1
ok $? "the peer stores the call"
wait_until "the peer to run it" peer_ran_ok 1
ok $? "the peer runs it (echo.upper)"
wait_until "the sender's outbox to empty" outbox_empty
ok $? "the delivered call leaves the sender's outbox"
"$DUMP" -p -h "$T/data" done.db > "$T/done.txt"
contains "the sender keeps it as done, with the peer's address as its version" \
	"$(cat "$T/done.txt")" "cage=peer queue=default module=echo method=upper attempts=1 version=peer@127.0.0.1:$PEER_PORT"
check "the sender made itself an identity (data_dir/identity)" \
	grep -qx '[0-9a-f]\{16\}' "$T/data/identity"

# a sync call's handler too: the 200 comes once the outgoing call is stored
equal "a sync call that enqueues on the peer answers 200" "$(status POST /v1/call/relayer/pass sync)" 200
equal "with the handler's reply" "$(body)" sent
wait_until "the peer to receive the sync call's call" peer_enqueued_is 2
ok $? "the peer stores the sync call's call"

# no OK, nothing sent
id=$(enqueue default relayer then_fail x)
wait_until "the failing call to go dead" state_is "$id" dead
check "the outbox stays empty when the handler fails" outbox_empty
equal "cage_enqueue refuses an invalid name" "$(status POST /v1/call/relayer/bad_name x)" 200
equal "and says so to the handler" "$(body)" refused

# the peer down, the sender killed with -9 and restarted: nothing lost
peer_stop
before=$(sender_retries)
id=$(enqueue default relayer two down)
wait_until "the call to finish" state_is "$id" done
wait_until "deliveries to the stopped peer to fail" retries_above "$before"
ok $? "deliveries to a stopped peer fail and are retried"
says_why() { outbox | grep -q "connection failed"; }
wait_until "the outbox to say why" says_why
ok $? "the outbox says why (connection failed)"
equal "both calls wait in the outbox" "$(outbox | wc -l)" 2
# each retry reads the floors again; unchanged ones need no fdatasync.  The
# first delivery's new floor asked for one, which a slow disk may still be
# doing when the count is read: at most that one may show up.
sender_flushes() { metric cagehost_log_flushes_total; }
flushes=$(sender_flushes)
before=$(sender_retries)
wait_until "four more failed deliveries" retries_above $((before + 3))
more=$(( $(sender_flushes) - flushes ))
check "four failed deliveries with unchanged floors flush nothing (${more} flushes; at most 1, the first floor's)" \
	test "$more" -le 1
kill9_host
# the peer on a new port (its old one may have been taken meanwhile by a
# test running beside this one), and the sender's config told so
PEER_PORT=0
peer_start
sender_conf
start_host
wait_until "both calls to reach the peer" peer_enqueued_is 4
ok $? "after kill -9 of the sender and a peer restart, both calls arrive"
wait_until "the peer to run them" peer_ran_ok 4
wait_until "the outbox to empty" outbox_empty
ok $? "the outbox empties"

# the peer stops answering (SIGSTOP): deliveries time out and are
# repeated; once it answers again it stores the call once
before=$(sender_retries)
kill -STOP "$PEER_PID"
id=$(enqueue default relayer pass stopped)
wait_until "two deliveries to time out" retries_above $((before + 1))
ok $? "deliveries to a peer that does not answer time out and are repeated"
kill -CONT "$PEER_PID"
wait_until "the outbox to empty" outbox_empty
ok $? "once the peer answers, the delivery succeeds"
wait_until "the peer to run it" peer_ran_ok 5
equal "the peer stored the call once, not once per delivery" "$(peer_enqueued)" 5
echo "# the peer recognised $(peer_metric cagehost_enqueue_duplicates_total) repeated delivery(ies)"

# a cage the config does not name: the call waits, saying why
id=$(enqueue default relayer nowhere x)
wait_until "the call to finish" state_is "$id" done
has_reason() { outbox | grep -q 'no \[cage nosuch\] in the config'; }
wait_until "the unknown cage to be reported" has_reason
ok $? "a call to an unknown cage waits in the outbox with the reason"
unknown_logged="calls enqueued on cage nosuch (such as default/echo.upper, call "
check "the log says such calls wait, and what to do" \
	log_has "the config has no \\[cage nosuch\\] section. Add it and restart the host"
id=$(enqueue default relayer nowhere y)
wait_until "the second call to finish" state_is "$id" done
two_waiting() { [ "$(outbox | grep -c 'no \[cage nosuch\] in the config')" -ge 2 ]; }
wait_until "both calls to wait for the unknown cage" two_waiting
equal "the log says it once per cage, not once per call" "$(log_count "$unknown_logged")" 1

# a cage with two copies: each call sticks to one of them, at every attempt
# (only that copy would recognise a repeated delivery)
before=$(peer_enqueued)
for i in 1 2 3 4 5 6; do
	id=$(enqueue default relayer to_pair "pair $i")
	wait_until "call $i to finish" state_is "$id" done
done
pair_ids() { outbox | grep 'cage=pair' | sed -n 's/.* id=\([0-9a-f]*\) .*/\1/p'; }
retried_twice() {
	for p in $(pair_ids); do attempts_at_least "$p" 2 || return 1; done
}
settled() { [ $(( $(peer_enqueued) - before + $(pair_ids | wc -l) )) = 6 ]; }
wait_until "the 6 calls to be delivered or waiting for the dead copy" settled
ok $? "each of the 6 calls went to one copy: delivered to the peer, or waiting"
wait_until "the waiting ones to be retried" retried_twice
sticky=0
for p in $(pair_ids); do
	urls=$(history "$p" | awk '{print $2}' | sort -u)
	[ "$urls" = "pair@127.0.0.1:1" ] || sticky=1
done
ok $sticky "every attempt of a waiting call went to the same copy (127.0.0.1:1)"
echo "# $(pair_ids | wc -l) of 6 calls chose the dead copy"

# 300 calls for a peer that does not answer: at most 256 deliveries hold
# attempt slots at once (the rest wait their turn, and local calls keep
# room); once it answers, each call is stored exactly once
in_flight() { metric cagehost_deliveries_in_flight; }
piled_up() { [ "$(in_flight)" -ge 200 ]; }
before=$(peer_enqueued)
kill -STOP "$PEER_PID"
for i in $(seq 1 300); do
	curl -s -o /dev/null -d "burst $i" "$URL/v1/enqueue/default/relayer/pass"
done
wait_until "deliveries to pile up" piled_up
most=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	n=$(in_flight)
	[ "$n" -gt "$most" ] && most=$n
	sleep 0.2
done
echo "# at most $most deliveries in flight while the peer was frozen"
check "at most 256 deliveries were in flight at once" test "$most" -le 256
kill -CONT "$PEER_PID"
no_peer_calls() { ! outbox | grep -q 'cage=peer '; }	# the dead copy's stay
all_there() { [ "$(peer_enqueued)" -ge $((before + 300)) ] && no_peer_calls; }
wait_until "all 300 calls to be delivered" all_there
ok $? "once the peer answers, all 300 are delivered"
equal "each of the 300 was stored once" "$(peer_enqueued)" $((before + 300))

# the peer keeps a delivery's key until the sender has its answer (see
# deliveries.sh); the next delivery says the sender has them all
peer_keys() {
	"$DUMP" -p -h "$P/data" delivered.db | grep -c "^ cage-$(cat "$T/data/identity")-peer-"
}
echo "# the peer kept $(peer_keys) delivery key(s) of this sender after the burst"
# (a floor goes out once the answers below it are on disk here, so with
# the delivery after the next one)
for n in 301 302; do
	id=$(enqueue default relayer pass "last $n")
	wait_until "call $n to be delivered" peer_enqueued_is $((before + n))
	wait_until "its delivery to leave the outbox" no_peer_calls
done
equal "after two more deliveries the peer keeps only their keys" "$(peer_keys)" 2

# a cage taken out of the config: the calls for it stay, and say why
peer_stop
id=$(enqueue default relayer pass orphan)
wait_until "the call for the stopped peer to finish here" state_is "$id" done
stop_host
write_conf "[queue default]" "retry_interval = 500ms" "retry_max_interval = 500ms" \
	"attempt_timeout = 2s"
start_host
says_no_cage() { outbox | grep 'cage=peer ' | grep -q 'no \[cage peer\] in the config'; }
wait_until "the outbox to say the cage is gone" says_no_cage
ok $? "a call for a cage no longer in the config stays in the outbox, saying why"
equal "and the host serves on" "$(status GET /healthz)" 200

done_testing

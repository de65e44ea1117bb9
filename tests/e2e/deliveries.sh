#!/bin/sh
# deliveries.sh - the receiving side of cage to cage, with curl playing the
# sending cage: a delivery's key is remembered after the finished call is
# forgotten (done_keep_max), so a delivery repeated after a lost answer is
# still stored once; it is forgotten when the sender says it has the answer
# (Cage-Answered-Below); malformed delivery headers get 400.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

DUMP=$(command -v db5.3_dump || command -v db_dump)
write_conf "done_keep_max = 1"
plugin "$PLUGINS/echo.so" echo
start_host
wait_until "echo to be loaded" log_has "loaded echo@" || bail "echo was not loaded"

# the keys a sending cage makes: cage-IDENTITY-CAGE-ID (relay.h)
SENDER=cage-0123456789abcdef-peer-
ID1=0000aaaa00000001
ID2=0000aaaa00000002
ID3=0000aaaa00000003
# deliver KEY_ID FLOOR [DATA [PREFIX]]: a delivery as a sending cage makes
# it; the reply is in $T/body, the status printed
deliver() {
	curl -s -o "$T/body" -w '%{http_code}' -H "Idempotency-Key: ${4:-$SENDER}$1" \
		-H "Cage-Answered-Below: $2" --data-binary "${3:-x}" \
		"$URL/v1/enqueue/default/echo/upper"
}
id_of_body() { sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body"; }
gone() { [ "$(status GET "/v1/calls/$1")" = 404 ]; }
kept_keys() { "$DUMP" -p -h "$T/data" delivered.db | grep -c "^ $SENDER[0-9a-f]*\$" ; }

equal "a delivery is accepted" "$(deliver $ID1 0000000000000000 one)" 202
first=$(id_of_body)
wait_until "the delivered call to finish" state_is "$first" done
ok $? "the delivered call runs"
# finished calls beyond done_keep_max = 1 are forgotten: push it out
for i in 1 2 3; do
	id=$(enqueue default echo upper "other $i")
	wait_until "other call $i to finish" state_is "$id" done
done
wait_until "the delivered call to be forgotten" gone "$first"
ok $? "the finished delivered call is forgotten (done_keep_max = 1)"
equal "the same delivery again (its answer was lost) is accepted" \
	"$(deliver $ID1 0000000000000000 one)" 202
contains "as a duplicate of the first: its key outlives the finished call" \
	"$(body)" "{\"id\": \"$first\", \"duplicate\": true}"
equal "the key is in delivered.db" "$(kept_keys)" 1

# the sender has the answer to ID1: its next delivery says so
equal "the next delivery, answered below its own id, is accepted" \
	"$(deliver $ID2 $ID2 two)" 202
second=$(id_of_body)
check "as a new call" test -n "$second" -a "$second" != "$first"
"$DUMP" -p -h "$T/data" delivered.db > "$T/delivered.txt"
check "the answered delivery's key is forgotten" sh -c "! grep -q '$SENDER$ID1' '$T/delivered.txt'"
check "the new one's is kept" grep -q "$SENDER$ID2" "$T/delivered.txt"
equal "another sender's floor forgets nothing of this one's" \
	"$(deliver $ID2 ffffffffffffffff x cage-fedcba9876543210-peer-)" 202
equal "this sender's key stays" "$(kept_keys)" 1
# the same host under a second [cage] name whose keys start like these
equal "a delivery under the [cage] name peer-2 is accepted" \
	"$(deliver $ID1 0000000000000000 x "${SENDER}2-")" 202
equal "and a delivery under peer, answered below ID3, too" "$(deliver $ID3 $ID3 three)" 202
"$DUMP" -p -h "$T/data" delivered.db > "$T/delivered.txt"
check "peer's floor forgets peer's older key" sh -c "! grep -q ' $SENDER$ID2' '$T/delivered.txt'"
check "but not peer-2's" grep -q " ${SENDER}2-$ID1" "$T/delivered.txt"

# a sender upgraded from a version whose keys had no [cage] name: a
# delivery it made before is recognised under the newer key
old=$(curl -s -H "Idempotency-Key: cage-0123456789abcdef-0000aaaa00000009" -d old \
	"$URL/v1/enqueue/default/echo/upper" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
equal "an older sender's delivery sent again by its newer version is accepted" \
	"$(deliver 0000aaaa00000009 0000aaaa00000009 old)" 202
contains "as a duplicate of the first" "$(body)" "{\"id\": \"$old\", \"duplicate\": true}"

# malformed delivery headers: 400 with a reason, nothing stored
before=$(metric cagehost_enqueued_total)
bad() { curl -s -o "$T/body" -w '%{http_code}' "$@" -d x "$URL/v1/enqueue/default/echo/upper"; }
equal "Cage-Answered-Below without an Idempotency-Key: 400" \
	"$(bad -H "Cage-Answered-Below: $ID1")" 400
contains "saying what it needs" "$(body)" "Idempotency-Key cage-SENDER-ID"
equal "with a key that is not a delivery's: 400" \
	"$(bad -H "Idempotency-Key: order-17" -H "Cage-Answered-Below: $ID1")" 400
equal "with a floor that is not a call id: 400" \
	"$(bad -H "Idempotency-Key: $SENDER$ID2" -H "Cage-Answered-Below: 12")" 400
equal "with a key whose id is not a call id: 400" \
	"$(bad -H "Idempotency-Key: ${SENDER}0000AAAA00000003" -H "Cage-Answered-Below: $ID1")" 400
after=$(metric cagehost_enqueued_total)
equal "none of them was stored" "$after" "$before"

# a restart keeps the keys (they are in the store, not in memory)
third=$(deliver $ID3 $ID3 three >/dev/null; id_of_body)
stop_host
start_host
equal "after a restart the kept key is still known" "$(deliver $ID3 $ID3 three)" 202
contains "as a duplicate" "$(body)" "{\"id\": \"$third\", \"duplicate\": true}"

done_testing

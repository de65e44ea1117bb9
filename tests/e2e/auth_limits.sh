#!/bin/sh
# auth_limits.sh - who may call and how much they may ask: the bearer token
# (401 without it, required off loopback), header_timeout (408),
# max_connections (503), malformed and oversized requests, requests that
# arrive while an answer waits for the disk, the plugin directory's
# permissions, and the drop to `user` when started as root.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

TOKEN=0123456789abcdef0123
AUTH="Authorization: Bearer $TOKEN"

# hreq METHOD PATH [CURL-ARGS...]: prints the status; the body is in
# $T/body, the response headers in $T/headers
hreq() {
	m=$1 p=$2
	shift 2
	curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$m" "$@" "$URL$p"
}

# Raw connections (bash's /dev/tcp; the test itself runs under sh).
# raw.bash PORT OUT IN [SECONDS]: connects, sends the file IN, or the files
# IN.a, IN.b, ... one at a time, 50 ms apart (then creates OUT.sent), and copies what the host sends into OUT until the host closes the
# connection (creates OUT.closed), the file OUT.close appears, or SECONDS
# (default 20) pass; then closes the connection.
cat > "$T/raw.bash" <<'EOF'
exec 3<>"/dev/tcp/127.0.0.1/$1" || { : > "$2.failed"; exit 1; }
: > "$2"
if [ -e "$3" ]; then
	cat "$3" >&3
else
	for piece in "$3".?; do
		cat "$piece" >&3
		sleep 0.05
	done
fi
: > "$2.sent"
end=$((SECONDS + ${4:-20}))
while [ "$SECONDS" -lt "$end" ] && [ ! -e "$2.close" ]; do
	if IFS= read -r -t 0.1 line <&3; then
		printf '%s\n' "$line" >> "$2"
	elif [ $? -le 128 ]; then
		printf '%s' "$line" >> "$2"
		: > "$2.closed"
		exit 0
	else
		printf '%s' "$line" >> "$2"	# partial line so far
	fi
done
exec 3>&-
EOF
RAW_PIDS=
trap 'for p in $RAW_PIDS; do kill "$p" 2>/dev/null; done; cleanup' EXIT

# raw NAME [SECONDS]: sends $T/NAME.in on a new connection, in the
# background; the answer collects in $T/NAME.out
raw() {
	rm -f "$T/$1.out" "$T/$1.out.sent" "$T/$1.out.closed" "$T/$1.out.close" \
		"$T/$1.out.failed"
	bash "$T/raw.bash" "$PORT" "$T/$1.out" "$T/$1.in" "${2:-20}" &
	RAW_PIDS="$RAW_PIDS $!"
}
sent() { [ -e "$T/$1.out.sent" ]; }
closed() { [ -e "$T/$1.out.closed" ]; }
answered() { grep -q "^HTTP/1.1 $2 " "$T/$1.out" 2>/dev/null; }
raw_close() { : > "$T/$1.out.close"; }
status_or_close() { closed "$1" || grep -q '^HTTP/1.1 [0-9][0-9][0-9] ' "$T/$1.out" 2>/dev/null; }
first_line() { head -1 "$T/$1.out" 2>/dev/null | tr -d '\r'; }
healthz_ok() { [ "$(status GET /healthz)" = 200 ]; }

# ---- (a) the bearer token --------------------------------------------------
write_conf "token = $TOKEN" "header_timeout = 1s"
plugin "$PLUGINS/echo.so" echo
plugin "$TPLUGINS/crashy.so" crashy
start_host

equal "healthz needs no token" "$(hreq GET /healthz)" 200
contains "healthz says it is plain text" "$(tr -d '\r' < "$T/headers")" \
	"Content-Type: text/plain"
equal "a sync call without Authorization is 401" "$(hreq POST /v1/call/echo/echo -d hi)" 401
contains "which says what to send" "$(body)" '"error": "this host requires Authorization: Bearer TOKEN"'
contains "with a WWW-Authenticate: Bearer header" "$(tr -d '\r' < "$T/headers")" \
	'WWW-Authenticate: Bearer'
equal "a wrong token is 401" \
	"$(hreq POST /v1/call/echo/echo -d hi -H 'Authorization: Bearer 0123456789abcdef0124')" 401
contains "and says the token is wrong" "$(body)" "wrong token"
equal "a prefix of the token is 401" \
	"$(hreq POST /v1/call/echo/echo -d hi -H "Authorization: Bearer ${TOKEN%?}")" 401
equal "the token with more after it is 401" \
	"$(hreq POST /v1/call/echo/echo -d hi -H "$AUTH"x)" 401
equal "the token as Basic credentials is 401" \
	"$(hreq POST /v1/call/echo/echo -d hi -H "Authorization: Basic $TOKEN")" 401
equal "the right token is 200" "$(hreq POST /v1/call/echo/echo -d hi -H "$AUTH")" 200
equal "with the handler's reply" "$(body)" hi
equal "cagectl sends \$CAGEHOST_TOKEN" "$(CAGEHOST_TOKEN=$TOKEN "$CAGECTL" call echo echo tok)" "tok"
CAGEHOST_TOKEN= "$CAGECTL" call echo echo tok > /dev/null 2>&1
equal "cagectl without a token gets the 401 (exit status 1)" "$?" 1
equal "an enqueue without the token is 401" "$(hreq POST /v1/enqueue/default/echo/echo -d q)" 401
equal "an enqueue with the token is 202" "$(hreq POST /v1/enqueue/default/echo/echo -d q -H "$AUTH")" 202
id=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/body")
check "and gets an id" test -n "$id"
equal "GET of the call without the token is 401" "$(hreq GET "/v1/calls/$id")" 401
check "and shows nothing of the call" sh -c "! grep -q '$id' '$T/body'"
call_done() { hreq GET "/v1/calls/$id" -H "$AUTH" >/dev/null; grep -q '"state": "done"' "$T/body"; }
if wait_until "the queued call to be done" call_done; then
	ok 0 "GET of the call with the token shows it done"
else
	ok 1 "GET of the call with the token shows it done"
fi
equal "metrics without the token are 401" "$(hreq GET /metrics)" 401
equal "metrics with the token are 200" "$(hreq GET /metrics -H "$AUTH")" 200

# ---- (c) header_timeout ----------------------------------------------------
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n' > "$T/slow.in"
start=$(now_ms)
raw slow
wait_until "the slow headers to be sent" sent slow
equal "while a request's headers are overdue, others are served" \
	"$(hreq POST /v1/call/echo/echo -d other -H "$AUTH")" 200
if WAIT_LIMIT=15 wait_until "408 on the slow connection" answered slow 408; then
	ok 0 "headers not complete within header_timeout get 408"
else
	ok 1 "headers not complete within header_timeout get 408"
	echo "#   got: $(first_line slow)"
fi
# the guard looks once a second, so the 408 comes 1-2 s after the headers
# started; the default header_timeout (10 s) would be far later
took=$(( $(now_ms) - start ))
check "not before header_timeout = 1s (took ${took} ms)" test "$took" -ge 1000
check "and long before the default 10 s" test "$took" -le 8000
# the reason follows the status line: wait for it, the reader may lag
says_why() { grep -q header_timeout "$T/slow.out"; }
WAIT_LIMIT=5 wait_until "the 408's reason" says_why
contains "the 408 says why" "$(cat "$T/slow.out")" "header_timeout"
if WAIT_LIMIT=5 wait_until "the slow connection to be closed" closed slow; then
	ok 0 "and the host closes that connection"
else
	ok 1 "and the host closes that connection"
fi
equal "the host serves on after the 408" "$(hreq POST /v1/call/echo/echo -d after -H "$AUTH")" 200
# a 3 s sync call sent with the start of the next request in one segment
# (after a first answer on the connection): the unfinished one's 408 waits
# until evhttp reads again, and comes after the call's answer.  (The 408
# used to run evhttp's "answer sent" callback, which freed the request it
# was handling: the host aborted.)
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/pipe.in.a"
printf 'POST /v1/call/crashy/slow HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 4\r\n\r\n3000GET /healthz HTTP/1.1\r\nHost: x\r\n' \
	"$AUTH" > "$T/pipe.in.b"
raw pipe 20
slow_answered() { grep -q "slow ok" "$T/pipe.out"; }
if WAIT_LIMIT=15 wait_until "the slow call's answer" slow_answered; then
	ok 0 "a call sent with the start of the next request is answered"
else
	ok 1 "a call sent with the start of the next request is answered"
fi
check "the host is alive" host_alive
# (the 200's body has no newline: the 408 follows on its line)
pipe_408() { grep -q 'HTTP/1.1 408 ' "$T/pipe.out"; }
if WAIT_LIMIT=10 wait_until "a 408 for the unfinished request" pipe_408; then
	ok 0 "the unfinished request gets its 408"
else
	ok 1 "the unfinished request gets its 408"
fi
check "after the call's answer" sh -c "tr -d '\r\n' < '$T/pipe.out' | grep -q 'slow ok.*HTTP/1.1 408 '"
raw_close pipe

# ---- (e) malformed and oversized requests ----------------------------------
# malformed NAME DESCRIPTION: sends $T/NAME.in; the host must answer with an
# HTTP status or close the connection cleanly, and stay up
malformed() {
	raw "$1" 15
	if WAIT_LIMIT=15 wait_until "an answer to $2" status_or_close "$1"; then
		# the rest of the answer may still be on its way: let the host
		# finish and close before the reader goes
		WAIT_LIMIT=5 wait_until "the host to close after $2" closed "$1"
		raw_close "$1"
		line=$(first_line "$1")
		case "$line" in
		"HTTP/1.1 "[1-5][0-9][0-9]" "* | "") ok 0 "$2: ${line:-clean close}" ;;
		*) ok 1 "$2: not HTTP: $line" ;;
		esac
	else
		ok 1 "$2: the host neither answered nor closed"
		raw_close "$1"
	fi
	check "the host is alive after $2" host_alive
	equal "healthz answers 200 after $2" "$(status GET /healthz)" 200
}

printf '\001\002\377garbage in\r\n\r\n' > "$T/garbage.in"
malformed garbage "a garbage request line"
# refused_json NAME STATUS TEXT: the answer on NAME is STATUS, in JSON, and
# says TEXT (evhttp's own answer to a request line it cannot read is HTML)
refused_json() {
	equal "$1: $2" "$(first_line "$1" | cut -d' ' -f2)" "$2"
	contains "$1: a JSON reason" "$(cat "$T/$1.out")" "{\"error\": \"$3"
	check "$1: no HTML" sh -c "! grep -qi '<html>' '$T/$1.out'"
	body=$(tail -1 "$T/$1.out")
	equal "$1: its Content-Length is the body's length" \
		"$(grep -i '^Content-Length:' "$T/$1.out" | tr -dc 0-9)" "$((${#body} + 1))"
}
refused_json garbage 400 "a malformed request line"
printf 'GET /healthz\r\nHost: x\r\n\r\n' > "$T/noversion.in"
malformed noversion "a request line without a version"
refused_json noversion 400 "a malformed request line"
printf 'GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n' > "$T/http2.in"
malformed http2 "HTTP/2.0 in a request line"
refused_json http2 505 "this host speaks HTTP/1.1"
printf 'GET /healthz HTTP/3\r\nHost: x\r\n\r\n' > "$T/http3.in"
malformed http3 "HTTP/3 in a request line"
refused_json http3 505 "this host speaks HTTP/1.1"
printf 'GET /healthz HTTP/1.1x\r\nHost: x\r\n\r\n' > "$T/badversion.in"
malformed badversion "a version with a byte after it"
refused_json badversion 400 "a malformed request line: its last word must be the version"
# evhttp does not skip an empty line before the request line
printf '\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/emptyfirst.in"
malformed emptyfirst "an empty line before the request line"
refused_json emptyfirst 400 "a malformed request line"
# a target evhttp cannot parse as a URI (an absolute one with a port that
# is no number, a broken IPv6 address after //) is refused in JSON too;
# a good absolute one is served
printf 'GET http://h:x/healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/badport.in"
malformed badport "a target with a port that is no number"
refused_json badport 400 "a request target that is not a URI"
printf 'GET //[::1/hea' > "$T/badhost.in.a"
printf 'lthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/badhost.in.b"
malformed badhost "a target with a broken IPv6 address, in pieces"
refused_json badhost 400 "a request target that is not a URI"
# CONNECT, whose target evhttp reads as host:port: 501 in JSON, whatever
# the target (evhttp answered one it could not read in HTML)
printf 'CONNECT h:x HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/connect.in"
malformed connect "CONNECT to a port that is no number"
refused_json connect 501 "CONNECT: this host is not a proxy"
printf 'GET http://h/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' > "$T/absolute.in"
raw absolute
wait_until "the absolute target to be answered" closed absolute
equal "an absolute target that parses is served: 200" \
	"$(first_line absolute | cut -d' ' -f2)" 200
raw_close absolute
# a request line longer than the bytes the guard looks at one by one, in
# two pieces, without a version
printf 'GET /v1/calls/%s' "$(head -c 40 /dev/zero | tr '\0' a)" > "$T/longnoversion.in.a"
printf '%s\r\nHost: x\r\n\r\n' "$(head -c 40 /dev/zero | tr '\0' a)" > "$T/longnoversion.in.b"
malformed longnoversion "a long request line without a version, in pieces"
refused_json longnoversion 400 "a malformed request line"
# lines evhttp reads must pass: a version split between two pieces and
# followed by spaces (evhttp drops them), and a target with a space in it
# (evhttp takes the last word for the version)
printf 'GET /healthz HT' > "$T/splitversion.in.a"
printf 'TP/1.1  \r\nHost: x\r\n\r\nGET /%s x HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n' \
	"$(head -c 30 /dev/zero | tr '\0' a)" "$AUTH" > "$T/splitversion.in.b"
raw splitversion
wait_until "the two requests to be answered" closed splitversion
equal "a version in two pieces, then spaces: 200; a target with a space: evhttp's 404" \
	"$(grep -o 'HTTP/1.1 [0-9][0-9][0-9] ' "$T/splitversion.out" | cut -d' ' -f2 | tr '\n' ' ')" "200 404 "
{
	printf 'GET /v1/calls/'
	head -c 102400 /dev/zero | tr '\0' a
	printf ' HTTP/1.1\r\nHost: x\r\n\r\n'
} > "$T/longurl.in"
malformed longurl "a 100 KB URL"
check "a 100 KB URL is 431 (over max_header_size)" answered longurl 431
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon in this line\r\n\r\n' > "$T/nocolon.in"
malformed nocolon "a header line without a colon"
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: -5\r\n\r\nhello' \
	"$AUTH" > "$T/neglen.in"
malformed neglen "a negative Content-Length"
check "a negative Content-Length is not run as a call" sh -c "! grep -q '^HTTP/1.1 200' '$T/neglen.out'"
# two different Content-Lengths: the framing is invalid (RFC 9112 6.3: 400,
# then close); the guard, which counts header bytes, must not lose track
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 5\r\nContent-Length: 100\r\n\r\nhello' \
	"$AUTH" > "$T/twolen.in"
malformed twolen "two different Content-Lengths"
equal "two different Content-Lengths are 400" "$(first_line twolen | cut -d' ' -f2)" 400
# "Name : value": evhttp would take "Idempotency-Key " for another header,
# and store the call with no key
printf 'POST /v1/enqueue/default/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nIdempotency-Key : k1\r\nContent-Length: 1\r\n\r\nx' \
	"$AUTH" > "$T/spacecolon.in"
malformed spacecolon "a space before a header's colon"
equal "a space before a header's colon is 400" "$(first_line spacecolon | cut -d' ' -f2)" 400
# a chunked body: the guard follows bodies by Content-Length only, so a
# Transfer-Encoding would let the rest of the connection past it
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' \
	"$AUTH" > "$T/chunked.in"
malformed chunked "a chunked body"
equal "a Transfer-Encoding is 411 Length Required" "$(first_line chunked | cut -d' ' -f2)" 411
contains "saying to send a Content-Length" "$(cat "$T/chunked.out")" "Content-Length"
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 1000\r\n\r\nshort' \
	"$AUTH" > "$T/short.in"
bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && cat "$1" >&3 && exec 3>&-' "$PORT" "$T/short.in"
check "the host is alive after a body shorter than Content-Length and a close" host_alive
equal "healthz answers 200 after that" "$(status GET /healthz)" 200
i=0
: > "$T/pipeline.in"
while [ $i -lt 1999 ]; do
	printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
	i=$((i + 1))
done >> "$T/pipeline.in"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >> "$T/pipeline.in"
raw pipeline 30
if WAIT_LIMIT=40 wait_until "the pipelined requests to be answered" closed pipeline; then
	ok 0 "2000 pipelined requests: the host answers and closes"
else
	ok 1 "2000 pipelined requests: the host answers and closes"
	raw_close pipeline
fi
equal "each of the 2000 pipelined requests got 200" "$(grep -c '^HTTP/1.1 200 ' "$T/pipeline.out")" 2000
check "the host is alive after the pipeline" host_alive
# two pipelined calls whose headers arrive in pieces, split inside a name,
# inside a long line's value and after its CR, inside the Content-Length
# value and between CR and LF, each with a body over max_header_size: a
# guard that lost its place would answer 431 or 400
body=$(head -c 10000 /dev/zero | tr '\0' x)
printf 'POST /v1/call/echo/ech' > "$T/pieces.in.a"
printf 'o HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s' "$(echo "$TOKEN" | cut -c1-7)" \
	> "$T/pieces.in.b"
printf '%s\r' "$(echo "$TOKEN" | cut -c8-)" > "$T/pieces.in.c"
printf '\nContent-Le' > "$T/pieces.in.d"
printf 'ngth: 10' > "$T/pieces.in.e"
printf '000\r\n\r' > "$T/pieces.in.f"
printf '\n%sPOST /v1/call/echo/upper HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r' \
	"$body" "$AUTH" > "$T/pieces.in.g"
printf '\nContent-Length: 10000\r\n\r\n%s' "$body" > "$T/pieces.in.h"
raw pieces
wait_until "the calls sent in pieces to be answered" closed pieces
equal "two calls whose headers came in pieces are both answered 200" \
	"$(grep -o 'HTTP/1.1 200 ' "$T/pieces.out" | wc -l)" 2
contains "with their 10 KB replies" "$(cat "$T/pieces.out")" \
	"$(head -c 10000 /dev/zero | tr '\0' X)"
# statuses NAME: the status codes of the answers on a raw connection, in order
statuses() { grep -o 'HTTP/1.1 [0-9][0-9][0-9] ' "$T/$1.out" | cut -d' ' -f2 | tr '\n' ' '; }
# valid requests pipelined before a refused one, in one write: each is
# answered, in order, and the refusal comes last
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 9\r\n\r\nfirst-onePOST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 10\r\n\r\nsecond-onePOST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' \
	"$AUTH" "$AUTH" "$AUTH" > "$T/before_bad.in"
raw before_bad
wait_until "the pipelined calls and the refusal to be answered" closed before_bad
equal "two calls pipelined before a chunked request: 200, 200, then 411" \
	"$(statuses before_bad)" "200 200 411 "
contains "the first call's reply is there" "$(cat "$T/before_bad.out")" first-one
contains "and the second's" "$(cat "$T/before_bad.out")" second-one
printf 'POST /v1/enqueue/default/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 6\r\n\r\nkept-1POST /v1/enqueue/default/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 999999999\r\n\r\nkept-2' \
	"$AUTH" "$AUTH" > "$T/enqueue_bad.in"
raw enqueue_bad
wait_until "the pipelined enqueue and the refusal to be answered" closed enqueue_bad
equal "an enqueue pipelined before a body over max_body_size: 202, then 413" \
	"$(statuses enqueue_bad)" "202 413 "
id=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/enqueue_bad.out")
equal "and the enqueued call is stored" "$(hreq GET "/v1/calls/$id" -H "$AUTH")" 200
# the refusal waits while the call before it runs
release="$T/release"
printf 'POST /v1/call/crashy/slow HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %s\r\n\r\n%sGET /healthz HTTP/1.1\r\nHost: x\r\nX-Name : value\r\n\r\n' \
	"$AUTH" "${#release}" "$release" > "$T/slow_bad.in"
raw slow_bad 30
wait_until "the request to be sent" sent slow_bad
sleep 1.5	# two sweeps of the guard: a refusal sent now would be seen below
equal "a slow call pipelined before a bad header line: no answer while it runs" \
	"$(grep -c '^HTTP/1.1 ' "$T/slow_bad.out")" 0
touch "$T/release"
wait_until "the slow call and the refusal to be answered" closed slow_bad
equal "then its 200, then 400" \
	"$(statuses slow_bad)" "200 400 "
contains "with the call's reply" "$(cat "$T/slow_bad.out")" "slow ok"
# a client that closes its sending side after pipelining still gets the refusal
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' \
	"$AUTH" > "$T/halfclose.in"
"$HALFCLOSE" "$PORT" "$T/halfclose.in" 20 > "$T/halfclose.out"
equal "a request and a refused one, then the client's close: 200, then 411" \
	"$(statuses halfclose)" "200 411 "
# evhttp reads no body after HEAD: the guard must not skip a "body" there,
# or a request in it would reach evhttp unchecked
chunked_call=$(printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' "$AUTH"; echo .)
chunked_call=${chunked_call%.}
printf 'HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n%s' \
	"${#chunked_call}" "$chunked_call" > "$T/head_body.in"
raw head_body
wait_until "the HEAD and the request after it to be answered" closed head_body
equal "a chunked call sent as a HEAD's body is refused: 200, then 411" \
	"$(statuses head_body)" "200 411 "
check "and never runs" sh -c "! grep -q hello '$T/head_body.out'"
# a header folded onto the next line (obs-fold): evhttp would join a
# Content-Length's value from the second line, the guard would not
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length:\r\n 9\r\n\r\nfirst-one' \
	"$AUTH" > "$T/folded.in"
malformed folded "a header line folded onto the next"
equal "a folded header line is 400" "$(first_line folded | cut -d' ' -f2)" 400
# a NUL in a Content-Length: evhttp reads the value as a C string ("0"), so
# a guard that skipped the digits after the NUL as a body would let the
# chunked call in it through
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 0\000%s\r\n\r\n%s' \
	"$AUTH" "${#chunked_call}" "$chunked_call" > "$T/nul_length.in"
raw nul_length
wait_until "the request with a NUL in its Content-Length to be answered" closed nul_length
equal "a NUL in a Content-Length is 400, and nothing after it is served" \
	"$(statuses nul_length)" "400 "
check "the chunked call after it never runs" sh -c "! grep -q hello '$T/nul_length.out'"
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: +5\r\n\r\nhello' \
	"$AUTH" > "$T/plus_length.in"
malformed plus_length "a Content-Length with a sign"
equal "a Content-Length that is not digits is 400" "$(first_line plus_length | cut -d' ' -f2)" 400
printf 'G\rET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/bare_cr.in"
malformed bare_cr "a CR inside the method"
equal "a CR not followed by LF is 400" "$(first_line bare_cr | cut -d' ' -f2)" 400
# a method evhttp does not know: 501, in JSON like every other error
printf 'PROPFIND /v1/calls HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n' "$AUTH" > "$T/propfind.in"
malformed propfind "an unknown method"
equal "an unknown method is 501" "$(first_line propfind | cut -d' ' -f2)" 501
contains "with a JSON error" "$(cat "$T/propfind.out")" '{"error": "unknown method'
printf 'get /healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$T/lower.in"
malformed lower "a method in lower case"
equal "a method in lower case is 501" "$(first_line lower | cut -d' ' -f2)" 501
contains "saying methods are upper case" "$(cat "$T/lower.out")" "upper case"
# absolute-form, as a proxy sends it (RFC 9112 3.2.2: servers must accept it)
printf 'POST http://127.0.0.1:%s/v1/call/echo/upper HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz' \
	"$PORT" "$AUTH" > "$T/absolute.in"
malformed absolute "a request in absolute-form"
equal "an absolute-form request is routed by its path" "$(first_line absolute | cut -d' ' -f2)" 200
contains "and answered" "$(cat "$T/absolute.out")" XYZ
equal "healthz answers 200 after all the malformed requests" "$(status GET /healthz)" 200
equal "and calls still work" "$(hreq POST /v1/call/echo/upper -d abc -H "$AUTH")" 200
equal "with the right reply" "$(body)" ABC
stop_host

# ---- (b) a listener beyond loopback needs a token --------------------------
printf '[host]\nlisten = 0.0.0.0:0\ndata_dir = data\nplugin_dir = plugins\n' > "$T/exposed.conf"
"$CAGEHOST" -c "$T/exposed.conf" --check > "$T/check.out" 2>&1
rc=$?
check "--check refuses listen = 0.0.0.0 without a token (exit $rc)" test "$rc" -ne 0
version=$("$CAGEHOST" --version)
equal "--version prints the version and exits 0" "$?" 0
case "$version" in
"cagehost "[0-9]*.[0-9]*.[0-9]*) ok 0 "--version says 'cagehost X.Y.Z': $version" ;;
*) ok 1 "--version says 'cagehost X.Y.Z': $version" ;;
esac
check "the host's start line names its version" log_has "serving on .* (cagehost ${version#cagehost }, data_dir"
contains "naming file:line of the listen" "$(cat "$T/check.out")" "exposed.conf:2:"
contains "and telling to set a token" "$(cat "$T/check.out")" "token"
printf '[host]\nlisten = [::]:0\ndata_dir = data\nplugin_dir = plugins\n' > "$T/exposed6.conf"
"$CAGEHOST" -c "$T/exposed6.conf" --check > "$T/check6.out" 2>&1
rc=$?
check "--check refuses listen = [::] without a token (exit $rc)" test "$rc" -ne 0
printf '[host]\nlisten = 0.0.0.0:0\ndata_dir = data\nplugin_dir = plugins\ntoken = %s\n' \
	"$TOKEN" > "$T/exposed.conf"
"$CAGEHOST" -c "$T/exposed.conf" --check > "$T/check.out" 2>&1
rc=$?
equal "with a token it is accepted" "$rc" 0
printf '[host]\nlisten = 0.0.0.0:0\ntoken = short\n' > "$T/short.conf"
"$CAGEHOST" -c "$T/short.conf" --check > "$T/check.out" 2>&1
rc=$?
check "a token under 16 characters is refused (exit $rc)" test "$rc" -ne 0
contains "naming its line" "$(cat "$T/check.out")" "short.conf:3: token"

# ---- connections that never send a byte --------------------------------------
# (the guard leaves them to evhttp's idle timeout)
write_conf "idle_timeout = 1s"
start_host
: > "$T/silent.in"
raw silent 20
if WAIT_LIMIT=10 wait_until "the silent connection to be closed" closed silent; then
	ok 0 "a connection that sends nothing is closed after idle_timeout"
else
	ok 1 "a connection that sends nothing is closed after idle_timeout"
	raw_close silent
fi
equal "and gets no answer" "$(cat "$T/silent.out")" ""
stop_host

# ---- (d) max_connections ---------------------------------------------------
write_conf "max_connections = 4" "header_timeout = 30s"
start_host
printf 'GET /heal' > "$T/partial.in"
for n in 1 2 3 4; do
	cp "$T/partial.in" "$T/conn$n.in"
	raw "conn$n" 40
	wait_until "connection $n to send" sent "conn$n"
done
full_house() { [ "$(status GET /healthz)" = 503 ]; }
if WAIT_LIMIT=10 wait_until "the host to count 4 connections" full_house; then
	ok 0 "with 4 connections open, a fifth request is 503"
else
	ok 1 "with 4 connections open, a fifth request is 503"
fi
contains "saying too many connections" "$(body)" "too many connections"
for n in 5 6; do
	cp "$T/partial.in" "$T/conn$n.in"
	raw "conn$n" 40
	if WAIT_LIMIT=10 wait_until "connection $n to be answered" answered "conn$n" 503; then
		ok 0 "connection $n gets 503"
	else
		ok 1 "connection $n gets 503"
		echo "#   got: $(first_line "conn$n")"
	fi
	# the reason follows the status line: wait for it, the reader may lag
	WAIT_LIMIT=5 wait_until "connection $n's reason" grep -q "too many connections" \
		"$T/conn$n.out"
	contains "connection $n: the 503 says too many connections" "$(cat "$T/conn$n.out")" \
		"too many connections"
	if WAIT_LIMIT=5 wait_until "connection $n to be closed" closed "conn$n"; then
		ok 0 "connection $n is closed after its 503"
	else
		ok 1 "connection $n is closed after its 503"
	fi
done
for n in 1 2 3 4; do
	equal "connection $n (within the limit) got no answer" "$(cat "$T/conn$n.out")" ""
	raw_close "conn$n"
done
if wait_until "the host to serve again" healthz_ok; then
	ok 0 "after the connections close, a request is served"
else
	ok 1 "after the connections close, a request is served"
fi
equal "a call works again" "$(status POST /v1/call/echo/echo again)" 200
check "the host is alive" host_alive
stop_host

# ---- (e) connections that do not let go -------------------------------------
# slowloris: clients that drip header bytes and ignore their 408 still lose
# the connection, and with it their place under max_connections
write_conf "max_connections = 4" "header_timeout = 1s"
start_host
"$HOLDCONNS" "$PORT" 4 20 drip > "$T/drip.out" &
drip=$!
if WAIT_LIMIT=10 wait_until "the dripping clients to fill every place" full_house; then
	ok 0 "4 clients dripping header bytes fill max_connections = 4"
else
	ok 1 "4 clients dripping header bytes fill max_connections = 4"
fi
if WAIT_LIMIT=15 wait_until "a place to free up" healthz_ok; then
	ok 0 "they are closed after their 408: others are served while they still drip"
else
	ok 1 "they are closed after their 408: others are served while they still drip"
fi
wait "$drip"
echo "# dripping clients: $(cat "$T/drip.out")"
contains "the host closed all 4" "$(cat "$T/drip.out")" "closed_by_host=4"
stop_host

# a flood of silent connections at a host with few file descriptors: those
# past the limit get 503 and are closed, accepting pauses beyond, and the
# descriptors the databases need are never taken
printf '#!/bin/sh\nulimit -n 200 || exit 1\nexec "%s" "$@"\n' "$CAGEHOST" > "$T/few_fds"
chmod +x "$T/few_fds"
write_conf "header_timeout = 30s"
real_cagehost=$CAGEHOST
CAGEHOST=$T/few_fds
start_host
CAGEHOST=$real_cagehost
check "max_connections is lowered to what 200 open files leave" \
	log_has "max_connections 1024 lowered to [0-9]*: the process may open 200 files"
"$HOLDCONNS" "$PORT" 300 6 > "$T/flood.out"
echo "# flood: $(cat "$T/flood.out")"
answered=$(sed -n 's/.*answered503=\([0-9]*\).*/\1/p' "$T/flood.out")
closed=$(sed -n 's/.*closed_by_host=\([0-9]*\).*/\1/p' "$T/flood.out")
check "connections past the limit get 503 without sending a byte" test "${answered:-0}" -ge 1
check "and are closed by the host, not only half-closed (${closed:-0} within 6 s)" \
	test "${closed:-0}" -ge 1
check "the host is alive after the flood" host_alive
check "it never ran out of file descriptors" sh -c "! grep -q 'Too many open files' '$T/host.log'"
if wait_until "the host to serve again" healthz_ok; then
	ok 0 "after the flood a request is served"
else
	ok 1 "after the flood a request is served"
fi
equal "and an enqueue is stored" "$(status POST /v1/enqueue/default/echo/echo x)" 202
check "no database recovery was needed" sh -c "! grep -qi 'recover' '$T/host.log'"

# ---- (f) the plugin directory's permissions ---------------------------------
chmod 777 "$T/plugins"
plugin "$PLUGINS/echo.so" late
if wait_until "late to be refused" log_has "refused $T/plugins/late.so: .*writable by group or others"; then
	ok 0 "a module in a plugin directory writable by others is refused"
else
	ok 1 "a module in a plugin directory writable by others is refused"
fi
grep "late.so" "$T/host.log" | sed 's/^/# /'
equal "a sync call to the refused module is 502" "$(status POST /v1/call/late/echo x)" 502
contains "saying why" "$(body)" "module late has no good version: late.so was refused: plugin directory"

chmod 755 "$T/plugins"
if wait_until "late to be loaded" log_has "loaded late@1.0+"; then
	ok 0 "once the directory is 755 again, the module loads, its file untouched"
else
	ok 1 "once the directory is 755 again, the module loads, its file untouched"
fi
equal "and a sync call to it is 200" "$(status POST /v1/call/late/echo x)" 200
chmod 666 "$T/plugins/late.so"
touch "$T/plugins/late.so"
if wait_until "a world-writable late.so to be refused" \
	log_has "refused $T/plugins/late.so: file is writable by group or others"; then
	ok 0 "a module file writable by others is refused"
else
	ok 1 "a module file writable by others is refused"
fi
stop_host

# ---- (g) while an answer waits for the disk ---------------------------------
# Each flush waits 2.5 s, so the answer to an enqueue (or a deletion) waits
# that long, and what a piece sent 50 ms after it brings arrives meanwhile:
# the connection reads on, but answers go out in request order.
CAGEHOST_TEST_FLUSH_PAUSE_MS=2500
export CAGEHOST_TEST_FLUSH_PAUSE_MS
write_conf "header_timeout = 1s"
start_host
unset CAGEHOST_TEST_FLUSH_PAUSE_MS
ENQUEUE_PIECE='POST /v1/enqueue/default/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwait'
printf "$ENQUEUE_PIECE" > "$T/wait_next.in.a"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' > "$T/wait_next.in.b"
raw wait_next
printf "$ENQUEUE_PIECE" > "$T/wait_bad.in.a"
printf 'POST /v1/call/echo/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' \
	> "$T/wait_bad.in.b"
raw wait_bad
# the next request's headers stall: header_timeout (1 s) passes while the
# answer before it waits, but its 408 must come after that answer
printf "$ENQUEUE_PIECE" > "$T/wait_slow.in.a"
printf 'GET /healthz HTTP/1.1\r\nHo' > "$T/wait_slow.in.b"
raw wait_slow
# more than the 64 KiB read ahead: 2,000 requests of 37 bytes
printf "$ENQUEUE_PIECE" > "$T/wait_many.in.a"
for i in $(seq 1999); do printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'; done > "$T/wait_many.in.b"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >> "$T/wait_many.in.b"
raw wait_many 40
# the client closes its sending side right after the enqueue
printf "$ENQUEUE_PIECE" > "$T/wait_half.in"
"$HALFCLOSE" "$PORT" "$T/wait_half.in" 20 > "$T/wait_half.out" &
half_pid=$!
RAW_PIDS="$RAW_PIDS $half_pid"
wait_until "the enqueue and the request after it to be answered" closed wait_next
wait_until "the enqueue and the refusal after it to be answered" closed wait_bad
wait_until "the enqueue and the 408 after it to be answered" closed wait_slow
WAIT_LIMIT=40 wait_until "the enqueue and 2,000 requests to be answered" closed wait_many
equal "a request that came while an enqueue's answer waited: answered after it" \
	"$(statuses wait_next)" "202 200 "
equal "a refused one (411): refused after it" "$(statuses wait_bad)" "202 411 "
id=$(sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' "$T/wait_bad.out")
equal "and the enqueued call is stored" "$(hreq GET "/v1/calls/$id")" 200
equal "headers that stalled meanwhile: 408 only after the answer" \
	"$(statuses wait_slow)" "202 408 "
equal "2,000 requests sent meanwhile (past the read-ahead): the enqueue's 202 first" \
	"$(statuses wait_many | cut -d' ' -f1)" 202
equal "then 2,000 answers 200" "$(grep -c '^HTTP/1.1 200 ' "$T/wait_many.out")" 2000
wait "$half_pid"
equal "a client that shut its sending side after an enqueue gets the 202" \
	"$(statuses wait_half)" "202 "
# a deletion (a request without a body) waits for the disk too
id=$(enqueue default echo fail doomed)
wait_until "the failing call to be dead" state_is "$id" dead
printf 'DELETE /v1/calls/%s HTTP/1.1\r\nHost: x\r\n\r\n' "$id" > "$T/wait_delete.in.a"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' > "$T/wait_delete.in.b"
raw wait_delete
wait_until "the deletion and the request after it to be answered" closed wait_delete
equal "a request that came while a deletion's answer waited: answered after it" \
	"$(statuses wait_delete)" "200 200 "
check "the host is alive" host_alive
stop_host

# ---- (h) user = nobody -----------------------------------------------------
# others_reach DIR: every directory above DIR lets others through
others_reach() {
	d=$1
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		case "$(stat -c %A "$d")" in
		*[xt]) ;;
		*) return 1 ;;
		esac
	done
}
if [ "$(id -u)" != 0 ]; then
	tap_n=$((tap_n + 1))
	echo "ok $tap_n # SKIP not root"
elif ! nobody_uid=$(id -u nobody 2>/dev/null); then
	tap_n=$((tap_n + 1))
	echo "ok $tap_n # SKIP no user nobody"
elif ! others_reach "$T"; then
	tap_n=$((tap_n + 1))
	echo "ok $tap_n # SKIP $T is not reachable by others (TMPDIR)"
else
	rm -f "$T/plugins/late.so"
	write_conf "user = nobody" "[queue default]" "retry_interval = 200ms"
	start_host	# on the data_dir root used so far
	uid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\)[[:space:]]*\([0-9]*\).*/\1 \2/p' \
		"/proc/$HOST_PID/status")
	equal "the host runs as nobody (real and effective uid)" "$uid" "$nobody_uid $nobody_uid"
	contains "and says so in the log" "$(cat "$T/host.log")" "running as user nobody"
	for w in $(pgrep -P "$HOST_PID"); do
		wuid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$w/status")
		equal "worker $w runs as nobody" "$wuid" "$nobody_uid"
	done
	equal "it serves sync calls" "$(status POST /v1/call/echo/echo 'as nobody')" 200
	equal "with the right reply" "$(body)" "as nobody"
	id=$(enqueue default echo echo queued)
	check "it accepts queued calls" test -n "$id"
	if wait_until "the queued call to be done" state_is "$id" done; then
		ok 0 "and runs them"
	else
		ok 1 "and runs them"
	fi
	equal "data_dir is owned by nobody" "$(stat -c %u "$T/data")" "$nobody_uid"
	equal "and so is everything in it" "$(find "$T/data" ! -user nobody | head -5)" ""
	stop_host
fi

done_testing

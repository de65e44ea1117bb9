#!/bin/sh
# sdk_example.sh - the module in sdk/README builds with the command the
# READMEs give (warnings as errors) and runs as they say; a module written
# in C++ against sdk/cage.h builds without warnings, with hidden default
# visibility, and exports its descriptor.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

SDK=$CAGE_SRC/sdk
CC=${CC:-cc}
CXX=${CXX:-c++}

# the ```c block of sdk/README, as a reader would copy it
sed -n '/^```c$/,/^```$/p' "$SDK/README" | sed '1d;$d' > "$T/greet.c"
check "sdk/README holds a module's source" grep -q 'CAGE_MODULE("1.0", methods);' "$T/greet.c"
if $CC -shared -fPIC -Wall -Wextra -Werror -I "$SDK" -o "$T/greet.so" "$T/greet.c" \
	2> "$T/cc.err"; then
	ok 0 "the README's module builds with cc -shared -fPIC -I sdk, warnings as errors"
else
	ok 1 "the README's module builds with cc -shared -fPIC -I sdk, warnings as errors"
	sed 's/^/#   /' "$T/cc.err"
fi

cat > "$T/hello.cc" <<'CXX'
// a C++ module: its descriptor must be exported as "cage_module"
#include <string>
#include <cage.h>

static cage_outcome hello(cage_call *call)
{
	size_t len;
	const char *name = static_cast<const char *>(cage_payload(call, &len));
	std::string reply = "hello from C++, " + std::string(name, len);

	cage_reply_str(call, reply.c_str());
	return CAGE_OK;
}

static const struct cage_method methods[] = { { "hello", hello }, { nullptr, nullptr } };

CAGE_MODULE("2.0", methods);
CXX
if $CXX -shared -fPIC -Wall -Wextra -Werror -fvisibility=hidden -I "$SDK" -o "$T/hellocc.so" \
	"$T/hello.cc" 2> "$T/cxx.err"; then
	ok 0 "a C++ module builds without warnings (-fvisibility=hidden, warnings as errors)"
else
	ok 1 "a C++ module builds without warnings (-fvisibility=hidden, warnings as errors)"
	sed 's/^/#   /' "$T/cxx.err"
fi

start_host
plugin "$T/greet.so" greet
plugin "$T/hellocc.so" hellocc
loaded() { [ "$(status POST /v1/call/"$1"/hello x)" = 200 ]; }
wait_until "greet to be loaded" loaded greet
equal "greet.hello answers as sdk/README says" "$(status POST /v1/call/greet/hello Ada; body)" \
	"200hello, Ada (attempt 1)"
equal "an empty name is CAGE_FAIL: 422" "$(status POST /v1/call/greet/hello '')" 422
contains "with the handler's message" "$(body)" "payload must be a name of 1..64 bytes, got 0"
check "the handler's cage_log line is in the host's log, with module and version" \
	log_has "greet@1.0+[0-9a-f]*: greeted Ada"
wait_until "the C++ module to be loaded" loaded hellocc
equal "the C++ module answers" "$(status POST /v1/call/hellocc/hello Ada; body)" \
	"200hello from C++, Ada"

done_testing

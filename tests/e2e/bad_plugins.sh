#!/bin/sh
# bad_plugins.sh - a bad file dropped over a good module is refused with a
# logged reason and the last good version keeps serving; a bad first version
# of a new module leaves that module unavailable.
. "${CAGE_SRC:-$(dirname "$0")/../..}/tests/lib.sh"

write_conf
plugin "$PLUGINS/echo.so" mod
start_host

wait_until "mod to be loaded" log_has "loaded mod@" || bail "mod was not loaded"
good=$(sed -n 's/.*loaded mod@\([^ ]*\) from.*/\1/p' "$T/host.log" | tail -1)
check "the good mod has a version" test -n "$good"
echo "# good version: mod@$good"
equal "mod.echo serves before any bad file" "$(status POST /v1/call/mod/echo first)" 200

# refusals_of NAME: how many "refused" lines the log has for NAME.so
refusals_of() { grep -c -- "refused $T/plugins/$1\.so: " "$T/host.log"; }
more_refusals() { [ "$(refusals_of "$1")" -gt "$2" ]; }

# install_mode FILE NAME MODE: like plugin(), with another file mode
install_mode() {
	cp "$1" "$T/plugins/.$2.so.tmp"
	chmod "$3" "$T/plugins/.$2.so.tmp"
	mv "$T/plugins/.$2.so.tmp" "$T/plugins/$2.so"
}

# refused LABEL FILE REASON [MODE]: installs FILE as mod.so; it must be
# refused with REASON while mod@$good stays in service and serves calls
case_n=0
refused() {
	label=$1
	file=$2
	reason=$3
	case_n=$((case_n + 1))
	before=$(refusals_of mod)
	if [ -n "${4:-}" ]; then
		install_mode "$file" mod "$4"
	else
		plugin "$file" mod
	fi
	if wait_until "the refusal of $label" more_refusals mod "$before"; then
		ok 0 "$label is refused"
	else
		ok 1 "$label is refused"
	fi
	line=$(grep -- "refused $T/plugins/mod\.so: " "$T/host.log" | tail -n +"$((before + 1))" | head -1)
	echo "# $label: ${line#* cagehost }"
	contains "$label: the reason is logged" "$line" "mod.so: $reason"
	contains "$label: the good version stays in service" "$line" "; mod@$good stays in service"
	equal "$label: mod.echo still replies 200" \
		"$(status POST /v1/call/mod/echo "still-$case_n")" 200
	equal "$label: and with the good version's reply" "$(body)" "still-$case_n"
	check "$label: the host is alive" host_alive
}

size=$(wc -c < "$PLUGINS/echo.so")
: > "$T/empty"
printf 'this is not a plugin\n' > "$T/text"
for n in 100 1000 $((size / 2)) $((size - 1)); do
	head -c "$n" "$PLUGINS/echo.so" > "$T/trunc.$n"
done

refused "an empty file" "$T/empty" "not an ELF file (0 bytes)"
refused "a text file" "$T/text" "not an ELF file (21 bytes)"
for n in 100 1000 $((size / 2)) $((size - 1)); do
	refused "echo.so truncated to $n bytes" "$T/trunc.$n" "truncated: "
done
refused "a module built for another ABI" "$TPLUGINS/wrongabi.so" \
	"built for ABI 999"
refused "a module without a descriptor" "$TPLUGINS/nodesc.so" \
	"no 'cage_module' descriptor"
refused "a descriptor with NULL version and methods" "$TPLUGINS/nullfields.so" \
	"version string '(null)' is not valid ([A-Za-z0-9_.-], 1 to 32 characters"
refused "a method table with a name twice" "$TPLUGINS/dupmethod.so" \
	"method run is listed twice (#1 and #3)"
refused "a module whose constructor crashes" "$TPLUGINS/badctor.so" \
	"worker killed by SIGSEGV in loading mod"
refused "a module whose constructor hangs" "$TPLUGINS/hangctor.so" \
	"attempt timed out after 10000 ms (worker killed) in loading mod"
refused "an object file (ET_REL)" "$TPLUGINS/crashy_la-crashy.o" \
	"not a shared object (ELF type 1)"
refused "a PIE executable (/bin/true)" /bin/true \
	"cannot load: "
if printf 'int main(void) { return 0; }\n' > "$T/exe.c" &&
	${CC:-cc} -no-pie -o "$T/exe" "$T/exe.c" 2>/dev/null; then
	refused "a non-PIE executable (ET_EXEC)" "$T/exe" \
		"not a shared object (ELF type 2, an executable)"
else
	echo "# no C compiler for a non-PIE executable; that case is left out"
fi
# the good file itself, but writable by others: refused on its mode
refused "a file with mode 666" "$PLUGINS/echo.so" \
	"file is writable by group or others (mode 666)" 666
equal "GET /v1/modules meanwhile is 200" "$(status GET /v1/modules)" 200
contains "it shows mod loaded, and why the file now there was refused" "$(body)" \
	'"state": "loaded", "version": "'"$good"'", "methods": ["echo", "upper"'
contains "and why the file now there was refused" "$(body)" \
	'"refused": "file is writable by group or others (mode 666)"'
contains "as does cagectl modules" "$("$CAGECTL" modules)" \
	"mod  $good  echo upper"

# symbolic links in a loop where mod.so was (mod.so -> .loop -> mod.so):
# not a file the host can look at, so refused, with mod kept in service
# (it used to be taken for a removed file, and mod for gone).  The link is
# made elsewhere and moved in: mv refuses a source that resolves to its
# target
before=$(refusals_of mod)
mkdir "$T/staging"
ln -s mod.so "$T/plugins/.loop"
ln -s .loop "$T/staging/mod.so"
mv "$T/staging/mod.so" "$T/plugins/mod.so"
wait_until "the refusal of a symbolic link loop" more_refusals mod "$before"
ok $? "a loop of symbolic links as mod.so is refused"
contains "with the reason, and mod@$good stays in service" \
	"$(grep -- "refused $T/plugins/mod\.so: " "$T/host.log" | tail -1)" \
	"mod.so: cannot stat: Too many levels of symbolic links; mod@$good stays in service"
for n in 1 2 3; do
	equal "mod.echo still replies 200 (call $n)" "$(status POST /v1/call/mod/echo loop)" 200
done
equal "the refusal is logged once, for all those calls" \
	"$(grep -c -- "mod.so: cannot stat" "$T/host.log")" 1
plugin "$PLUGINS/echo.so" mod

if grep -q "replaced mod@" "$T/host.log"; then
	ok 1 "no bad file ever replaced mod"
else
	ok 0 "no bad file ever replaced mod"
fi
equal "no bad file reached a worker as mod" \
	"$(status POST /v1/call/mod/upper last)" 200
equal "mod is still the good echo" "$(body)" "LAST"

# a good new version after all the bad ones is taken
plugin "$TPLUGINS_V2/flaky.so" mod
if wait_until "mod to be replaced" log_has "replaced mod@$good with mod@2"; then
	ok 0 "a good file after the bad ones replaces mod@$good"
else
	ok 1 "a good file after the bad ones replaces mod@$good"
fi
equal "the new mod serves its method" "$(status POST /v1/call/mod/work x)" 200

# a file whose name cannot be a module name is not a module: said in the
# log; a dot file is left alone without a word (it may be a file being
# staged), and is seen before the other
install -m 644 "$PLUGINS/echo.so" "$T/plugins/.staging.so"
install -m 644 "$PLUGINS/echo.so" "$T/plugins/.my mod.tmp"
mv "$T/plugins/.my mod.tmp" "$T/plugins/my mod.so"
bad_name_logged() { log_has "ignored $T/plugins/my mod.so: 'my mod' is not a module name"; }
wait_until "the bad file name to be logged" bad_name_logged
ok $? "a module file named 'my mod.so' is ignored, with a log line saying why"
equal "the dot file .staging.so is ignored without a word" "$(log_count "staging")" 0

# a bad first version of a new module: the module stays unavailable
before=$(refusals_of fresh)
plugin "$TPLUGINS/wrongabi.so" fresh
if wait_until "the refusal of fresh" more_refusals fresh "$before"; then
	ok 0 "a bad first version of module fresh is refused"
else
	ok 1 "a bad first version of module fresh is refused"
fi
contains "and the log says fresh has no good version" \
	"$(grep -- "refused $T/plugins/fresh\.so: " "$T/host.log" | tail -1)" \
	"built for ABI 999, host speaks ABI 1; module fresh has no good version"
# the file is there: a caller is told why it is not in service, not that
# there is no such module
equal "a sync call to fresh is 502" "$(status POST /v1/call/fresh/work x)" 502
contains "and says why fresh has no good version" "$(body)" \
	'"error": "module fresh has no good version: fresh.so was refused: built for ABI 999, host speaks ABI 1'
id=$(enqueue default fresh work x)
wait_until "an attempt of a queued call to fresh" attempts_at_least "$id" 1
contains "a queued call to fresh waits with that reason" "$(field "$id" last_error)" \
	"module fresh has no good version: fresh.so was refused: built for ABI 999"
rm "$T/plugins/fresh.so"
gone() { [ "$(status POST /v1/call/fresh/work x)" = 404 ]; }
wait_until "fresh.so to be gone" gone
ok $? "once the refused file is removed, a sync call to fresh is 404"
contains "saying there is no module fresh" "$(body)" '"error": "no module fresh"'
before=$(refusals_of fresh2)
plugin "$T/empty" fresh2
wait_until "the refusal of fresh2" more_refusals fresh2 "$before"
ok $? "an empty first version of module fresh2 is refused"
equal "a sync call to fresh2 is 502" "$(status POST /v1/call/fresh2/work x)" 502
contains "and says why" "$(body)" "module fresh2 has no good version: fresh2.so was refused: "

# a new module whose file is a loop of symbolic links: there, so a caller
# is told why it is not in service (its file event made it known)
ln -s loop.so "$T/plugins/.loopn"
ln -s .loopn "$T/staging/loop.so"
mv "$T/staging/loop.so" "$T/plugins/loop.so"
refused_loop() { [ "$(status POST /v1/call/loop/echo x)" = 502 ]; }
wait_until "the refusal of loop.so" refused_loop
ok $? "a sync call to a new module whose file is a loop of links is 502"
contains "saying why" "$(body)" "loop.so was refused: cannot stat: Too many levels of symbolic links"

# a good module with the most methods there may be (256), each with the
# longest name, with a '.' in it: their list is longer than the worker
# reports to the host (it wrote past its buffer), and a '.' inside a name
# is fine (the host took one for a malformed answer, and refused the module)
plugin "$TPLUGINS/manymethods.so" manymethods
wait_until "manymethods to load" log_has "loaded manymethods@"
ok $? "a module with 256 methods of 64 bytes, named m000.___..., loads"
last=m255.$(printf '%059d' 0 | tr 0 _)
equal "its last method serves" "$(status POST "/v1/call/manymethods/$last")" 200
equal "and answers its name" "$(body)" "$last"

# what GET /v1/modules and cagectl modules tell of each module, in name
# order: fresh's file was removed, so it is not listed
equal "GET /v1/modules with an option is 400" "$(status GET "/v1/modules?state=loaded")" 400
contains "naming it" "$(body)" "unknown option state; /v1/modules takes none"
equal "GET /v1/modules is 200" "$(status GET /v1/modules)" 200
mods=$(body)
echo "# $mods"
contains "fresh2 is listed as refused, with the reason" "$mods" \
	'{"name": "fresh2", "state": "refused", "version": null, "methods": [], "checking": false, "refused": "not an ELF file (0 bytes)'
contains "loop too" "$mods" '{"name": "loop", "state": "refused", "version": null'
contains "manymethods' methods as far as they fit in 2 KB, then a mark" "$mods" \
	'"m030.'"$(printf '%059d' 0 | tr 0 _)"'", "..."], "checking": false'
contains "mod is listed as loaded, with its version and its methods" "$mods" \
	'{"name": "mod", "state": "loaded", "version": "2+'
contains "its methods as a list" "$mods" '"methods": ["work", "fail", "gate"], "checking": false, "refused": null}'
case $mods in
*'"name": "fresh"'*) ok 1 "fresh, whose file was removed, is not listed" ;;
*) ok 0 "fresh, whose file was removed, is not listed" ;;
esac
case $mods in
*'"fresh2"'*'"loop"'*'"manymethods"'*'"mod"'*) ok 0 "the modules come in name order" ;;
*) ok 1 "the modules come in name order" ;;
esac
text=$("$CAGECTL" modules)
echo "$text" | sed 's/^/# /'
contains "cagectl modules: a line for mod, with its version and methods" "$text" \
	"mod  2+"
contains "and one for fresh2, with the reason" "$text" \
	"fresh2  -  refused  fresh2.so was refused: not an ELF file (0 bytes)"

check "the host process is still alive" host_alive

done_testing

# tests/fuzz/local.mk - libFuzzer targets (see tests/fuzz/README); included
# from the top-level Makefile.am.
#
# The project builds with gcc, and libFuzzer needs clang, so the targets are
# not automake programs: `make check-fuzz` compiles the host's library
# sources (host_libcagehost_la_SOURCES, i.e. host/*.c without main.c and
# cagectl.c) and each target directly with $(FUZZ_CC) and the sanitizers,
# then runs each target for FUZZ_SECONDS on its seed corpus, and fails if
# any of them finds a crash, a leak, undefined behaviour or a broken check.
# Without a clang that can link -fsanitize=fuzzer it says so and succeeds,
# except under CI=true, where build-aux/install-deps has installed clang and
# its absence is an error.
#
#   make check-fuzz                      20 s per target
#   make check-fuzz FUZZ_SECONDS=600     longer
#   make check-fuzz FUZZ_OPTIONS='-jobs=2 -workers=2'   any libFuzzer flags
#   make fuzz-targets                    build only (tests/fuzz/fuzz_*)
#
# New inputs found go to tests/fuzz/work/corpus_NAME (the seeds in
# $(srcdir)/tests/fuzz/corpus_NAME are never written); crashes go to
# tests/fuzz/artifacts/, the full output to tests/fuzz/fuzz_NAME.log.

FUZZ_CC = clang
FUZZ_SECONDS = 20
FUZZ_OPTIONS =
FUZZ_SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=undefined
# pattern-initialized locals: a read of an uninitialized byte on the stack
# (an unterminated string, say) becomes a read past its end that ASan sees
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -ftrivial-auto-var-init=pattern \
	$(FUZZ_SANITIZE)
FUZZ_CPPFLAGS = $(DEFS) $(AM_CPPFLAGS) -I$(top_builddir) -I$(top_srcdir)/host \
	$(LIBEVENT_CFLAGS)
FUZZ_LIBS = $(LIBEVENT_LIBS) $(BDB_LIBS) $(DL_LIBS) $(MATH_LIBS) -lm -lpthread -ldl
FUZZ_NAMES = config record http
FUZZ_BINS = tests/fuzz/fuzz_config tests/fuzz/fuzz_record tests/fuzz/fuzz_http
FUZZ_HOST_LIB = tests/fuzz/libcagehost-fuzz.a

EXTRA_DIST += \
	tests/fuzz/README \
	tests/fuzz/fuzz_config.c tests/fuzz/fuzz_record.c tests/fuzz/fuzz_http.c \
	tests/fuzz/config.dict tests/fuzz/record.dict tests/fuzz/http.dict \
	tests/fuzz/corpus_config tests/fuzz/corpus_record tests/fuzz/corpus_http

# The host's parts, instrumented for coverage (fuzzer-no-link) and the
# sanitizers; every header is a prerequisite too, since the list has them,
# and Makefile, so that changed flags rebuild them.
$(FUZZ_HOST_LIB): $(host_libcagehost_la_SOURCES) Makefile
	@mkdir -p tests/fuzz/obj
	@rm -f tests/fuzz/obj/*.o $@
	@for f in $(host_libcagehost_la_SOURCES); do \
	  case $$f in *.c) ;; *) continue ;; esac; \
	  echo "  FUZZCC   $$f"; \
	  $(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	    -c $(srcdir)/$$f -o tests/fuzz/obj/`basename $$f .c`.o || exit 1; \
	done
	$(AM_V_at)$(AR) cr $@ tests/fuzz/obj/*.o

tests/fuzz/fuzz_config: tests/fuzz/fuzz_config.c $(FUZZ_HOST_LIB)
	$(AM_V_GEN)$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(WARN_CFLAGS) -fsanitize=fuzzer \
	  $(srcdir)/tests/fuzz/fuzz_config.c $(FUZZ_HOST_LIB) $(FUZZ_LIBS) -o $@
tests/fuzz/fuzz_record: tests/fuzz/fuzz_record.c $(FUZZ_HOST_LIB)
	$(AM_V_GEN)$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(WARN_CFLAGS) -fsanitize=fuzzer \
	  $(srcdir)/tests/fuzz/fuzz_record.c $(FUZZ_HOST_LIB) $(FUZZ_LIBS) -o $@
tests/fuzz/fuzz_http: tests/fuzz/fuzz_http.c $(FUZZ_HOST_LIB)
	$(AM_V_GEN)$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(WARN_CFLAGS) -fsanitize=fuzzer \
	  $(srcdir)/tests/fuzz/fuzz_http.c $(FUZZ_HOST_LIB) $(FUZZ_LIBS) -o $@

fuzz-targets: $(FUZZ_BINS)

# Runs every target for FUZZ_SECONDS; prints each one's final line and, for
# a failure, the report (the whole output is in tests/fuzz/fuzz_NAME.log).
fuzz-run: $(FUZZ_BINS) plugins/echo.la
	@mkdir -p tests/fuzz/artifacts; \
	if test -f plugins/.libs/echo.so; then \
	  CAGE_FUZZ_ECHO='$(abs_top_builddir)/plugins/.libs/echo.so'; \
	  export CAGE_FUZZ_ECHO; \
	fi; \
	status=0; \
	for t in $(FUZZ_NAMES); do \
	  mkdir -p tests/fuzz/work/corpus_$$t; \
	  echo "check-fuzz: fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  if tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=30 \
	       -print_final_stats=1 -dict=$(srcdir)/tests/fuzz/$$t.dict \
	       -artifact_prefix=tests/fuzz/artifacts/fuzz_$$t- $(FUZZ_OPTIONS) \
	       tests/fuzz/work/corpus_$$t $(srcdir)/tests/fuzz/corpus_$$t \
	       > tests/fuzz/fuzz_$$t.log 2>&1; then \
	    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^stat::average_exec_per_sec|^fuzz_http: [0-9]+ inputs' \
	      tests/fuzz/fuzz_$$t.log | sed 's/^/  /'; \
	  else \
	    status=1; \
	    echo "check-fuzz: FAIL: fuzz_$$t (reproducer in tests/fuzz/artifacts/):"; \
	    $(AWK) '/==ERROR|ERROR: libFuzzer|^fuzz_[a-z]+: [^0-9]/ { on = 1 } \
	      /Shadow bytes around/ { skip = 1 } /ABORTING/ { skip = 0 } \
	      on && !skip && !/^#[0-9]|Test unit written/ { print "  " $$0 }' tests/fuzz/fuzz_$$t.log | \
	      head -n 60; \
	    grep 'Test unit written' tests/fuzz/fuzz_$$t.log | sed 's/^/  /'; \
	  fi; \
	done; \
	exit $$status

check-fuzz:
	@mkdir -p tests/fuzz; \
	echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
	  > tests/fuzz/probe.c; \
	if $(FUZZ_CC) -fsanitize=fuzzer tests/fuzz/probe.c -o tests/fuzz/probe >/dev/null 2>&1; then \
	  rm -f tests/fuzz/probe.c tests/fuzz/probe; \
	  $(MAKE) $(AM_MAKEFLAGS) fuzz-run; \
	else \
	  rm -f tests/fuzz/probe.c tests/fuzz/probe; \
	  if test "$$CI" = true; then \
	    echo "check-fuzz: $(FUZZ_CC) cannot build libFuzzer targets (-fsanitize=fuzzer);" \
	      "CI needs clang and libclang-rt-14-dev (build-aux/install-deps)" >&2; \
	    exit 1; \
	  fi; \
	  echo "check-fuzz: clang not found; skipped"; \
	fi

fuzz-clean:
	rm -rf tests/fuzz/obj tests/fuzz/work tests/fuzz/artifacts $(FUZZ_HOST_LIB) $(FUZZ_BINS) \
	  tests/fuzz/fuzz_*.log

.PHONY: check-fuzz fuzz-targets fuzz-run fuzz-clean

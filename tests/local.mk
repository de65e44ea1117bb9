# tests/local.mk - unit tests (Check) and end-to-end tests (shell scripts
# that run the real cagehost); included from the top-level Makefile.am.

TEST_EXTENSIONS = .test .sh
TEST_LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) $(top_srcdir)/build-aux/tap-driver.sh
SH_LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) $(top_srcdir)/build-aux/tap-driver.sh

if HAVE_CHECK
check_PROGRAMS += tests/unit/units.test
tests_unit_units_test_SOURCES = \
	tests/unit/check_main.c tests/unit/check_retry.c tests/unit/check_parse.c \
	tests/unit/check_record.c tests/unit/check_store.c tests/unit/check_log.c \
	tests/unit/check_http_guard.c
tests_unit_units_test_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_units_test_LDADD = host/libcagehost.la $(CHECK_LIBS)
TESTS += tests/unit/units.test
endif

# a client holding many connections open (tests/e2e/auth_limits.sh)
check_PROGRAMS += tests/e2e/holdconns
tests_e2e_holdconns_SOURCES = tests/e2e/holdconns.c
# a client that closes its sending side after its request (auth_limits.sh)
check_PROGRAMS += tests/e2e/halfclose
tests_e2e_halfclose_SOURCES = tests/e2e/halfclose.c

E2E_TESTS = \
	tests/e2e/sync_calls.sh \
	tests/e2e/crashing_plugins.sh \
	tests/e2e/bad_plugins.sh \
	tests/e2e/plugin_read_again.sh \
	tests/e2e/kill9_restart.sh \
	tests/e2e/expiry.sh \
	tests/e2e/retention.sh \
	tests/e2e/cage_to_cage.sh \
	tests/e2e/relay_edges.sh \
	tests/e2e/deliveries.sh \
	tests/e2e/delay.sh \
	tests/e2e/graceful_stop.sh \
	tests/e2e/reload_fix.sh \
	tests/e2e/db_dump.sh \
	tests/e2e/log_ahead.sh \
	tests/e2e/hostile_plugins.sh \
	tests/e2e/auth_limits.sh \
	tests/e2e/sdk_example.sh \
	tests/e2e/backup.sh \
	tests/e2e/dead_calls.sh \
	tests/e2e/dead_retention.sh \
	tests/e2e/removed_queue.sh \
	tests/e2e/retry_now.sh \
	tests/e2e/queue_concurrency.sh
TESTS += $(E2E_TESTS)
EXTRA_DIST += $(E2E_TESTS) tests/lib.sh tests/shm.sh

AM_TESTS_ENVIRONMENT = \
	CK_TAP_LOG_FILE_NAME=- CK_VERBOSITY=silent \
	CAGE_TEST_PLUGIN='$(abs_top_builddir)/plugins/.libs/echo.so' \
	CAGE_BUILD='$(abs_top_builddir)' CAGE_SRC='$(abs_top_srcdir)' \
	TMPDIR="$${TMPDIR:-/tmp}"; \
	export CK_TAP_LOG_FILE_NAME CK_VERBOSITY CAGE_TEST_PLUGIN CAGE_BUILD CAGE_SRC TMPDIR;

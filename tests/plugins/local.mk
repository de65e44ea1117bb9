# tests/plugins/local.mk - modules for the end-to-end tests; included from
# the top-level Makefile.am.  Built by `make check` only, never installed:
# -rpath /nowhere makes libtool build real shared objects, which the tests
# copy from tests/plugins/.libs/NAME.so (and v1/.libs, v2/.libs for flaky)
# into a temporary plugin directory.
#
# Module name = file name: noabi.c builds wrongabi.so and always_fail.c
# builds alwaysfail.so.  flaky.c is compiled twice (versions 1 and 2), so
# every target sets its own CPPFLAGS.

cage_test_plugin_cppflags = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk
cage_test_plugin_ldflags = -module -avoid-version -shared -no-undefined \
	-rpath /nowhere

check_LTLIBRARIES += \
	tests/plugins/v1/flaky.la \
	tests/plugins/v2/flaky.la \
	tests/plugins/crashy.la \
	tests/plugins/wrongabi.la \
	tests/plugins/nodesc.la \
	tests/plugins/badctor.la \
	tests/plugins/hangctor.la \
	tests/plugins/nullfields.la \
	tests/plugins/dupmethod.la \
	tests/plugins/manymethods.la \
	tests/plugins/alwaysfail.la \
	tests/plugins/relayer.la

tests_plugins_v1_flaky_la_SOURCES = tests/plugins/flaky.c
tests_plugins_v1_flaky_la_CPPFLAGS = $(cage_test_plugin_cppflags) \
	-DFLAKY_VERSION=1
tests_plugins_v1_flaky_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_v2_flaky_la_SOURCES = tests/plugins/flaky.c
tests_plugins_v2_flaky_la_CPPFLAGS = $(cage_test_plugin_cppflags) \
	-DFLAKY_VERSION=2
tests_plugins_v2_flaky_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_crashy_la_SOURCES = tests/plugins/crashy.c
tests_plugins_crashy_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_crashy_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_wrongabi_la_SOURCES = tests/plugins/noabi.c
tests_plugins_wrongabi_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_wrongabi_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_nodesc_la_SOURCES = tests/plugins/nodesc.c
tests_plugins_nodesc_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_nodesc_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_badctor_la_SOURCES = tests/plugins/badctor.c
tests_plugins_badctor_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_badctor_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_hangctor_la_SOURCES = tests/plugins/hangctor.c
tests_plugins_hangctor_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_hangctor_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_dupmethod_la_SOURCES = tests/plugins/dupmethod.c
tests_plugins_dupmethod_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_dupmethod_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_manymethods_la_SOURCES = tests/plugins/manymethods.c
tests_plugins_manymethods_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_manymethods_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_nullfields_la_SOURCES = tests/plugins/nullfields.c
tests_plugins_nullfields_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_nullfields_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_alwaysfail_la_SOURCES = tests/plugins/always_fail.c
tests_plugins_alwaysfail_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_alwaysfail_la_LDFLAGS = $(cage_test_plugin_ldflags)

check_LTLIBRARIES += tests/plugins/hostile.la
tests_plugins_hostile_la_SOURCES = tests/plugins/hostile.c
tests_plugins_hostile_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_hostile_la_LDFLAGS = $(cage_test_plugin_ldflags)

tests_plugins_relayer_la_SOURCES = tests/plugins/relayer.c
tests_plugins_relayer_la_CPPFLAGS = $(cage_test_plugin_cppflags)
tests_plugins_relayer_la_LDFLAGS = $(cage_test_plugin_ldflags)

# plugins/local.mk - the example modules; included from the top-level
# Makefile.am (non-recursive build).
#
# echo is installed into $(plugindir) as echo.so.  billing 1.0 (with its
# deliberate bug) and 1.1, the fixed build of the same source, serve the
# README walk-through and the tests and are not installed: -rpath makes
# libtool build real shared objects anyway, at plugins/.libs/billing.so and
# plugins/fixed/.libs/billing.so.
#
# billing.c is compiled twice, so every target sets its own CPPFLAGS (which
# gives each object its own name); per-target flags replace AM_CPPFLAGS,
# hence the explicit $(AM_CPPFLAGS).

plugin_LTLIBRARIES += plugins/echo.la
noinst_LTLIBRARIES += plugins/billing.la plugins/fixed/billing.la

plugins_echo_la_SOURCES = plugins/echo.c
plugins_echo_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk
plugins_echo_la_LDFLAGS = -module -avoid-version -shared -no-undefined

plugins_billing_la_SOURCES = plugins/billing.c
plugins_billing_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk \
	-DBILLING_FIXED=0
plugins_billing_la_LDFLAGS = -module -avoid-version -shared -no-undefined \
	-rpath /nowhere

plugins_fixed_billing_la_SOURCES = plugins/billing.c
plugins_fixed_billing_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk \
	-DBILLING_FIXED=1
plugins_fixed_billing_la_LDFLAGS = -module -avoid-version -shared \
	-no-undefined -rpath /nowhere

# plugins/local.mk - the example modules; included from the top-level
# Makefile.am (non-recursive build).
#
# echo and billing 1.0 are installed into $(plugindir) as echo.so and
# billing.so.  billing 1.1, the fixed build of the same source used by the
# README walk-through and the tests, is not installed: -rpath makes libtool
# build a real shared object anyway, at plugins/fixed/.libs/billing.so.
#
# billing.c is compiled twice, so every target sets its own CPPFLAGS (which
# gives each object its own name); per-target flags replace AM_CPPFLAGS,
# hence the explicit $(AM_CPPFLAGS).

plugin_LTLIBRARIES += plugins/echo.la plugins/billing.la
noinst_LTLIBRARIES += plugins/fixed/billing.la

plugins_echo_la_SOURCES = plugins/echo.c
plugins_echo_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk
plugins_echo_la_LDFLAGS = -module -avoid-version -shared -no-undefined

plugins_billing_la_SOURCES = plugins/billing.c
plugins_billing_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk \
	-DBILLING_FIXED=0
plugins_billing_la_LDFLAGS = -module -avoid-version -shared -no-undefined

plugins_fixed_billing_la_SOURCES = plugins/billing.c
plugins_fixed_billing_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/sdk \
	-DBILLING_FIXED=1
plugins_fixed_billing_la_LDFLAGS = -module -avoid-version -shared \
	-no-undefined -rpath /nowhere

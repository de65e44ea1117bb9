# tests/bench/local.mk - the benchmark against beanstalkd (tests/bench/README);
# included from the top-level Makefile.am.  Not part of `make check`:
# loadgen and fsyncrate are EXTRA_PROGRAMS, built only by `make bench`,
# which also builds the host, the example plugins and the flaky test
# plugins (check_LTLIBRARIES), then runs every row on loopback.  Settings
# go through the environment: `QUICK=1 make bench`, `RUNS=5 make bench`.

EXTRA_PROGRAMS = tests/bench/loadgen tests/bench/fsyncrate

tests_bench_loadgen_SOURCES = tests/bench/loadgen.c
tests_bench_loadgen_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_bench_loadgen_LDADD = $(LIBEVENT_LIBS)

tests_bench_fsyncrate_SOURCES = tests/bench/fsyncrate.c

EXTRA_DIST += tests/bench/run.sh tests/bench/compare.sh tests/bench/README

bench: all $(check_LTLIBRARIES) $(EXTRA_PROGRAMS)
	CAGE_BUILD='$(abs_top_builddir)' CAGE_SRC='$(abs_top_srcdir)' \
	BENCH_BIN='$(abs_top_builddir)/tests/bench' \
	  bash '$(abs_top_srcdir)/tests/bench/run.sh'

clean-local: clean-bench
clean-bench:
	rm -f $(EXTRA_PROGRAMS) tests/bench/results.csv

.PHONY: bench clean-bench

# tests/faults/local.mk - the slow fault-injection tests (kill -9 loops, a
# full disk, damaged databases, db_dump on a live host); included from the
# top-level Makefile.am.  They are not part of `make check`:
#
#     make check-faults                                  # all of them
#     make check TESTS=tests/faults/crash_loop.sh        # one
#
# Each is a TAP script (the .sh driver of tests/local.mk) bounded to about
# 90 s on 2 cores.  disk_full.sh mounts a tmpfs and needs root (it skips
# otherwise).  CI should run `make check-faults`.

FAULT_TESTS = \
	tests/faults/crash_loop.sh \
	tests/faults/disk_full.sh \
	tests/faults/corrupt_db.sh \
	tests/faults/live_inspection.sh
EXTRA_DIST += $(FAULT_TESTS) tests/faults/faults.sh

check-faults: all
	$(MAKE) $(AM_MAKEFLAGS) check TESTS="$(FAULT_TESTS)"
.PHONY: check-faults

# tests/faults/local.mk - (placeholder; filled in by the faults work)

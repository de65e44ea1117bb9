# tests/fuzz/local.mk - (placeholder; filled in by the fuzz work)

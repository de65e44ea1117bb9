# shm.sh - sourced by tests/lib.sh and tests/bench/run.sh.
#
# release_shm DIR: removes the System V shared memory of every Berkeley DB
# environment under DIR.  A host killed with -9 (or refused on damaged
# data) leaves its regions behind; its next start on the same data_dir
# would reuse them, but tests delete the directory.  data_dir/cagehost.shm
# holds the regions' base key; each region has the next key.
release_shm() {
	for f in $(find "$1" -name cagehost.shm 2>/dev/null); do
		base=$(cat "$f" 2>/dev/null) || continue
		for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
			ipcrm -M $((base + i)) 2>/dev/null
		done
	done
}

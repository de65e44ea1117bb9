/*
 * names.h - what a module, method or queue name may be.  Names end up in
 * file paths (module = file name), URLs and on-disk records, so they are
 * restricted to [A-Za-z0-9_.-], 1..64 bytes, not starting with '.'.
 */
#ifndef CAGEHOST_NAMES_H
#define CAGEHOST_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define NAME_MAX_LEN 64

/* True when the len bytes at name form a valid name. */
bool name_is_valid(const char *name, size_t len);

/*
 * Names met, to tell something about each one once (a queue or cage the
 * config does not name): at most NAME_SET_MAX are remembered.  Zeroed to
 * start.
 */
#define NAME_SET_MAX 16
struct name_set {
	char names[NAME_SET_MAX][NAME_MAX_LEN + 1];
	int count;
	bool full;		/* a name did not fit (said once) */
};

enum name_set_seen {
	NAME_SEEN,		/* told before: say nothing */
	NAME_NEW,		/* remembered now: tell about it */
	NAME_SET_FULL		/* new, and no room: tell that others go untold (once) */
};

enum name_set_seen name_set_add(struct name_set *set, const char *name);

#endif

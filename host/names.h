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

#endif

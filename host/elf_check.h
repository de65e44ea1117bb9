/*
 * elf_check.h - is a byte buffer a complete shared object for this
 * machine?  Run on every new plugin file before any process loads it:
 * dlopen of a truncated file can crash inside the loader (SIGBUS), and a
 * file that is still being written looks exactly like a truncated one.
 */
#ifndef CAGEHOST_ELF_CHECK_H
#define CAGEHOST_ELF_CHECK_H

#include <stddef.h>

/*
 * Returns 0 when data (len bytes) is an ELF shared object of the host's
 * class, byte order and machine whose headers, segments and section table
 * all lie inside the buffer.  Otherwise -1 and a reason in why ("not an
 * ELF file", "truncated: section table ends at byte 19760 of 19000", ...).
 */
int elf_check_shared_object(const void *data, size_t len, char *why, size_t why_size);

#endif

/*
 * write_all.h - writing a whole buffer to a descriptor: a short write is
 * continued and an interrupted one retried, so that a failure has its own
 * errno.  Shared by the host (plugin copies, backups) and cagectl.
 */
#ifndef CAGEHOST_WRITE_ALL_H
#define CAGEHOST_WRITE_ALL_H

#include <stddef.h>

/* Writes all len bytes of data to fd: 0, or -1 with errno. */
int write_all(int fd, const void *data, size_t len);

#endif

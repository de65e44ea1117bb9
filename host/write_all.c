/*
 * write_all.c - writing a whole buffer to a descriptor (see write_all.h).
 */
#include <errno.h>
#include <unistd.h>

#include "write_all.h"

int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

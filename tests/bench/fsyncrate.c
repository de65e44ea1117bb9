/*
 * fsyncrate.c - how many small durable writes per second the disk takes.
 *
 * Part of the benchmark (tests/bench/README): the reference of row 1.  Two
 * loops of RECORD_BYTES-byte writes, each followed by fdatasync(), on a
 * fresh file in the given directory (the file system the benchmark's data
 * lives on), for SECONDS each:
 *
 *   rate         overwriting a preallocated file: no metadata to journal,
 *                so this is the disk's ceiling (beanstalkd's binlog files
 *                are preallocated);
 *   append_rate  appending: every sync also journals the new file size
 *                (Berkeley DB's log files grow this way).
 *
 * Prints one line: rate=N append_rate=N seconds=S.  The file is removed.
 * Usage: fsyncrate DIR [SECONDS]   (SECONDS defaults to 2)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* fdatasync */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BYTES 100
#define PREALLOC_BYTES (4L << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Writes and syncs records for duration_s, appending or overwriting from the
 * start of the file.  Returns syncs per second, or -1 with errno set.
 */
static double sync_loop(int fd, bool append, double duration_s)
{
	char record[RECORD_BYTES];
	double start = now_s(), t = start;
	off_t off = 0;
	long n = 0;

	memset(record, 'x', sizeof record);
	record[sizeof record - 1] = '\n';
	while (t - start < duration_s) {
		ssize_t w = append ? write(fd, record, sizeof record)
				   : pwrite(fd, record, sizeof record, off);

		if (w != (ssize_t)sizeof record || fdatasync(fd) < 0)
			return -1;
		off = (off + RECORD_BYTES) % (PREALLOC_BYTES - RECORD_BYTES);
		n++;
		t = now_s();
	}
	return (double)n / (t - start);
}

/* Creates a file of PREALLOC_BYTES zeros, on disk.  Returns an fd or -1. */
static int open_prealloc(const char *path)
{
	static const char zeros[65536];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	for (long done = 0; done < PREALLOC_BYTES; done += (long)sizeof zeros) {
		if (write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros)
			goto fail;
	}
	if (fsync(fd) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

static double measure(const char *path, bool append, double duration_s)
{
	int fd = append ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600)
			: open_prealloc(path);
	double rate;

	if (fd < 0)
		return -1;
	rate = sync_loop(fd, append, duration_s);
	close(fd);
	unlink(path);
	return rate;
}

int main(int argc, char **argv)
{
	char path[4096];
	double duration_s = argc > 2 ? atof(argv[2]) : 2.0, over, append;

	if (argc < 2 || argc > 3 || duration_s <= 0) {
		fprintf(stderr, "usage: fsyncrate DIR [SECONDS]\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/fsyncrate.%ld", argv[1], (long)getpid());
	over = measure(path, false, duration_s);
	append = over < 0 ? -1 : measure(path, true, duration_s);
	if (over < 0 || append < 0) {
		fprintf(stderr, "fsyncrate: %s: %s\n", path, strerror(errno));
		unlink(path);
		return 1;
	}
	printf("rate=%.0f append_rate=%.0f seconds=%.1f\n", over, append, duration_s);
	return 0;
}

/*
 * fsyncrate.c - how many small durable writes per second the disk takes.
 *
 * Part of the benchmark (tests/bench/README): the reference for row 1.
 * Appends RECORD_BYTES bytes and calls fdatasync(), in a loop, for a given
 * number of seconds, on a fresh file in the given directory (the directory
 * the benchmark's data lives on), then removes the file.  Prints one line:
 *
 *     rate=FSYNCS_PER_S count=N elapsed_s=S
 *
 * Usage: fsyncrate DIR [SECONDS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BYTES 100

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes and syncs records to fd for duration_s.  Returns the count, or -1. */
static long sync_loop(int fd, double duration_s, double *elapsed_s)
{
	char record[RECORD_BYTES];
	double start = now_s(), t = start;
	long n = 0;

	memset(record, 'x', sizeof record);
	record[sizeof record - 1] = '\n';
	while (t - start < duration_s) {
		if (write(fd, record, sizeof record) != (ssize_t)sizeof record ||
		    fdatasync(fd) < 0)
			return -1;
		n++;
		t = now_s();
	}
	*elapsed_s = t - start;
	return n;
}

int main(int argc, char **argv)
{
	char path[4096];
	double duration_s = argc > 2 ? atof(argv[2]) : 2.0, elapsed_s = 0;
	long n;
	int fd;

	if (argc < 2 || argc > 3 || duration_s <= 0) {
		fprintf(stderr, "usage: fsyncrate DIR [SECONDS]\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/fsyncrate.%ld", argv[1], (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (fd < 0) {
		fprintf(stderr, "fsyncrate: %s: %s\n", path, strerror(errno));
		return 1;
	}
	n = sync_loop(fd, duration_s, &elapsed_s);
	if (n < 0)
		fprintf(stderr, "fsyncrate: %s: %s\n", path, strerror(errno));
	close(fd);
	unlink(path);
	if (n < 0)
		return 1;
	printf("rate=%.0f count=%ld elapsed_s=%.3f\n", n / elapsed_s, n, elapsed_s);
	return 0;
}

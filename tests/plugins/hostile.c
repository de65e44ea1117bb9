/*
 * hostile.c - test module "hostile": handlers that attack the worker they
 * run in, or the host through it, rather than merely crashing.  The host
 * must contain each one (worker process group, rlimits, reply limit,
 * timeouts) and keep serving:
 *   fork      forks a child that keeps the host's channel (fd 3) open and
 *             sleeps forever; replies "forked PID" (the child's pid)
 *   closefds  closes every fd from 3 to 1023 (fd 3 is the host's channel)
 *             and returns OK
 *   hog       allocates and touches 64 MiB chunks until malloc fails, frees
 *             them and returns RETRY "out of memory after N MiB" (or is
 *             killed on the way); stops at 2 GiB, so a missing limit shows as
 *             "allocated 2048 MiB without running out of memory"
 *   bigreply  sets a 100 MiB reply; when cage_reply refuses it, FAIL with
 *             "reply refused"
 *   overrun   burns 5 s of CPU, then returns OK (for a 1 s attempt_timeout)
 *   cpuburn   burns CPU forever (for worker_cpu_limit: SIGXCPU)
 *   spin      burns the number of milliseconds of CPU given as payload,
 *             then replies "spun N ms"
 *   maps      replies the writable shared mappings the worker has (paths,
 *             space-separated), or "none": what plugin code could scribble
 *             on that the host also uses
 *   stdio     prints to stdout and stderr (last, a line with control
 *             characters and no newline), waits 200 ms (the host has read
 *             it all by then), returns OK
 *   flood     prints 100,000 lines (more than a pipe holds), returns OK
 *   forge     logs "hostile says\nFORGED cagehost error: ..." (a newline
 *             to forge a line of the host's log), then fails with an error
 *             holding bytes that are not UTF-8 ("bad \xff\xfe bytes")
 *   leakfds   opens /dev/null until open() fails (kept in a static, like
 *             a cached connection), then replies "leaked N": the worker is
 *             left with no free descriptor for the next module it loads
 *   retire    writes on the host's channel (fd 3) the answer a worker gives
 *             when it ends before starting a job (WORKER_RETIRED), as if
 *             the job had not run, then sleeps forever: the host must not
 *             hand the call round its workers for ever, charging nothing
 *   thread    starts a thread that wakes every 100 us, forever, in this
 *             module's code (a background poller never stopped), and
 *             replies "thread started": unloading the module under it
 *             would crash the worker
 * and one well-behaved method:
 *   ok        replies "hostile ok"
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cage.h"

#define CHUNK ((size_t)64 << 20)
#define HOG_CAP_MIB ((size_t)2048)	/* spares the test machine */

static cage_outcome do_fork(cage_call *call)
{
	char text[64];
	pid_t pid = fork();

	if (pid < 0) {
		cage_error(call, "fork failed");
		return CAGE_RETRY;
	}
	if (pid == 0) {
		/* the child keeps every fd it inherited, the channel included */
		for (;;)
			pause();
	}
	snprintf(text, sizeof text, "forked %d", (int)pid);
	cage_reply_str(call, text);
	return CAGE_OK;
}

static cage_outcome closefds(cage_call *call)
{
	(void)call;
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	return CAGE_OK;
}

static cage_outcome hog(cage_call *call)
{
	void **chunk, **held = NULL;
	size_t mib = 0;
	int capped = 0;

	/* each chunk begins with a pointer to the one before */
	while ((chunk = malloc(CHUNK)) != NULL) {
		memset(chunk, 0xa5, CHUNK);
		*chunk = held;
		held = chunk;
		mib += CHUNK >> 20;
		if (mib >= HOG_CAP_MIB) {
			capped = 1;	/* no memory limit in force: stop anyway */
			break;
		}
	}
	while (held) {
		chunk = *held;
		free(held);
		held = chunk;
	}
	malloc_trim(0);	/* a chunk from the brk heap stays mapped otherwise */
	if (capped)
		cage_error(call, "allocated %zu MiB without running out of memory", mib);
	else
		cage_error(call, "out of memory after %zu MiB", mib);
	return CAGE_RETRY;
}

static cage_outcome bigreply(cage_call *call)
{
	size_t len = (size_t)100 << 20;
	char *data = malloc(len);
	int rc;

	if (!data) {
		cage_error(call, "reply refused (no memory for 100 MiB)");
		return CAGE_FAIL;
	}
	memset(data, 'x', len);
	rc = cage_reply(call, data, len);
	free(data);
	if (rc < 0) {
		cage_error(call, "reply refused");
		return CAGE_FAIL;
	}
	return CAGE_OK;
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void burn(double seconds)
{
	volatile unsigned long spins = 0;
	double until = cpu_seconds() + seconds;

	while (cpu_seconds() < until)
		for (int i = 0; i < 100000; i++)
			spins++;
}

static cage_outcome overrun(cage_call *call)
{
	(void)call;
	burn(5.0);
	return CAGE_OK;
}

static cage_outcome cpuburn(cage_call *call)
{
	volatile unsigned long spins = 0;

	(void)call;
	for (;;)
		spins++;
	return CAGE_RETRY;	/* not reached */
}

static cage_outcome spin(cage_call *call)
{
	const char *payload = cage_payload(call, NULL);
	long ms = strtol(payload, NULL, 10);
	char text[64];

	if (ms < 0 || ms > 60000) {
		cage_error(call, "spin: payload must be 0 to 60000 (ms)");
		return CAGE_FAIL;
	}
	burn((double)ms / 1000.0);
	snprintf(text, sizeof text, "spun %ld ms", ms);
	cage_reply_str(call, text);
	return CAGE_OK;
}

static cage_outcome maps(cage_call *call)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096], found[4096] = "";
	size_t used = 0;

	if (!f) {
		cage_error(call, "cannot read /proc/self/maps");
		return CAGE_FAIL;
	}
	while (fgets(line, sizeof line, f)) {
		char range[128], perms[8], *path;

		if (sscanf(line, "%127s %7s", range, perms) != 2 || perms[1] != 'w' ||
		    perms[3] != 's')
			continue;
		path = strchr(line, '/');
		line[strcspn(line, "\n")] = '\0';
		used += (size_t)snprintf(found + used, sizeof found - used, "%s%s",
					 used ? " " : "", path ? path : range);
		if (used >= sizeof found)
			break;
	}
	fclose(f);
	cage_reply_str(call, found[0] ? found : "none");
	return CAGE_OK;
}

static cage_outcome do_stdio(cage_call *call)
{
	for (int i = 1; i <= 3; i++) {
		printf("hostile stdio: stdout line %d\n", i);
		fprintf(stderr, "hostile stdio: stderr line %d\n", i);
	}
	printf("hostile stdio: \x1b[31mred\x1b[0m, a\ttab, no newline");
	fflush(stdout);
	fflush(stderr);
	/* the host's pipe reader takes it all meanwhile, so the result cannot
	 * say output waits: the last line must be named after this job all
	 * the same, not joined to the next job's first line */
	nanosleep(&(struct timespec){ 0, 200 * 1000000 }, NULL);
	cage_reply_str(call, "stdio ok");
	return CAGE_OK;
}

static cage_outcome flood(cage_call *call)
{
	/* 1.8 MB, far more than a pipe holds, not flushed by the handler */
	for (int i = 1; i <= 100000; i++)
		printf("hostile flood: line %d\n", i);
	cage_reply_str(call, "flood ok");
	return CAGE_OK;
}

static cage_outcome forge(cage_call *call)
{
	cage_log(call, CAGE_LOG_INFO, "hostile says\nFORGED cagehost error: the host is down");
	cage_error(call, "bad \xff\xfe bytes, and \xc3\xa9 (e acute) kept");
	return CAGE_FAIL;
}

static cage_outcome leakfds(cage_call *call)
{
	static int leaked[4096];
	int n = 0;
	char text[32];

	while (n < 4096 && (leaked[n] = open("/dev/null", O_RDONLY)) >= 0)
		n++;
	snprintf(text, sizeof text, "leaked %d", n);
	cage_reply_str(call, text);
	return CAGE_OK;
}

static void *poll_forever(void *arg)
{
	static volatile unsigned long wakeups;
	struct timespec pause = { 0, 100000 };

	(void)arg;
	for (;;) {
		nanosleep(&pause, NULL);
		wakeups++;
	}
	return NULL;
}

static cage_outcome thread(cage_call *call)
{
	pthread_t t;

	if (pthread_create(&t, NULL, poll_forever, NULL) != 0) {
		cage_error(call, "pthread_create failed");
		return CAGE_RETRY;
	}
	pthread_detach(t);
	cage_reply_str(call, "thread started");
	return CAGE_OK;
}

/* Appends a field of the worker channel's frames (host/wire.h): a 4-byte
 * little-endian length, then the bytes. */
static size_t field(unsigned char *at, const void *bytes, uint32_t len)
{
	for (int i = 0; i < 4; i++)
		at[i] = (unsigned char)(len >> (8 * i));
	memcpy(at + 4, bytes, len);
	return 4 + (size_t)len;
}

static cage_outcome retire(cage_call *call)
{
	/* a result: status 10 (WORKER_RETIRED), then reply, error, version and
	 * methods empty, and no calls for other cages */
	const unsigned char retired[4] = { 10, 0, 0, 0 }, none[4] = { 0 };
	unsigned char frame[64];
	size_t n = 4;

	(void)call;
	n += field(frame + n, retired, 4);
	for (int i = 0; i < 4; i++)
		n += field(frame + n, "", 0);
	n += field(frame + n, none, 4);
	for (int i = 0; i < 4; i++)
		frame[i] = (unsigned char)((n - 4) >> (8 * i));
	if (write(3, frame, n) < 0)
		return CAGE_RETRY;
	for (;;)
		pause();
}

static cage_outcome ok(cage_call *call)
{
	cage_reply_str(call, "hostile ok");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "fork", do_fork },
	{ "closefds", closefds },
	{ "hog", hog },
	{ "bigreply", bigreply },
	{ "overrun", overrun },
	{ "cpuburn", cpuburn },
	{ "spin", spin },
	{ "maps", maps },
	{ "stdio", do_stdio },
	{ "flood", flood },
	{ "forge", forge },
	{ "leakfds", leakfds },
	{ "retire", retire },
	{ "thread", thread },
	{ "ok", ok },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);

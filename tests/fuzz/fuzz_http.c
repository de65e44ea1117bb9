/*
 * fuzz_http.c - libFuzzer target for request handling: the input is the
 * raw bytes a client sends on one connection to the real HTTP listener.
 *
 * LLVMFuzzerInitialize starts the very host main.c runs (host.c), on a
 * temporary data_dir and plugin_dir and a kernel-chosen loopback port:
 * store, writer, worker pool (1 worker), plugin directory, scheduler, HTTP
 * API (guard included), all on its event loop, which this file runs.  The plugin
 * directory is empty, or holds a copy of the echo plugin when
 * CAGE_FUZZ_ECHO names its .so (then sync calls really run in the worker).
 *
 * Each input: connect, write the bytes, shut down the writing side, then
 * run the loop (reading what the server sends) until the server closes the
 * connection or CAGE_FUZZ_HTTP_MS (default 200) pass; then close the
 * client and let the server notice.  An input with more than one request
 * line (" HTTP/1." twice) shuts its writing side only once the server has
 * sent nothing for QUIET_MS: evhttp stops reading a connection when it
 * sees the end of the stream, so it would never get to the later requests.  What must hold:
 *   - no crash, undefined behaviour or leak in the host (sanitizers);
 *   - memory stays bounded (libFuzzer's -rss_limit_mb);
 *   - no file descriptor leaks: the number open returns to what it was
 *     (checked with slack for the store's log files; abort when it grows
 *     by FD_SLACK);
 *   - no 431 for a lone, plain request whose header block is within
 *     max_header_size, whatever its body (the guard must skip bodies);
 *   - evhttp never reads a request the guard did not let through whole
 *     (http_guard_desyncs() stays 0): the guard and evhttp agree on where
 *     each request ends, so no request is smuggled past the guard.
 * Host state (the store, the pool) carries over between inputs, as in a
 * real host; a crash that needs earlier inputs shows as not reproducible.
 *
 * Environment: CAGE_FUZZ_ECHO (path of echo.so), CAGE_FUZZ_TOKEN (run with
 * a token; seeds then need "Authorization: Bearer TOKEN"),
 * CAGE_FUZZ_LOG_LEVEL (the host's log_level, default "error"),
 * CAGE_FUZZ_SHOW=1 (copy what the server sends to stderr, e.g. to check
 * what a corpus file gets), CAGE_FUZZ_KEEP=1 (keep the temporary
 * directory), CAGE_FUZZ_HTTP_MS, TMPDIR (where the temporary directory
 * goes; a tmpfs such as /dev/shm makes the enqueue fsyncs cheap).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "host.h"
#include "http_api.h"
#include "http_guard.h"
#include "log.h"
#include "plugin_dir.h"
#include "store.h"

#define FD_SLACK 64		/* open fds beyond the start-up count that mean a leak */
#define DRAIN_MS 20		/* after closing: time for the server to close its end */
#define READY_MS 30000		/* start-up: time for the plugin scan and probes */
#define QUIET_MS 5		/* pipelined input: server silence before shutting down */

static struct {
	pid_t owner;		/* the process that runs the host (see teardown) */
	char dir[PATH_MAX - 64];
	struct host host;
	struct sockaddr_in addr;
	int64_t input_ms;
	int fds_at_start;
	bool show;		/* CAGE_FUZZ_SHOW=1: copy replies to stderr */
	unsigned long inputs, timed_out, undrained;
} h;

struct client {
	char reply[16];		/* the first bytes the server sent */
	size_t reply_len;
	int fd;
	struct event *io, *deadline, *quiet;
	bool pipelined;		/* more than one request line: shut down when quiet */
	const uint8_t *data;
	size_t size, sent;
	bool shut;		/* writing side shut down */
	bool closed;		/* the server closed (EOF or reset) */
	bool timed_out;
};

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_http: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		die("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own descriptor */
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n = 0;

	while (out >= 0 && (n = read(in, buf, sizeof buf)) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	}
	if (in >= 0)
		close(in);
	if (out >= 0 && (close(out) < 0 || n < 0))
		return -1;
	return out < 0 ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* At exit: the host's own teardown, as in main.c, then the files. */
static void teardown(void)
{
	if (getpid() != h.owner)
		return;
	if (h.inputs)
		fprintf(stderr, "fuzz_http: %lu inputs, %lu hit the %" PRId64 " ms limit, "
			"%lu left a server descriptor open for over %d ms\n", h.inputs,
			h.timed_out, h.input_ms, h.undrained, DRAIN_MS);
	host_stop(&h.host);
	host_free(&h.host);
	if (h.dir[0] && !getenv("CAGE_FUZZ_KEEP"))
		nftw(h.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* main.c restarts the host in place here; a fuzz input must never cause it */
static void store_fatal(void)
{
	die("the store needs recovery (see the log above)");
}

static void setup_dirs(void)
{
	const char *tmp = getenv("TMPDIR");
	const char *echo = getenv("CAGE_FUZZ_ECHO");
	char path[PATH_MAX];

	snprintf(h.dir, sizeof h.dir, "%s/cage-fuzz-http.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(h.dir))
		die("mkdtemp %s: %s", h.dir, strerror(errno));
	/* the plugin directory must not be writable by others (plugin_dir.c) */
	chmod(h.dir, 0755);
	snprintf(path, sizeof path, "%s/plugins", h.dir);
	if (mkdir(path, 0755) < 0)
		die("mkdir %s: %s", path, strerror(errno));
	if (echo && echo[0]) {
		snprintf(path, sizeof path, "%s/plugins/echo.so", h.dir);
		if (copy_file(echo, path, 0755) < 0)
			die("cannot copy CAGE_FUZZ_ECHO=%s to %s: %s", echo, path, strerror(errno));
	}
}

static void setup_conf(void)
{
	const char *level = getenv("CAGE_FUZZ_LOG_LEVEL");
	const char *token = getenv("CAGE_FUZZ_TOKEN");
	char text[8192], err[1024];

	/* small limits, so that short inputs reach the 413 and 431 answers;
	 * short retries and lifetimes, so that the scheduler retries, expires
	 * and sweeps calls during a run, and the pending set stays small;
	 * no worker memory limit: RLIMIT_AS breaks a sanitized worker */
	snprintf(text, sizeof text,
		 "[host]\n"
		 "listen = 127.0.0.1:0\n"
		 "data_dir = %s/data\n"
		 "plugin_dir = %s/plugins\n"
		 "workers = 1\n"
		 "log_level = %s\n"
		 "max_header_size = 2k\n"
		 "max_body_size = 16k\n"
		 "sync_timeout = 5s\n"
		 "done_retention = 10s\n"
		 "worker_memory_limit = 0\n"
		 "%s%s%s"
		 "[queue default]\n"
		 "retry_interval = 1s\n"
		 "retry_max_interval = 2s\n"
		 "lifetime = 10s\n"
		 "[queue slow]\n"
		 "retry_interval = 1h\n"
		 "retry_max_interval = 1h\n"
		 "concurrency = 1\n",
		 h.dir, h.dir, level && level[0] ? level : "error",
		 token ? "token = " : "", token ? token : "", token ? "\n" : "");
	if (conf_parse("fuzz_http.conf", text, h.dir, &h.host.conf, err, sizeof err) < 0)
		die("config: %s", err);
	log_set_level(h.host.conf.log_level);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *ms = getenv("CAGE_FUZZ_HTTP_MS");
	int64_t deadline;

	(void)argc;
	(void)argv;
	h.owner = getpid();
	h.show = getenv("CAGE_FUZZ_SHOW") && getenv("CAGE_FUZZ_SHOW")[0] == '1';
	h.input_ms = ms && atoi(ms) > 0 ? atoi(ms) : 200;
	signal(SIGPIPE, SIG_IGN);
	store_on_fatal(store_fatal);
	setup_dirs();
	atexit(teardown);
	setup_conf();
	if (host_listen(&h.host) < 0 || host_start(&h.host) < 0)
		die("the host did not start (see the log above)");
	deadline = clock_mono_ms() + READY_MS;
	while (!h.host.serving) {
		if (clock_mono_ms() > deadline)
			die("the plugin directory was not ready after %d ms", READY_MS);
		event_base_loop(h.host.base, EVLOOP_ONCE);
	}
	h.addr.sin_family = AF_INET;
	h.addr.sin_port = htons((uint16_t)http_api_port(h.host.http));
	h.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h.fds_at_start = count_fds();
	fprintf(stderr, "fuzz_http: host on 127.0.0.1:%d, data in %s, %s, %d fds open\n",
		http_api_port(h.host.http), h.dir, plugins_count(h.host.plugins) ?
		"echo plugin loaded" : "no plugins", h.fds_at_start);
	return 0;
}

static void on_client(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char buf[16384];
	ssize_t n;

	if (what & EV_WRITE) {
		while (c->sent < c->size) {
			n = send(fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL);
			if (n <= 0)
				break;
			c->sent += (size_t)n;
		}
		if (c->sent < c->size && errno != EAGAIN && errno != EINTR) {
			c->closed = true;	/* the server reset the connection */
			return;
		}
		if (c->sent == c->size && !c->shut) {
			if (!c->pipelined) {
				shutdown(fd, SHUT_WR);
				c->shut = true;
			}
			event_del(c->io);
			event_assign(c->io, h.host.base, fd, EV_READ | EV_PERSIST, on_client, c);
			event_add(c->io, NULL);
		}
	}
	if (what & EV_READ) {
		while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
			size_t room = sizeof c->reply - c->reply_len;

			memcpy(c->reply + c->reply_len, buf, (size_t)n < room ? (size_t)n : room);
			c->reply_len += (size_t)n < room ? (size_t)n : room;
			if (h.show)
				fwrite(buf, 1, (size_t)n, stderr);
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->closed = true;
	}
	if (c->pipelined && !c->shut && c->sent == c->size) {
		struct timeval quiet = { 0, QUIET_MS * 1000 };

		evtimer_add(c->quiet, &quiet);	/* again from now */
	}
}

/* A pipelined input's server went quiet: now the end of the stream. */
static void on_quiet(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	if (!c->shut) {
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
}

/* More than one request line in the input. */
static bool has_pipelined(const uint8_t *data, size_t size)
{
	const uint8_t *first = memmem(data, size, " HTTP/1.", 8);

	return first && memmem(first + 8, size - (size_t)(first + 8 - data), " HTTP/1.", 8);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	c->timed_out = true;
}

/* The input's first line, printable (for messages; static buffer). */
static const char *first_line(const uint8_t *d, size_t n)
{
	static char line[41];
	size_t i;

	for (i = 0; i < n && i < sizeof line - 1 && d[i] != '\r' && d[i] != '\n'; i++)
		line[i] = isprint(d[i]) ? (char)d[i] : '?';
	line[i] = '\0';
	return line;
}

static bool name_is(const uint8_t *p, size_t len, const char *name)
{
	if (len != strlen(name))
		return false;
	for (size_t i = 0; i < len; i++)
		if (tolower(p[i]) != name[i])
			return false;
	return true;
}

/*
 * When the input is exactly one plain request - a request line and header
 * lines ending in CRLF CRLF, then a body of exactly the length of its one
 * all-digit Content-Length (or none), no Transfer-Encoding, no folded
 * lines - returns the length of its header block (request line to the
 * blank line, inclusive: what the guard counts against max_header_size).
 * Returns 0 for anything else.
 */
static size_t single_request_head(const uint8_t *d, size_t n)
{
	const uint8_t *end = memmem(d, n, "\r\n\r\n", 4);
	const uint8_t *line, *next;
	unsigned long long length = 0;
	bool have_length = false;
	size_t head;

	if (!end || n == 0 || d[0] < 'A' || d[0] > 'Z' || memmem(d, (size_t)(end - d), "\n\n", 2))
		return 0;
	head = (size_t)(end - d) + 4;
	line = memmem(d, head, "\r\n", 2) + 2;	/* after the request line */
	for (; line < end; line = next + 2) {
		const uint8_t *colon = memchr(line, ':', (size_t)(end - line));
		const uint8_t *v;

		next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		if (line[0] == ' ' || line[0] == '\t' || !colon || colon > next ||
		    memchr(line, '\n', (size_t)(next - line)) || memchr(line, '\r', (size_t)(next - line)))
			return 0;
		if (name_is(line, (size_t)(colon - line), "transfer-encoding"))
			return 0;
		if (!name_is(line, (size_t)(colon - line), "content-length"))
			continue;
		if (have_length)
			return 0;
		have_length = true;
		for (v = colon + 1; v < next && *v == ' '; v++)
			;
		if (v == next || next - v > 9)
			return 0;
		for (; v < next; v++) {
			if (*v < '0' || *v > '9')
				return 0;
			length = length * 10 + (unsigned)(*v - '0');
		}
	}
	return n - head == length ? head : 0;
}

/* A connected, non-blocking socket to the host (dies when there is none). */
static int connect_host(void)
{
	for (int tries = 0; tries < 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			die("socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&h.addr, sizeof h.addr) == 0) {
			evutil_make_socket_nonblocking(fd);
			return fd;
		}
		if (errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINTR)
			die("connect to 127.0.0.1:%d: %s", ntohs(h.addr.sin_port), strerror(errno));
		close(fd);
		/* out of local ports (TIME_WAIT), or libFuzzer's SIGALRM timer
		 * cut a connect that waited for the listen queue: again */
		usleep(10000);
	}
	die("no local port free for 1 s");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client c = { .fd = -1, .data = data, .size = size };
	size_t head;
	struct timeval limit = { h.input_ms / 1000, (h.input_ms % 1000) * 1000 };
	int fds_before = count_fds();
	int64_t drain_until;
	int open_now;

	h.inputs++;
	if (h.show)
		fprintf(stderr, "\n=== input %lu: %zu bytes: %.*s\n", h.inputs, size,
			(int)(memchr(data, '\n', size) ? (const uint8_t *)memchr(data, '\n', size) - data
			      : (ptrdiff_t)size), (const char *)data);
	c.fd = connect_host();
	c.io = event_new(h.host.base, c.fd, EV_READ | EV_WRITE | EV_PERSIST, on_client, &c);
	c.deadline = evtimer_new(h.host.base, on_deadline, &c);
	c.quiet = evtimer_new(h.host.base, on_quiet, &c);
	c.pipelined = has_pipelined(data, size);
	if (!c.io || !c.deadline || !c.quiet)
		die("out of memory");
	event_add(c.io, NULL);
	event_add(c.deadline, &limit);
	while (!c.closed && !c.timed_out)
		event_base_loop(h.host.base, EVLOOP_ONCE);
	if (c.timed_out && !c.closed && ++h.timed_out <= 5)
		fprintf(stderr, "fuzz_http: the server kept the connection past %" PRId64
			" ms (%zu bytes sent of %zu, reply \"%.12s\"); input starts \"%.40s\"\n",
			h.input_ms, c.sent, size, c.reply_len ? c.reply : "",
			first_line(data, size));
	event_free(c.io);
	event_free(c.deadline);
	event_free(c.quiet);
	close(c.fd);
	head = single_request_head(data, size);
	if (head && head <= h.host.conf.max_header_size && c.reply_len >= 12 &&
	    !memcmp(c.reply, "HTTP/1.1 431", 12))
		die("431 for one request whose %zu header bytes are within max_header_size (%zu); "
		    "%zu bytes in all", head, h.host.conf.max_header_size, size);

	/* let the server see the close and release its end */
	drain_until = clock_mono_ms() + DRAIN_MS;
	do {
		event_base_loop(h.host.base, EVLOOP_NONBLOCK);
		open_now = count_fds();
	} while (open_now > fds_before && clock_mono_ms() < drain_until);
	if (open_now > fds_before)
		h.undrained++;
	if (open_now > h.fds_at_start + FD_SLACK)
		die("file descriptors leak: %d open, %d after start-up", open_now, h.fds_at_start);
	if (http_guard_desyncs())
		die("evhttp read a request the guard did not let through (request smuggling); "
		    "input starts \"%.40s\"", first_line(data, size));
	return 0;
}

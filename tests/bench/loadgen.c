/*
 * loadgen.c - the one load generator of the benchmark (tests/bench/README).
 *
 * It drives cagehost (HTTP/1.1) and beanstalkd (the beanstalk protocol) the
 * same way, so its own cost is the same on both sides: one libevent loop,
 * one thread, N keep-alive connections, each with one request in flight,
 * the same fixed payload of 'x' bytes.  It is meant to cost the systems
 * it shares the machine with as little as it can: each connection has one
 * read event that stays armed, a request is written with one send() the
 * moment the previous answer is read, and answers are read with one
 * recv() each wakeup, so a request costs two system calls and no epoll
 * changes.  (With bufferevents it took five: two epoll_ctl, an ioctl, a
 * readv and a writev.)
 *
 *   loadgen http --url http://127.0.0.1:PORT/PATH [--method POST|GET]
 *   loadgen beanstalk-put --addr 127.0.0.1:PORT [--delay SECONDS]
 *   loadgen beanstalk-e2e --addr 127.0.0.1:PORT [--producers N] [--consumers M]
 *
 * common options: --conns N (64), --payload BYTES (100), and either
 * --duration SECONDS (5; counts what completes before the deadline) or
 * --count N (exactly N requests, or N jobs deleted; then --duration is only
 * a time limit, 600 s by default, and running out of it is an error).
 *
 * http: every request carries Content-Length; responses are framed by their
 * Content-Length (evhttp always sends one on a keep-alive connection).  A
 * response that is not 2xx counts as an error; the first one is shown on
 * stderr.  beanstalk-put: "put 0 DELAY 60 BYTES", INSERTED is a success.
 * beanstalk-e2e: --producers connections put (no delay) while --consumers
 * connections reserve and delete; the rate is deleted jobs per second.
 *
 * Output: one line of key=value on stdout, for example
 *     mode=http rate=12345 ok=61725 errors=0 p50_us=4100 p99_us=9800 ...
 * Latencies are from writing a request to reading its whole response (for
 * beanstalk-e2e, of the puts).  cpu_us is this load generator's own CPU
 * time (user and system) per counted request.
 * The clock starts once every connection is established.
 * Exit status: 0 done, 1 could not connect or ran out of time, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD 8192		/* longest HTTP response head accepted */
#define READ_CHUNK 16384	/* bytes asked of each recv() */

enum mode { MODE_HTTP, MODE_PUT, MODE_E2E };
enum role { ROLE_REQUEST, ROLE_CONSUMER };

/* What a consumer connection is waiting for. */
enum consumer_state { WAIT_RESERVED, WAIT_JOB_BODY, WAIT_DELETED };

struct opts {
	enum mode mode;
	struct sockaddr_in addr;
	char host[64];			/* as written in the URL, for Host: */
	const char *path;
	const char *method;
	int conns, producers, consumers;
	double duration_s;
	long count;			/* 0: run for duration_s */
	size_t payload;
	long delay_s;
};

struct latencies {
	uint32_t *us;
	size_t n, cap;
};

struct run {
	struct opts o;
	struct event_base *base;
	struct conn *conns;
	int nconns, connected;
	char *request;			/* the one request every ROLE_REQUEST conn sends */
	size_t request_len;
	bool started, finished, timed_out;
	double start_s, end_s;
	double start_cpu_s, end_cpu_s;	/* this process's CPU time (user + system) */
	long issued;			/* requests sent (puts for e2e) */
	long ok, errors;		/* responses: success, anything else */
	long deleted;			/* e2e: jobs deleted */
	bool error_shown;
	struct latencies lat;
};

struct conn {
	struct run *run;
	evutil_socket_t fd;
	struct event *readable;		/* persistent, armed while connected */
	struct event *writable;		/* while connecting, or out has bytes */
	struct evbuffer *in, *out;	/* out: what send() did not take */
	enum role role;
	enum consumer_state cstate;
	bool connected;			/* this socket, not the first one */
	bool in_flight;
	double sent_s;
	size_t body_need;		/* consumer: job body + CRLF still to come */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time this process has used, user and system, in seconds. */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		die("out of memory");
	return p;
}

static void lat_add(struct latencies *l, double seconds)
{
	double us = seconds * 1e6;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 65536;
		l->us = realloc(l->us, l->cap * sizeof *l->us);
		if (!l->us)
			die("out of memory for %zu latency samples", l->cap);
	}
	l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (0..1) of the sorted samples, nearest rank; 0 if none. */
static uint32_t lat_quantile(const struct latencies *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)(q * (double)l->n);
	return l->us[i < l->n ? i : l->n - 1];
}

static void finish(struct run *r)
{
	if (r->finished)
		return;
	r->finished = true;
	r->end_s = now_s();
	r->end_cpu_s = cpu_s();
	event_base_loopbreak(r->base);
}

static bool count_reached(const struct run *r)
{
	if (r->o.count == 0)
		return false;
	if (r->o.mode == MODE_E2E)
		return r->deleted >= r->o.count;
	return r->ok + r->errors >= r->o.count;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;

	(void)fd;
	(void)what;
	r->timed_out = r->o.count > 0;
	finish(r);
}

static void conn_lost(struct conn *c);

/* Writes what is queued in c->out; arms c->writable while some is left. */
static void flush_out(struct conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		size_t n = evbuffer_get_contiguous_space(c->out);
		ssize_t sent = send(c->fd, evbuffer_pullup(c->out, (ev_ssize_t)n), n,
				    MSG_NOSIGNAL);

		if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			event_add(c->writable, NULL);
			return;
		}
		if (sent < 0) {
			conn_lost(c);
			return;
		}
		evbuffer_drain(c->out, (size_t)sent);
	}
}

/* Sends data on c: straight to the socket when nothing waits before it. */
static void send_bytes(struct conn *c, const void *data, size_t len)
{
	ssize_t sent = 0;

	c->in_flight = true;
	c->sent_s = now_s();
	if (evbuffer_get_length(c->out) == 0) {
		sent = send(c->fd, data, len, MSG_NOSIGNAL);
		if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			conn_lost(c);
			return;
		}
		if (sent < 0)
			sent = 0;
		if ((size_t)sent == len)
			return;
	}
	if (evbuffer_add(c->out, (const char *)data + sent, len - (size_t)sent) < 0)
		die("out of memory");
	flush_out(c);
}

static void send_consumer_command(struct conn *c, const char *line)
{
	send_bytes(c, line, strlen(line));
}

/* Sends the next request on c, unless the run is over or has sent enough. */
static void send_next(struct conn *c)
{
	struct run *r = c->run;

	if (r->finished)
		return;
	if (c->role == ROLE_CONSUMER) {
		c->cstate = WAIT_RESERVED;
		send_consumer_command(c, "reserve-with-timeout 1\r\n");
		return;
	}
	if (r->o.count > 0 && r->issued >= r->o.count)
		return;
	r->issued++;
	send_bytes(c, r->request, r->request_len);
}

static void show_error(struct run *r, const char *what, const char *text, size_t len)
{
	if (r->error_shown)
		return;
	r->error_shown = true;
	fprintf(stderr, "loadgen: first error (%s): %.*s\n", what,
		(int)(len > 300 ? 300 : len), text);
}

/* A request of a ROLE_REQUEST conn got its answer. */
static void request_done(struct conn *c, bool ok)
{
	struct run *r = c->run;

	c->in_flight = false;
	if (r->finished)
		return;
	lat_add(&r->lat, now_s() - c->sent_s);
	if (ok)
		r->ok++;
	else
		r->errors++;
	if (count_reached(r))
		finish(r);
	else
		send_next(c);
}

/* Finds a header's value in a response head (NUL-terminated); -1 if absent. */
static long header_long(const char *head, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
			return strtol(p + 3 + n, NULL, 10);
	}
	return -1;
}

/*
 * Reads one HTTP response if it is complete in the input.  Returns true if
 * one was consumed.
 */
static bool read_http_response(struct conn *c, struct evbuffer *in)
{
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	char head[MAX_HEAD];
	size_t head_len, total;
	long body_len;
	int status;

	if (end.pos < 0)
		return false;
	head_len = (size_t)end.pos + 4;
	if (head_len >= sizeof head)
		die("a response head of %zu bytes", head_len);
	evbuffer_copyout(in, head, head_len);
	head[head_len] = '\0';
	body_len = header_long(head, "Content-Length");
	if (body_len < 0)
		die("a response without Content-Length: %.200s", head);
	total = head_len + (size_t)body_len;
	if (evbuffer_get_length(in) < total)
		return false;
	/* "HTTP/1.1 202 ..." */
	status = head_len > 12 && memcmp(head, "HTTP/1.", 7) == 0 ? atoi(head + 9) : 0;
	if (status < 200 || status > 299)
		show_error(c->run, "http", (char *)evbuffer_pullup(in, (ev_ssize_t)total), total);
	evbuffer_drain(in, total);
	request_done(c, status >= 200 && status <= 299);
	return true;
}

/* Reads one beanstalk reply line to a put.  Returns true if one was consumed. */
static bool read_put_reply(struct conn *c, struct evbuffer *in)
{
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
	bool ok;

	if (!line)
		return false;
	ok = strncmp(line, "INSERTED ", 9) == 0;
	if (!ok)
		show_error(c->run, "put", line, len);
	free(line);
	request_done(c, ok);
	return true;
}

/* A consumer reserved a job: its body follows; delete it at once. */
static void consumer_got_job(struct conn *c, const char *line)
{
	unsigned long long id;
	size_t bytes;
	char cmd[64];

	if (sscanf(line, "RESERVED %llu %zu", &id, &bytes) != 2)
		die("bad reply to reserve: %.100s", line);
	c->body_need = bytes + 2;
	c->cstate = WAIT_JOB_BODY;
	if (c->run->finished)
		return;
	snprintf(cmd, sizeof cmd, "delete %llu\r\n", id);
	send_consumer_command(c, cmd);
}

/*
 * Advances a consumer by one step if its input allows.  Returns true if it
 * consumed something.
 */
static bool read_consumer(struct conn *c, struct evbuffer *in)
{
	struct run *r = c->run;
	size_t len;
	char *line;

	if (c->cstate == WAIT_JOB_BODY) {
		if (evbuffer_get_length(in) < c->body_need)
			return false;
		evbuffer_drain(in, c->body_need);
		c->cstate = WAIT_DELETED;
		return true;
	}
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
	if (!line)
		return false;
	c->in_flight = false;
	if (c->cstate == WAIT_RESERVED && strncmp(line, "RESERVED ", 9) == 0) {
		consumer_got_job(c, line);
	} else if (c->cstate == WAIT_RESERVED &&
		   (strcmp(line, "TIMED_OUT") == 0 || strcmp(line, "DEADLINE_SOON") == 0)) {
		send_next(c);
	} else if (c->cstate == WAIT_DELETED && strcmp(line, "DELETED") == 0) {
		r->deleted++;
		if (count_reached(r))
			finish(r);
		send_next(c);
	} else {
		show_error(r, "consumer", line, len);
		r->errors++;
		send_next(c);
	}
	free(line);
	return true;
}

/* Reads one reply of whatever c waits for.  Returns true if it did. */
static bool read_one(struct conn *c, struct evbuffer *in)
{
	if (c->role == ROLE_CONSUMER)
		return read_consumer(c, in);
	if (c->run->o.mode == MODE_HTTP)
		return read_http_response(c, in);
	return read_put_reply(c, in);
}

/* c's socket is readable: one recv(), then every whole reply in c->in. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evbuffer_iovec v;
	ssize_t got;

	(void)what;
	if (evbuffer_reserve_space(c->in, READ_CHUNK, &v, 1) < 1)
		die("out of memory");
	got = recv(fd, v.iov_base, v.iov_len, 0);
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (got <= 0) {
		conn_lost(c);
		return;
	}
	v.iov_len = (size_t)got;
	evbuffer_commit_space(c->in, &v, 1);
	while (!c->run->finished && read_one(c, c->in))
		;
}

static void conn_open(struct conn *c);

static void start_run(struct run *r)
{
	struct timeval tv;
	double limit_s = r->o.duration_s;

	r->started = true;
	r->start_s = now_s();
	r->start_cpu_s = cpu_s();
	tv.tv_sec = (time_t)limit_s;
	tv.tv_usec = (suseconds_t)((limit_s - (double)tv.tv_sec) * 1e6);
	event_base_once(r->base, -1, EV_TIMEOUT, on_deadline, r, &tv);
	for (int i = 0; i < r->nconns; i++)
		send_next(&r->conns[i]);
}

/* c's connection is established: count it, or go on where it was lost. */
static void on_connected(struct conn *c)
{
	struct run *r = c->run;
	int one = 1;

	c->connected = true;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	event_add(c->readable, NULL);
	if (r->started)
		send_next(c);
	else if (++r->connected == r->nconns)
		start_run(r);
}

/* c's socket is writable: its connect() finished, or out can go on. */
static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct run *r = c->run;
	int err = 0;
	socklen_t len = sizeof err;

	(void)what;
	if (c->connected) {
		flush_out(c);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		die("cannot connect to %s:%d: %s", inet_ntoa(r->o.addr.sin_addr),
		    ntohs(r->o.addr.sin_port), strerror(err));
	on_connected(c);
}

/* The server closed c or it failed: what was in flight is lost; reconnect. */
static void conn_lost(struct conn *c)
{
	struct run *r = c->run;

	if (!c->connected)
		die("cannot connect to %s:%d: %s", inet_ntoa(r->o.addr.sin_addr),
		    ntohs(r->o.addr.sin_port), strerror(errno));
	if (r->finished)
		return;
	if (c->in_flight) {
		r->errors++;
		show_error(r, "connection", "closed by the server", 20);
		if (c->role == ROLE_REQUEST && r->o.count > 0)
			r->issued--;	/* so exactly count requests complete */
	}
	event_free(c->readable);
	event_free(c->writable);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	close(c->fd);
	conn_open(c);
}

static void conn_open(struct conn *c)
{
	struct run *r = c->run;

	c->in_flight = false;
	c->connected = false;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->readable = event_new(r->base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
	c->writable = event_new(r->base, c->fd, EV_WRITE, on_writable, c);
	if (!c->in || !c->out || !c->readable || !c->writable)
		die("out of memory");
	if (connect(c->fd, (struct sockaddr *)&r->o.addr, sizeof r->o.addr) == 0)
		on_connected(c);
	else if (errno == EINPROGRESS)
		event_add(c->writable, NULL);
	else
		conn_lost(c);
}

static char *payload_bytes(size_t n)
{
	char *p = xmalloc(n + 1);

	memset(p, 'x', n);
	p[n] = '\0';
	return p;
}

static void build_request(struct run *r)
{
	const struct opts *o = &r->o;
	char *payload = payload_bytes(o->payload);
	size_t cap = strlen(o->path) + strlen(o->host) + o->payload + 256;
	int n;

	r->request = xmalloc(cap);
	if (o->mode == MODE_HTTP)
		n = snprintf(r->request, cap,
			     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n%s",
			     o->method, o->path, o->host, o->payload, payload);
	else
		n = snprintf(r->request, cap, "put 0 %ld 60 %zu\r\n%s\r\n", o->delay_s,
			     o->payload, payload);
	r->request_len = (size_t)n;
	free(payload);
}

__attribute__((noreturn))
static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen http --url http://IP:PORT/PATH [--method POST|GET]\n"
		"       loadgen beanstalk-put --addr IP:PORT [--delay SECONDS]\n"
		"       loadgen beanstalk-e2e --addr IP:PORT [--producers N] [--consumers M]\n"
		"  common: [--conns N] [--payload BYTES] [--duration SECONDS] [--count N]\n");
	exit(2);
}

static void parse_addr(struct opts *o, const char *hostport)
{
	const char *colon = strrchr(hostport, ':');
	size_t n;

	if (!colon || (n = (size_t)(colon - hostport)) >= sizeof o->host)
		usage();
	memcpy(o->host, hostport, n);
	o->host[n] = '\0';
	o->addr.sin_family = AF_INET;
	o->addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, o->host, &o->addr.sin_addr) != 1)
		die("not an IPv4 address: %s", o->host);
	snprintf(o->host + n, sizeof o->host - n, "%s", colon);
}

static void parse_url(struct opts *o, const char *url)
{
	static char hostport[64];
	const char *rest, *slash;

	if (strncmp(url, "http://", 7) != 0)
		die("only http:// URLs: %s", url);
	rest = url + 7;
	slash = strchr(rest, '/');
	if (!slash || (size_t)(slash - rest) >= sizeof hostport)
		die("bad URL: %s", url);
	memcpy(hostport, rest, (size_t)(slash - rest));
	hostport[slash - rest] = '\0';
	parse_addr(o, hostport);
	o->path = slash;
}

static void parse_opts(struct opts *o, int argc, char **argv)
{
	bool have_addr = false, have_duration = false;

	if (argc < 2)
		usage();
	*o = (struct opts){ .method = "POST", .path = "/", .conns = 64, .producers = -1,
			    .consumers = -1, .duration_s = 5, .payload = 100 };
	if (strcmp(argv[1], "http") == 0)
		o->mode = MODE_HTTP;
	else if (strcmp(argv[1], "beanstalk-put") == 0)
		o->mode = MODE_PUT;
	else if (strcmp(argv[1], "beanstalk-e2e") == 0)
		o->mode = MODE_E2E;
	else
		usage();
	for (int i = 2; i < argc; i += 2) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		if (strcmp(k, "--url") == 0 && o->mode == MODE_HTTP)
			parse_url(o, v), have_addr = true;
		else if (strcmp(k, "--addr") == 0 && o->mode != MODE_HTTP)
			parse_addr(o, v), have_addr = true;
		else if (strcmp(k, "--method") == 0)
			o->method = v;
		else if (strcmp(k, "--conns") == 0)
			o->conns = atoi(v);
		else if (strcmp(k, "--producers") == 0)
			o->producers = atoi(v);
		else if (strcmp(k, "--consumers") == 0)
			o->consumers = atoi(v);
		else if (strcmp(k, "--duration") == 0)
			o->duration_s = atof(v), have_duration = true;
		else if (strcmp(k, "--count") == 0)
			o->count = atol(v);
		else if (strcmp(k, "--payload") == 0)
			o->payload = (size_t)atol(v);
		else if (strcmp(k, "--delay") == 0)
			o->delay_s = atol(v);
		else
			usage();
	}
	if (o->count > 0 && !have_duration)
		o->duration_s = 600;
	if (o->producers < 0)
		o->producers = o->conns;
	if (o->consumers < 0)
		o->consumers = o->conns;
	if (!have_addr || o->conns < 1 || o->duration_s <= 0 || o->count < 0 ||
	    (o->mode == MODE_E2E && (o->producers < 1 || o->consumers < 1)))
		usage();
}

static void setup_conns(struct run *r)
{
	int producers = r->o.mode == MODE_E2E ? r->o.producers : r->o.conns;

	r->nconns = producers + (r->o.mode == MODE_E2E ? r->o.consumers : 0);
	r->conns = calloc((size_t)r->nconns, sizeof *r->conns);
	if (!r->conns)
		die("out of memory");
	for (int i = 0; i < r->nconns; i++) {
		r->conns[i].run = r;
		r->conns[i].role = i < producers ? ROLE_REQUEST : ROLE_CONSUMER;
		conn_open(&r->conns[i]);
	}
}

static void report(struct run *r)
{
	static const char *names[] = { "http", "beanstalk-put", "beanstalk-e2e" };
	double elapsed = r->end_s - r->start_s;
	long done = r->o.mode == MODE_E2E ? r->deleted : r->ok;

	qsort(r->lat.us, r->lat.n, sizeof *r->lat.us, cmp_u32);
	printf("mode=%s rate=%.0f ok=%ld errors=%ld", names[r->o.mode],
	       elapsed > 0 ? (double)done / elapsed : 0.0, r->ok, r->errors);
	if (r->o.mode == MODE_E2E)
		printf(" deleted=%ld put_rate=%.0f", r->deleted,
		       elapsed > 0 ? (double)r->ok / elapsed : 0.0);
	printf(" p50_us=%u p90_us=%u p99_us=%u max_us=%u elapsed_s=%.3f conns=%d cpu_us=%.1f\n",
	       lat_quantile(&r->lat, 0.50), lat_quantile(&r->lat, 0.90),
	       lat_quantile(&r->lat, 0.99), lat_quantile(&r->lat, 1.0), elapsed, r->nconns,
	       done > 0 ? (r->end_cpu_s - r->start_cpu_s) * 1e6 / (double)done : 0.0);
}

int main(int argc, char **argv)
{
	struct run r = { 0 };

	parse_opts(&r.o, argc, argv);
	r.base = event_base_new();
	if (!r.base)
		die("event_base_new failed");
	build_request(&r);
	setup_conns(&r);
	event_base_dispatch(r.base);
	if (!r.finished)
		die("the event loop stopped early");
	report(&r);
	if (r.timed_out) {
		fprintf(stderr, "loadgen: ran out of time after %ld of %ld\n",
			r.o.mode == MODE_E2E ? r.deleted : r.ok + r.errors, r.o.count);
		return 1;
	}
	return 0;
}

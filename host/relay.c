/*
 * relay.c - delivers calls to other cages over HTTP (see relay.h).
 *
 * Each url of a cage has RELAY_CONNS_PER_URL keep-alive client connections,
 * used in turn; a connection carries one request at a time and queues the
 * others, so deliveries to one url overlap up to that many.  Each waits
 * for the other cage's fsync, so the overlap sets the rate: measured on
 * loopback (2 cores, both hosts on them), 20,000 calls were delivered in
 * 13.7 s with 4 connections, 7.0 s with 32, and no faster with 64.  Host
 * names are resolved when a connection is made, without blocking the loop
 * (libevent's evdns, with /etc/resolv.conf and /etc/hosts).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "record.h"
#include "relay.h"

#define IDENTITY_LEN 16

struct url_conns {
	struct evhttp_connection *conn[RELAY_CONNS_PER_URL];
	unsigned next;
};

struct relay_cage {
	const struct cage_conf *conf;
	struct url_conns urls[CAGE_URLS_MAX];
	char answered_below[CALL_ID_LEN + 1];	/* relay_set_floor() */
	struct relay_cage *next;
};

struct delivery {
	struct relay *relay;
	struct job *job;
	struct relay_cage *cage;	/* NULL: not in the config */
	int url;
	enum evhttp_request_error error;
	bool failed;			/* the error callback ran */
	char why[128];			/* fail_later()'s reason */
	struct evhttp_request *req;	/* in flight, until answered or cancelled */
	struct event *deadline;		/* attempt_timeout from the start, queueing included */
	bool in_run;			/* relay_run() has not returned yet */
	LIST_ENTRY(delivery) link;
};

struct relay {
	struct event_base *base;
	struct evdns_base *dns;		/* NULL: the system's blocking resolver */
	const struct host_conf *conf;
	char identity[IDENTITY_LEN + 1];
	struct relay_cage *cages;
	LIST_HEAD(, delivery) deliveries;	/* started, not completed */
	TAILQ_HEAD(, job) starved;	/* no memory for their delivery */
	struct event *starved_ev;	/* fails them, from the loop */
	bool closing;
	/* cages calls were enqueued on that the config does not name, each
	 * logged once (the calls wait, and may do so for days) */
	struct name_set unknown;
};

/* A call waits for a cage the config does not name: say so, once per cage. */
static void log_unknown_cage(struct relay *r, const struct job *job)
{
	switch (name_set_add(&r->unknown, job->cage)) {
	case NAME_SEEN:
		return;
	case NAME_SET_FULL:
		log_error("calls wait for more than %d cages the config does not name; "
			  "further ones are not logged (GET /v1/calls/ID shows each reason)",
			  NAME_SET_MAX);
		return;
	case NAME_NEW:
		break;
	}
	log_error("calls enqueued on cage %s (such as %s/%s.%s, call %s) wait: the config has no "
		  "[cage %s] section. Add it and restart the host to deliver them; until then "
		  "they are retried, and expire after their queue's lifetime", job->cage,
		  job->queue, job->module, job->method, job->id, job->cage);
}

/* Reads data_dir/identity, making it (random, fsync'd) at the first start;
 * one missing while deliveries wait is refused (relay.h). */
static int load_identity(const char *data_dir, char out[IDENTITY_LEN + 1],
			 bool deliveries_waiting)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
	uint64_t random_id;
	ssize_t n;
	int fd, dir;
	bool ok;

	snprintf(path, sizeof path, "%s/identity", data_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, IDENTITY_LEN);
		close(fd);
		out[n > 0 ? n : 0] = '\0';
		if (n == IDENTITY_LEN && strspn(out, "0123456789abcdef") == IDENTITY_LEN)
			return 0;
		log_error("%s is damaged (expected %d hex digits); remove it to make a new one "
			  "(other cages may then store calls this host already sent them again)",
			  path, IDENTITY_LEN);
		return -1;
	}
	if (errno == ENOENT && deliveries_waiting) {
		log_error("%s is missing, but calls wait here for delivery to other cages, "
			  "which know this host by it: restore it from the backup this data_dir "
			  "came from (a new one would give repeated deliveries new keys, and the "
			  "other cages would store those calls again).  To start with a new "
			  "identity anyway, write 16 hex digits into it (od -An -N8 -tx1 "
			  "/dev/urandom | tr -d ' \\n' > %s)", path, path);
		return -1;
	}
	if (errno != ENOENT || getrandom(&random_id, sizeof random_id, 0) != sizeof random_id) {
		log_error("cannot read or make %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(out, IDENTITY_LEN + 1, "%016" PRIx64, random_id);
	snprintf(tmp, sizeof tmp, "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, out, IDENTITY_LEN) == IDENTITY_LEN && fsync(fd) == 0;
	if (fd >= 0 && close(fd) < 0)
		ok = false;
	ok = ok && rename(tmp, path) == 0;
	/* the rename itself must survive a crash: a lost identity would let
	 * other cages store again a call whose answer was lost */
	dir = ok ? open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	ok = ok && dir >= 0 && fsync(dir) == 0;
	if (dir >= 0)
		close(dir);
	if (!ok) {
		log_error("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void fail_starved(evutil_socket_t fd, short what, void *arg);

struct relay *relay_new(struct event_base *base, const struct host_conf *conf,
			bool deliveries_waiting)
{
	struct relay *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->base = base;
	r->conf = conf;
	LIST_INIT(&r->deliveries);
	TAILQ_INIT(&r->starved);
	r->starved_ev = event_new(base, -1, 0, fail_starved, r);
	if (!r->starved_ev) {
		free(r);
		return NULL;
	}
	if (load_identity(conf->data_dir, r->identity, deliveries_waiting) < 0) {
		event_free(r->starved_ev);
		free(r);
		return NULL;
	}
	if (conf->cages) {
		r->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (!r->dns)
			log_warning("relay: no asynchronous resolver (/etc/resolv.conf?); host "
				    "names in [cage] urls are looked up blocking the loop");
	}
	for (const struct cage_conf *c = conf->cages; c; c = c->next) {
		struct relay_cage *rc = calloc(1, sizeof *rc);

		if (!rc) {
			relay_free(&r);
			return NULL;
		}
		rc->conf = c;
		memset(rc->answered_below, '0', CALL_ID_LEN);
		rc->next = r->cages;
		r->cages = rc;
	}
	return r;
}

int relay_in_flight(const struct relay *r)
{
	const struct delivery *d;
	const struct job *j;
	int n = 0;

	LIST_FOREACH(d, &r->deliveries, link)
		n++;
	TAILQ_FOREACH(j, &r->starved, link)
		n++;
	return n;
}

void relay_set_floor(struct relay *r, const char *cage, const char id[CALL_ID_LEN + 1])
{
	for (struct relay_cage *c = r->cages; c; c = c->next)
		if (!strcmp(c->conf->name, cage))
			snprintf(c->answered_below, sizeof c->answered_below, "%s", id);
}

static void free_delivery(struct delivery *d)
{
	LIST_REMOVE(d, link);
	event_free(d->deadline);	/* made before the delivery joins the list */
	free(d);
}

void relay_free(struct relay **rp)
{
	struct relay *r = *rp;

	if (!r)
		return;
	r->closing = true;	/* request callbacks now only free their delivery */
	while (r->cages) {
		struct relay_cage *next = r->cages->next;

		for (int u = 0; u < CAGE_URLS_MAX; u++)
			for (int i = 0; i < RELAY_CONNS_PER_URL; i++)
				if (r->cages->urls[u].conn[i])
					evhttp_connection_free(r->cages->urls[u].conn[i]);
		free(r->cages);
		r->cages = next;
	}
	/* jobs belong to the scheduler, which frees them */
	while (!LIST_EMPTY(&r->deliveries))
		free_delivery(LIST_FIRST(&r->deliveries));
	event_free(r->starved_ev);
	if (r->dns)
		evdns_base_free(r->dns, 0);
	free(r);
	*rp = NULL;
}

/* "CAGE@HOST:PORT": the version an attempt records, naming the copy (url
 * u of cage cc) it went to; u < 0: none ("CAGE@-") */
static void copy_version(char *out, size_t size, const char *cage, const struct cage_conf *cc,
			 int u)
{
	char where[320] = "-";

	if (cc && u >= 0)
		snprintf(where, sizeof where, "%s:%d", cc->urls[u].host, cc->urls[u].port);
	snprintf(out, size, "%.24s@%.39s", cage, where);
}

/* The version of an attempt that chose no copy: the copy the call keeps to
 * (its last attempt's) stays recorded; none yet: "CAGE@-" */
static void kept_version(char *out, size_t size, const struct job *job)
{
	if (job->version[0])
		snprintf(out, size, "%s", job->version);
	else
		copy_version(out, size, job->cage, NULL, -1);
}

static void complete(struct delivery *d, enum worker_status status, const char *reply,
		     size_t reply_len, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Ends the delivery: job->done() with the result, then the delivery goes. */
static void complete(struct delivery *d, enum worker_status status, const char *reply,
		     size_t reply_len, const char *fmt, ...)
{
	struct job *job = d->job;
	struct job_result res;
	char where[320] = "";
	char text[RECORD_ERROR_MAX / 2];
	va_list ap;

	memset(&res, 0, sizeof res);
	res.status = status;
	if (d->cage)
		snprintf(where, sizeof where, "%s:%d", d->cage->conf->urls[d->url].host,
			 d->cage->conf->urls[d->url].port);
	if (d->cage)
		copy_version(res.version, sizeof res.version, job->cage, d->cage->conf, d->url);
	else
		kept_version(res.version, sizeof res.version, job);
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof text, fmt, ap);
		va_end(ap);
		snprintf(res.error, sizeof res.error, "cage %s%s%.300s%s: %s", job->cage,
			 where[0] ? " (" : "", where, where[0] ? ")" : "", text);
	}
	if (reply_len && (res.reply = malloc(reply_len + 1))) {
		memcpy(res.reply, reply, reply_len);
		res.reply[reply_len] = '\0';
		res.reply_len = reply_len;
	}
	free_delivery(d);
	job->done(job, &res);
	job_result_release(&res);
}

static const char *request_error_text(enum evhttp_request_error e)
{
	switch (e) {
	case EVREQ_HTTP_TIMEOUT: return "no answer in time";
	case EVREQ_HTTP_EOF: return "the connection closed before an answer";
	case EVREQ_HTTP_INVALID_HEADER: return "answered with a malformed header";
	case EVREQ_HTTP_BUFFER_ERROR: return "connection failed (refused, unreachable or reset)";
	default: return "request failed";
	}
}

static void on_error(enum evhttp_request_error error, void *arg)
{
	struct delivery *d = arg;

	d->failed = true;
	d->error = error;
}

static void fail_later(struct delivery *d, const char *why);

static void on_answer(struct evhttp_request *req, void *arg)
{
	struct delivery *d = arg;
	struct evbuffer *body;
	const char *text;
	size_t len;
	int code;

	d->req = NULL;	/* evhttp frees it after this callback */
	if (d->relay->closing) {
		free_delivery(d);
		return;
	}
	code = req ? evhttp_request_get_response_code(req) : 0;
	if (code == 0) {
		const char *why = request_error_text(d->failed ? d->error : EVREQ_HTTP_BUFFER_ERROR);

		if (d->in_run)	/* failed inside evhttp_make_request: no done() yet */
			fail_later(d, why);
		else
			complete(d, WORKER_RETRY, NULL, 0, "%s", why);
		return;
	}
	body = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(body);
	if (len > 512)
		len = 512;
	text = len ? (const char *)evbuffer_pullup(body, (ev_ssize_t)len) : "";
	if (code == 202)
		complete(d, WORKER_OK, text, len, NULL);
	else
		complete(d, code == 400 || code == 413 ? WORKER_FAIL : WORKER_RETRY, NULL, 0,
			 "answered %d: %.*s", code, (int)len, text);
}

/*
 * The copy (url) a call's first delivery goes to: chosen by its id.  The
 * hash is FNV-1a with an offset basis that is not the standard one (a digit
 * short); it must stay as it is, or an upgrade would send retries of calls
 * delivered by an older version (whose attempts did not name their copy) to
 * another copy.
 */
static int url_of(const char *id, int count)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ULL;
	return (int)(h % (uint64_t)count);
}

/*
 * The copy that takes a delivery.  A copy remembers Idempotency-Keys only
 * in its own store, so a delivery repeated after a lost answer must go
 * where the earlier one went: the copy its last attempt recorded (the
 * job's version, "CAGE@HOST:PORT"), as long as the config still lists it,
 * wherever it now is in the list.  Otherwise the copy its id hashes to,
 * which is also the choice when the version (cut to fit a record) fits
 * several copies and that one is among them.
 */
static int copy_of(const struct cage_conf *cc, const struct job *job)
{
	char version[RECORD_VERSION_MAX + 1];
	int hashed = url_of(job->id, cc->url_count), first = -1;

	for (int u = 0; u < cc->url_count; u++) {
		copy_version(version, sizeof version, job->cage, cc, u);
		if (strcmp(version, job->version))
			continue;
		if (u == hashed)
			return u;
		if (first < 0)
			first = u;
	}
	return first >= 0 ? first : hashed;
}

/*
 * The longest attempt_timeout of any queue.  A connection carries
 * deliveries of every queue, and its timeout applies at once to the
 * request in flight, so it is set once, to this; each delivery's own
 * deadline ends it at its queue's attempt_timeout.
 */
static int64_t longest_attempt_ms(const struct host_conf *conf)
{
	int64_t ms = 1000;

	for (const struct queue_conf *q = conf->queues; q; q = q->next)
		if (q->attempt_timeout_ms > ms)
			ms = q->attempt_timeout_ms;
	return ms;
}

/* The connection to use for a delivery to url u of cage c (made on first use). */
static struct evhttp_connection *connection(struct relay *r, struct relay_cage *c, int u)
{
	struct url_conns *uc = &c->urls[u];
	unsigned i = uc->next++ % RELAY_CONNS_PER_URL;

	if (!uc->conn[i]) {
		uc->conn[i] = evhttp_connection_base_new(r->base, r->dns, c->conf->urls[u].host,
							 (unsigned short)c->conf->urls[u].port);
		if (uc->conn[i]) {
			int64_t ms = longest_attempt_ms(r->conf);
			struct timeval timeout = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

			evhttp_connection_set_retries(uc->conn[i], 0);
			evhttp_connection_set_timeout_tv(uc->conn[i], &timeout);
			/* a peer refusing a call early (413 for a payload over its
			 * max_body_size) may close while the body is still being
			 * sent: its answer is read, not taken for a lost connection */
			evhttp_connection_set_flags(uc->conn[i], EVHTTP_CON_READ_ON_WRITE_ERROR);
			/* an answer is a short JSON line: a peer (or proxy) that
			 * sends more is not buffered without bound */
			evhttp_connection_set_max_headers_size(uc->conn[i], 16 << 10);
			evhttp_connection_set_max_body_size(uc->conn[i], 64 << 10);
		}
	}
	return uc->conn[i];
}

/*
 * attempt_timeout passed: the request goes, and the attempt fails.  Whether
 * the other cage got it is unknown; the retry's Idempotency-Key settles
 * that.  When the request was being sent, its connection is closed, and
 * with a reset (SO_LINGER 0), not a FIN: what the kernel still holds of it
 * is thrown away, not sent on later, when the receiver may already have
 * forgotten the key.  (When the request only waited in the connection's
 * queue, the connection stays; its next close is then a reset too, which
 * loses nothing: it only closes when its requests are done or failed.)
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;
	struct evhttp_connection *conn = d->req ? evhttp_request_get_connection(d->req) : NULL;
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	evutil_socket_t sock = bev ? bufferevent_getfd(bev) : -1;
	struct linger reset = { 1, 0 };

	(void)fd;
	(void)what;
	if (sock >= 0)
		setsockopt(sock, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
	if (d->req) {
		evhttp_cancel_request(d->req);
		d->req = NULL;
	}
	complete(d, WORKER_RETRY, NULL, 0, "no answer within %lld ms",
		 (long long)d->job->timeout_ms);
}

static void on_failed_start(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;

	(void)fd;
	(void)what;
	if (!d->relay->closing)
		complete(d, WORKER_RETRY, NULL, 0, "%s", d->why);
}

/* A delivery that could not start: its failure, from the loop (job->done
 * must never run inside relay_run). */
static void fail_later(struct delivery *d, const char *why)
{
	snprintf(d->why, sizeof d->why, "%s", why);
	/* the deadline's event, never added yet, runs the failure instead:
	 * nothing to allocate, so this cannot fail */
	evtimer_del(d->deadline);
	evtimer_assign(d->deadline, d->relay->base, on_failed_start, d);
	event_active(d->deadline, EV_TIMEOUT, 1);
}

/* The attempts relay_run() had no memory for: each a retry. */
static void fail_starved(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct job *job;

	(void)fd;
	(void)what;
	while ((job = TAILQ_FIRST(&r->starved))) {
		char version[RECORD_VERSION_MAX + 1];

		TAILQ_REMOVE(&r->starved, job, link);
		kept_version(version, sizeof version, job);
		job_fail(job, WORKER_RETRY, version, "cage %s: out of memory for the delivery",
			 job->cage);
	}
}

void relay_run(struct relay *r, struct job *job)
{
	struct delivery *d = calloc(1, sizeof *d);
	struct evhttp_connection *conn;
	struct evhttp_request *req;
	struct evkeyvalq *headers;
	struct timeval timeout;
	char path[3 * NAME_MAX_LEN + 32], value[512];
	const struct cage_conf *cc;

	if (d)
		d->deadline = evtimer_new(r->base, on_deadline, d);
	if (!d || !d->deadline) {
		/* job->done must not run from here: it fails from the loop, through
		 * the job's own (otherwise unused) link, with nothing to allocate */
		free(d);
		TAILQ_INSERT_TAIL(&r->starved, job, link);
		event_active(r->starved_ev, EV_TIMEOUT, 0);
		return;
	}
	d->relay = r;
	d->job = job;
	LIST_INSERT_HEAD(&r->deliveries, d, link);
	for (d->cage = r->cages; d->cage && strcmp(d->cage->conf->name, job->cage);
	     d->cage = d->cage->next)
		;
	if (!d->cage) {
		snprintf(value, sizeof value, "no [cage %s] in the config", job->cage);
		log_unknown_cage(r, job);
		fail_later(d, value);
		return;
	}
	cc = d->cage->conf;
	d->url = copy_of(cc, job);
	conn = connection(r, d->cage, d->url);
	req = conn ? evhttp_request_new(on_answer, d) : NULL;
	if (!req) {
		fail_later(d, "out of memory for the request");
		return;
	}
	evhttp_request_set_error_cb(req, on_error);
	timeout.tv_sec = job->timeout_ms / 1000;
	timeout.tv_usec = (job->timeout_ms % 1000) * 1000;
	headers = evhttp_request_get_output_headers(req);
	snprintf(value, sizeof value, "%s:%d", cc->urls[d->url].host, cc->urls[d->url].port);
	evhttp_add_header(headers, "Host", value);
	evhttp_add_header(headers, "Content-Type", "application/octet-stream");
	snprintf(value, sizeof value, "cage-%s-%s-%s", r->identity, cc->name, job->id);
	evhttp_add_header(headers, "Idempotency-Key", value);
	/* never above this call's own id: its key must stay known there */
	evhttp_add_header(headers, "Cage-Answered-Below",
			  strcmp(d->cage->answered_below, job->id) < 0 ? d->cage->answered_below
								       : job->id);
	if (cc->token[0]) {
		snprintf(value, sizeof value, "Bearer %s", cc->token);
		evhttp_add_header(headers, "Authorization", value);
	}
	evbuffer_add(evhttp_request_get_output_buffer(req), job->payload ? job->payload : "",
		     job->payload_len);
	snprintf(path, sizeof path, "/v1/enqueue/%s/%s/%s", job->queue, job->module, job->method);
	d->in_run = true;
	d->req = req;
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path) < 0) {
		/* the connection freed the request (event2/http.h) */
		d->req = NULL;
		if (!d->why[0])
			fail_later(d, "cannot send the request");
	} else if (!d->why[0]) {
		evtimer_add(d->deadline, &timeout);
	}
	d->in_run = false;
}

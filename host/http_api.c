/*
 * http_api.c - request routing and the handlers of the HTTP interface (see
 * http_api.h).  Enqueue replies wait for the turn's commit (batch.h); sync
 * calls wait for their worker job.  Every request gets exactly one reply.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "backup.h"
#include "batch.h"
#include "call_pages.h"
#include "clock.h"
#include "conf.h"
#include "duration.h"
#include "http_api.h"
#include "http_guard.h"
#include "relay.h"
#include "log.h"
#include "names.h"
#include "plugin_dir.h"
#include "record.h"
#include "scheduler.h"
#include "store.h"
#include "worker.h"

/* Sync calls waiting for a worker beyond this get 503. */
#define MAX_SYNC_WAITING 10000
/* How often the connection of a waiting sync call with a pipelined request
 * behind it is looked at for its end. */
#define HANGUP_RECHECK_MS 250

struct http_api {
	struct http_api_deps d;
	struct event_base *base;
	const struct timeval *sync_timeout;	/* a common timeout of base */
	struct evhttp *http;
	uint64_t enqueued, duplicates, sync_calls, rejected, abandoned;
	uint64_t enqueues_failed;	/* answered 503: the call could not be stored */
	int port;			/* the port actually bound */
	bool serving;			/* http_api_start() was called */
	bool stopping;			/* http_api_stop() was called */
	LIST_HEAD(, sync_call) running;	/* sync calls not answered yet */
	int replies_waiting;		/* enqueues and requeues waiting for the disk,
					 * and a backup being made */
	struct evhttp_request *backup_req;	/* waiting for the backup it asked for */
	uint64_t backups, backups_failed;
};

/*
 * A sync call must start within sync_timeout of its arrival: one still
 * waiting then is answered 504 and never runs (its caller may well try
 * again).  Waiting in the pool, it is taken back at once; behind another
 * job in a worker, the worker is told to skip it; held elsewhere (parked
 * while its module is checked, handed back by a dying worker), the pool
 * refuses it when it comes up (start_by_ms).  Once running it has
 * sync_timeout of its own (the worker's deadline).
 *
 * A caller that closes its connection before its call starts has given up
 * on it (and may well try again): the call is stopped the same three ways
 * and never runs.  Once running it finishes; its answer is lost with the
 * connection.
 */
struct sync_call {
	struct job job;
	struct http_api *api;
	struct evhttp_request *req;
	struct event *deadline;		/* sync_timeout from the arrival */
	struct event *hangup;		/* the caller's end of the stream; both
					 * events in the same allocation, after
					 * the struct */
	bool gone;			/* the caller's end of the stream came */
	struct evbuffer *body;		/* a 200's, while its outgoing calls commit */
	LIST_ENTRY(sync_call) link;
};

/*
 * The start of every reply that waits for the disk (answer_when_durable):
 * what answered_durably() does around the reply's own answer needs it.
 */
struct durable_reply {
	struct http_api *api;
	struct evhttp_request *req;
	batch_done_fn answer;		/* answers req, and frees the reply */
};

struct enqueue_reply {
	struct durable_reply d;
	char id[CALL_ID_LEN + 1];
	bool duplicate;
	bool not_stored;		/* out of memory recording the call */
	bool deleted;			/* a dead call deleted (not requeued) */
};

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no
 * overlong forms, no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	uint32_t cp;

	if (p[0] < 0xc2 || p[0] > 0xf4 || left < len)
		return 0;
	cp = p[0] & (0x3f >> (len - 1));
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* s as a JSON string: a byte that is not part of well-formed UTF-8 (a
 * handler's error text may hold any bytes) becomes U+FFFD. */
static void json_string(struct evbuffer *out, const char *s, size_t len)
{
	evbuffer_add(out, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t seq;

		if (c == '"' || c == '\\') {
			evbuffer_add_printf(out, "\\%c", c);
		} else if (c < 0x20 || c == 0x7f) {
			evbuffer_add_printf(out, "\\u%04x", c);
		} else if (c < 0x80) {
			evbuffer_add(out, &s[i], 1);
		} else if ((seq = utf8_sequence((const unsigned char *)s + i, len - i))) {
			evbuffer_add(out, &s[i], seq);
			i += seq - 1;
		} else {
			evbuffer_add(out, "\\ufffd", 6);
		}
	}
	evbuffer_add(out, "\"", 1);
}

static void json_field(struct evbuffer *out, const char *key, const char *value, bool comma)
{
	evbuffer_add_printf(out, "%s\"%s\": ", comma ? ", " : "", key);
	json_string(out, value, strlen(value));
}

/* evhttp_send_reply, but for HEAD only the body's length goes out
 * (evhttp 2.1 would send the body too, and a keep-alive client would
 * take it for the start of the next answer) */
static void send_reply(struct evhttp_request *req, int code, const char *reason,
		       struct evbuffer *body)
{
	char length[32];

	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD || !body) {
		evhttp_send_reply(req, code, reason, body);
		return;
	}
	snprintf(length, sizeof length, "%zu", evbuffer_get_length(body));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", length);
	evhttp_send_reply(req, code, reason, NULL);
}

static void reply_json(struct evhttp_request *req, int code, const char *reason,
		       struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	send_reply(req, code, reason, body);
}

__attribute__((format(printf, 4, 5)))
static void reply_error(struct evhttp_request *req, int code, const char *reason,
			const char *fmt, ...)
{
	struct evbuffer *body = evbuffer_new();
	char text[RECORD_ERROR_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (!body) {
		evhttp_send_error(req, code, reason);
		return;
	}
	evbuffer_add_printf(body, "{");
	json_field(body, "error", text, false);
	evbuffer_add_printf(body, "}\n");
	reply_json(req, code, reason, body);
	evbuffer_free(body);
}

/* GET, or HEAD (which goes where GET does). */
static bool is_get(struct evhttp_request *req)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

/* 405 naming the methods the endpoint takes ("GET, HEAD" or "POST"). */
static void reply_wrong_method(struct evhttp_request *req, const char *allowed)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allowed);
	reply_error(req, 405, "Method Not Allowed", "use %s", allowed);
}

/*
 * Splits path into at most max segments (in place), without its leading
 * and trailing slashes ("//v1/..." from a base URL ending in '/' is fine).
 * An empty segment inside ("/v1/call//echo") stays, so that it is refused
 * as an empty name.  Returns the count, max + 1 when there are more.
 */
static int split_path(char *path, char **parts, int max)
{
	size_t len = strlen(path);
	char *rest = path;
	int n = 0;

	while (len > 0 && path[len - 1] == '/')
		path[--len] = '\0';
	while (*rest == '/')
		rest++;
	while (rest) {
		if (n == max)
			return max + 1;
		parts[n++] = strsep(&rest, "/");
	}
	return n;
}

static bool check_name(struct evhttp_request *req, const char *what, const char *name)
{
	if (name_is_valid(name, strlen(name)))
		return true;
	reply_error(req, 400, "Bad Request",
		    "invalid %s name '%.64s' (letters, digits, '_', '-', '.'; 1 to %d; no leading '.')",
		    what, name, NAME_MAX_LEN);
	return false;
}

static char *body_copy(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	char *copy;

	*len = evbuffer_get_length(in);
	copy = malloc(*len + 1);
	if (!copy)
		return NULL;
	evbuffer_remove(in, copy, *len);
	copy[*len] = '\0';
	return copy;
}

static void sync_call_free(struct sync_call *c)
{
	LIST_REMOVE(c, link);
	event_del(c->deadline);
	event_del(c->hangup);
	if (c->body)
		evbuffer_free(c->body);
	free(c->job.payload);
	free(c);
}

static void reply_ok(struct sync_call *c)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(c->req);

	evhttp_add_header(headers, "Content-Type", "application/octet-stream");
	send_reply(c->req, 200, "OK", c->body);
}

/* The calls the handler enqueued on other cages are on disk (or not). */
static void outgoing_stored(bool ok, void *arg)
{
	struct sync_call *c = arg;

	if (ok)
		reply_ok(c);
	else
		reply_error(c->req, 503, "Service Unavailable",
			    "the handler succeeded, but the calls it enqueued on other cages "
			    "were not stored: %s", batch_error(c->api->d.batch));
	sync_call_free(c);
}

/* c's caller has given up on it before it ran: it never will. */
static void abandon(struct sync_call *c)
{
	c->api->abandoned++;
	log_info("sync call %s.%s: its caller closed the connection before the call "
		 "started; it does not run", c->job.module, c->job.method);
	reply_error(c->req, 503, "Service Unavailable",
		    "the connection was closed (or its sending side shut) before the call "
		    "started; it did not run");
}

static void sync_done(struct job *job, struct job_result *res)
{
	struct sync_call *c = job->arg;
	struct evhttp_request *req = c->req;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct batch_mark mark;

	if (res->version[0])
		evhttp_add_header(headers, "X-Cage-Version", res->version);
	switch (res->status) {
	case WORKER_OK:
		c->body = evbuffer_new();
		if (!c->body) {
			reply_error(req, 500, "Internal Server Error", "out of memory");
			break;
		}
		if (res->reply_len)
			evbuffer_add(c->body, res->reply, res->reply_len);
		if (res->outgoing_count == 0) {
			reply_ok(c);
			break;
		}
		/* the 200 waits until what the handler enqueued is durable */
		mark = batch_mark(c->api->d.batch);
		if (scheduler_add_outgoing(c->api->d.scheduler, res) < 0 ||
		    batch_wait(c->api->d.batch, true, outgoing_stored, c) < 0) {
			batch_undo(c->api->d.batch, mark);
			reply_error(req, 500, "Internal Server Error", "out of memory for the "
				    "calls the handler enqueued on other cages; none was stored");
			break;
		}
		return;
	case WORKER_NO_MODULE:
	case WORKER_NO_METHOD:
		reply_error(req, 404, "Not Found", "%s", res->error);
		break;
	case WORKER_FAIL:
		reply_error(req, 422, "Unprocessable Entity", "handler failed: %s",
			    res->error[0] ? res->error : "(no message)");
		break;
	case WORKER_RETRY:
		reply_error(req, 503, "Service Unavailable", "handler asked for a retry: %s",
			    res->error[0] ? res->error : "(no message)");
		break;
	case WORKER_TIMEOUT:
		reply_error(req, 504, "Gateway Timeout", "%s", res->error);
		break;
	case WORKER_NOT_STARTED:
		if (c->gone)
			abandon(c);
		else
			reply_error(req, 504, "Gateway Timeout", "%s", res->error);
		break;
	default:
		reply_error(req, 502, "Bad Gateway", "%s", res->error);
		break;
	}
	sync_call_free(c);
}

/* sync_timeout since the call arrived: if it still waits for a worker, it
 * never runs.  (A running one ends at its worker's deadline; one whose
 * handler is done and waits for its outgoing calls to be stored is left
 * alone: the pool no longer has it.  One behind another job in a worker
 * is skipped, and done() answers it 504.) */
static void sync_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct sync_call *c = arg;

	(void)fd;
	(void)what;
	if (pool_cancel(c->api->d.pool, &c->job) != CANCEL_TAKEN_BACK)
		return;		/* done() answers: 504 if its worker skips it */
	reply_error(c->req, 504, "Gateway Timeout",
		    "no worker was free within sync_timeout (%lld ms); the call did not run",
		    (long long)c->job.timeout_ms);
	sync_call_free(c);
}

/* Has the peer ended its side of the stream (or reset the connection)? */
static bool stream_ended(evutil_socket_t fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * The caller's connection woke: its end of the stream came (it closed the
 * connection, reset it, or shut its sending side, which the README tells
 * clients not to do) while its call had not started, and the call never
 * runs: see pool_cancel for the three ways it is stopped.  The answer still
 * goes out, to a caller that may yet read it.
 *
 * Only readable (the next request, pipelined), the connection would wake
 * the loop again at once: it is looked at every HANGUP_RECHECK_MS instead.
 */
static void caller_gone(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval recheck = { 0, HANGUP_RECHECK_MS * 1000 };
	struct sync_call *c = arg;

	(void)what;
	if (!stream_ended(fd)) {
		event_assign(c->hangup, c->api->base, fd, EV_TIMEOUT, caller_gone, c);
		event_add(c->hangup, &recheck);
		return;
	}
	c->gone = true;
	/* should it come back to the pool (held elsewhere now, or handed
	 * back by a worker that dies), the pool refuses it */
	c->job.start_by_ms = 1;
	switch (pool_cancel(c->api->d.pool, &c->job)) {
	case CANCEL_TAKEN_BACK:
		abandon(c);
		sync_call_free(c);
		return;
	case CANCEL_ASKED:
		log_info("sync call %s.%s: its caller closed the connection; the worker that "
			 "holds it is told not to start it", c->job.module, c->job.method);
		return;		/* done() answers */
	case CANCEL_TOO_LATE:
		return;		/* running, or held elsewhere */
	}
}

/* Watches c's connection while c waits.  (EV_CLOSED alone would miss a
 * reset: libevent reports one as readable and writable, not closed.) */
static void watch_caller(struct sync_call *c)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(c->req);
	evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));

	event_assign(c->hangup, c->api->base, fd, EV_READ | EV_CLOSED, caller_gone, c);
	if (fd >= 0)
		event_add(c->hangup, NULL);	/* failing, the call waits as before */
}

static void handle_call(struct http_api *api, struct evhttp_request *req, char *module,
			char *method)
{
	struct sync_call *c;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_wrong_method(req, "POST");
		return;
	}
	if (!check_name(req, "module", module) || !check_name(req, "method", method))
		return;
	if (pool_waiting(api->d.pool, CLASS_SYNC) >= MAX_SYNC_WAITING) {
		api->rejected++;
		reply_error(req, 503, "Service Unavailable",
			    "%d sync calls are already waiting for a worker", MAX_SYNC_WAITING);
		return;
	}
	/* the events live right after the call: no allocation of their own;
	 * the deadline is a common timeout (one queue, not the heap) */
	c = calloc(1, sizeof *c + 2 * event_get_struct_event_size());
	if (!c || !(c->job.payload = body_copy(req, &c->job.payload_len))) {
		free(c);
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	c->api = api;
	c->req = req;
	c->job.kind = JOB_CALL;
	c->job.class = CLASS_SYNC;
	snprintf(c->job.module, sizeof c->job.module, "%s", module);
	snprintf(c->job.method, sizeof c->job.method, "%s", method);
	c->job.attempt = 1;
	c->job.timeout_ms = api->d.conf->sync_timeout_ms;
	c->job.start_by_ms = clock_mono_ms() + c->job.timeout_ms;
	c->job.done = sync_done;
	c->job.arg = c;
	c->deadline = (struct event *)(c + 1);
	c->hangup = (struct event *)((char *)c->deadline + event_get_struct_event_size());
	evtimer_assign(c->deadline, api->base, sync_deadline, c);
	if (evtimer_add(c->deadline, api->sync_timeout) < 0) {
		free(c->job.payload);
		free(c);
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	api->sync_calls++;
	LIST_INSERT_HEAD(&api->running, c, link);
	watch_caller(c);
	plugins_run(api->d.plugins, &c->job);
}

/* Runs a durable reply's answer, and writes it to the socket at once. */
static void answered_durably(bool ok, void *arg)
{
	struct durable_reply *d = arg;
	/* taken before answering, which may free the connection */
	struct http_guard_conn conn = http_guard_conn_of(d->req);

	d->api->replies_waiting--;
	d->answer(ok, d);
	http_guard_write_now(conn);
}

/*
 * Has answer(d) answer d->req once this turn's writes are on disk (d->api
 * and d->req set; d is the first member of its reply, which answer()
 * frees).  Until then the request counts as unanswered
 * (http_api_unanswered), its connection reads ahead
 * (http_guard_read_ahead), and the answer is written as soon as it is
 * made (http_guard_write_now).
 */
static int answer_when_durable(struct durable_reply *d, batch_done_fn answer)
{
	d->answer = answer;
	if (batch_wait(d->api->d.batch, true, answered_durably, d) < 0)
		return -1;
	d->api->replies_waiting++;
	http_guard_read_ahead(d->req);
	return 0;
}

static void enqueue_committed(bool ok, void *arg)
{
	struct enqueue_reply *r = arg;
	struct evbuffer *body = evbuffer_new();

	/* counted once stored: a commit can still fail before */
	if (ok && !r->not_stored) {
		if (r->duplicate)
			r->d.api->duplicates++;
		else
			r->d.api->enqueued++;
	}
	if (r->not_stored) {
		reply_error(r->d.req, 500, "Internal Server Error",
			    "out of memory: the call was not stored");
	} else if (!ok) {
		r->d.api->enqueues_failed++;
		reply_error(r->d.req, 503, "Service Unavailable",
			    "the call was not stored durably, so not accepted: %s",
			    batch_error(r->d.api->d.batch));
	} else if (!body) {
		reply_error(r->d.req, 500, "Internal Server Error", "out of memory");
	} else {
		/* {"id": "ID"} or {"id": "ID", "duplicate": true}, put together
		 * without a printf: this runs once per enqueue */
		const char *end = r->duplicate ? "\", \"duplicate\": true}\n" : "\"}\n";

		evbuffer_add(body, "{\"id\": \"", 8);
		evbuffer_add(body, r->id, strlen(r->id));
		evbuffer_add(body, end, strlen(end));
		reply_json(r->d.req, 202, "Accepted", body);
	}
	if (body)
		evbuffer_free(body);
	free(r);
}

static bool valid_idem_key(const char *key)
{
	size_t len = strlen(key);

	if (len == 0 || len > RECORD_IDEM_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isprint((unsigned char)key[i]))
			return false;
	return true;
}

static bool valid_id(const char *id)
{
	if (strlen(id) != CALL_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
			return false;
	return true;
}

/*
 * A delivery from another cage (relay.h) has the key "cage-SENDER-ID":
 * puts "cage-SENDER-" into prefix.  False when key is not of that form.
 */
static bool delivery_prefix(const char *key, char *prefix, size_t size)
{
	size_t len = strlen(key);

	if (len < strlen("cage-") + 2 + CALL_ID_LEN || strncmp(key, "cage-", 5) != 0 ||
	    key[len - CALL_ID_LEN - 1] != '-' || !valid_id(key + len - CALL_ID_LEN) ||
	    len - CALL_ID_LEN >= size)
		return false;
	snprintf(prefix, size, "%.*s", (int)(len - CALL_ID_LEN), key);
	return true;
}

/*
 * Looks up the key of a delivery whose sender prefix is sender (see
 * delivery_prefix), where each version kept it: delivered.db; idem.db,
 * before delivered.db; and there under "cage-IDENTITY-ID", before [cage]
 * names were in keys ("cage-IDENTITY-CAGE-ID", IDENTITY being 16 hex
 * digits), for a delivery made before the sender's upgrade, answer lost,
 * and sent again after it.  Returns as store_find_idem().
 */
static int find_delivery(struct store *store, const char *key, const char *sender,
			 char id[CALL_ID_LEN + 1])
{
	const size_t identity_end = strlen("cage-") + CALL_ID_LEN;	/* "-" after it */
	char identity[CALL_ID_LEN + 1], older[RECORD_IDEM_MAX + 1];
	int rc = store_find_delivery(store, key, id);

	if (rc == 1)
		rc = store_find_idem(store, key, id);
	/* "cage-IDENTITY-" and at least one character of a name, then "-" */
	if (rc != 1 || strlen(sender) <= identity_end + 2 || sender[identity_end] != '-')
		return rc;
	snprintf(identity, sizeof identity, "%.*s", CALL_ID_LEN, sender + strlen("cage-"));
	if (!valid_id(identity))
		return rc;
	snprintf(older, sizeof older, "cage-%s-%s", identity, key + strlen(sender));
	return store_find_idem(store, older, id);
}

/*
 * Reads the query string of req into params (initialised by the caller,
 * who clears it with evhttp_clear_headers) and points value[i] at the value
 * of option name[i], or NULL when it is not given.  A malformed query, an
 * option not in name (usage then says what the endpoint takes) or one given
 * twice is answered 400 here; returns false then.
 */
static bool query_options(struct evhttp_request *req, struct evkeyvalq *params,
			  const char *const name[], const char *value[], size_t count,
			  const char *usage)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyval *kv;

	for (size_t i = 0; i < count; i++)
		value[i] = NULL;
	if (!query || !query[0])
		return true;
	if (evhttp_parse_query_str(query, params) < 0) {
		reply_error(req, 400, "Bad Request",
			    "malformed query string: options are NAME=VALUE, joined by &; %s", usage);
		return false;
	}
	TAILQ_FOREACH(kv, params, next) {
		size_t i = 0;

		while (i < count && strcmp(kv->key, name[i]) != 0)
			i++;
		if (i == count) {
			reply_error(req, 400, "Bad Request", "unknown option %.64s; %s", kv->key,
				    usage);
			return false;
		}
		if (value[i]) {
			reply_error(req, 400, "Bad Request", "%s is given more than once", name[i]);
			return false;
		}
		value[i] = kv->value;
	}
	return true;
}

/*
 * The options of an enqueue, from the query string: delay=DURATION (as in
 * the config: "90s", "10m", "2h") puts the first attempt off by that long.
 * A delay the call would not outlive, an unknown option or a malformed
 * query is answered 400 here; returns false then.
 */
static bool enqueue_options(struct evhttp_request *req, const struct queue_conf *q,
			    int64_t *delay_ms)
{
	static const char *const name[] = { "delay" };
	const char *delay;
	struct evkeyvalq params;
	char err[128], life[32];
	bool ok;

	*delay_ms = 0;
	TAILQ_INIT(&params);
	ok = query_options(req, &params, name, &delay, 1, "enqueue takes delay=DURATION");
	if (ok && delay && duration_parse(delay, delay_ms, err, sizeof err) < 0) {
		reply_error(req, 400, "Bad Request", "delay=%.64s: %s", delay, err);
		ok = false;
	} else if (ok && *delay_ms > q->retry.lifetime_ms) {
		reply_error(req, 400, "Bad Request",
			    "delay=%.64s is longer than the lifetime of queue %s (%s): the call "
			    "would expire before its first attempt", delay, q->name,
			    duration_format(q->retry.lifetime_ms, life, sizeof life));
		ok = false;
	}
	evhttp_clear_headers(&params);
	return ok;
}

static int header_count(const struct evkeyvalq *headers, const char *name)
{
	const struct evkeyval *h;
	int n = 0;

	TAILQ_FOREACH(h, headers, next)
		n += !evutil_ascii_strcasecmp(h->key, name);
	return n;
}

/* The call id in whichever table holds it: 0 (rec and *buf filled; free
 * *buf), 1 when no table has it, -1 on a storage error.  The caller has
 * run batch_sync(). */
static int lookup_call(struct http_api *api, const char *id, struct call_record *rec, void **buf)
{
	static const enum store_table tables[] = { TABLE_CALLS, TABLE_NEW, TABLE_DONE, TABLE_DEAD };

	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
		int rc = store_get_call(api->d.store, tables[i], id, rec, buf);

		if (rc <= 0)
			return rc;
	}
	return 1;
}

/*
 * A repeated Idempotency-Key is the same call only when it is for the same
 * queue, module and method (its body and delay are not compared): false,
 * with 422 answered, when the call stored under the key is another one.
 */
static bool same_target(struct http_api *api, struct evhttp_request *req, const char *id,
			const char *key, const char *queue, const char *module,
			const char *method)
{
	struct call_record rec;
	void *buf = NULL;
	bool same;

	if (lookup_call(api, id, &rec, &buf) != 0)
		return true;	/* its call is gone: the key alone answers */
	same = !strcmp(rec.queue, queue) && !strcmp(rec.module, module) &&
	       !strcmp(rec.method, method);
	if (!same)
		reply_error(req, 422, "Unprocessable Entity",
			    "Idempotency-Key %.64s was first used for %s/%s.%s (call %s), not "
			    "%s/%s.%s", key, rec.queue, rec.module, rec.method, id, queue, module,
			    method);
	free(buf);
	return same;
}

static void handle_enqueue(struct http_api *api, struct evhttp_request *req, char *queue,
			   char *module, char *method)
{
	struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
	const char *key = evhttp_find_header(headers, "Idempotency-Key");
	const char *answered_below = evhttp_find_header(headers, "Cage-Answered-Below");
	char sender[RECORD_IDEM_MAX + 1];
	const struct queue_conf *q;
	struct enqueue_reply *r;
	struct call_record rec;
	int64_t delay_ms;
	size_t payload_len;
	char *payload;
	bool is_new;
	int rc;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_wrong_method(req, "POST");
		return;
	}
	if (!check_name(req, "queue", queue) || !check_name(req, "module", module) ||
	    !check_name(req, "method", method))
		return;
	q = conf_queue(api->d.conf, queue);
	if (!q) {
		reply_error(req, 404, "Not Found", "no queue %s (queues are defined in the config)",
			    queue);
		return;
	}
	if (!enqueue_options(req, q, &delay_ms))
		return;
	if (key && header_count(headers, "Idempotency-Key") > 1) {
		reply_error(req, 400, "Bad Request", "more than one Idempotency-Key");
		return;
	}
	if (key && !valid_idem_key(key)) {
		reply_error(req, 400, "Bad Request",
			    "Idempotency-Key must be 1 to %d printable ASCII characters",
			    RECORD_IDEM_MAX);
		return;
	}
	if (answered_below && (!key || !delivery_prefix(key, sender, sizeof sender) ||
			       !valid_id(answered_below))) {
		reply_error(req, 400, "Bad Request",
			    "Cage-Answered-Below is for deliveries from other cages: it needs an "
			    "Idempotency-Key cage-SENDER-ID and is a call id (%d lowercase hex "
			    "digits)", CALL_ID_LEN);
		return;
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	r->d.api = api;
	r->d.req = req;
	batch_hand_over(api->d.batch);
	if (key) {
		batch_sync(api->d.batch);
		rc = answered_below ? find_delivery(api->d.store, key, sender, r->id)
				    : store_find_idem(api->d.store, key, r->id);
		if (rc < 0)
			goto storage_error;
		if (rc == 0 && !answered_below &&
		    !same_target(api, req, r->id, key, queue, module, method)) {
			free(r);
			return;
		}
		if (rc == 0) {
			/* the first call may not be durable yet: answer after the commit */
			r->duplicate = true;
			if (answer_when_durable(&r->d, enqueue_committed) < 0)
				goto oom;
			return;
		}
	}
	/* the sender has the answers to its deliveries below that id: their
	 * keys can go, in the transaction that stores the new call */
	if (answered_below && batch_forget_deliveries(api->d.batch, sender, answered_below) < 0)
		goto oom;
	store_new_call(api->d.store, &rec, queue, module, method);
	if (key)
		snprintf(rec.idem_key, sizeof rec.idem_key, "%s", key);
	rec.delivery = answered_below != NULL;
	payload = body_copy(req, &payload_len);
	if (!payload)
		goto oom;
	rec.payload = payload;
	rec.payload_len = payload_len;
	rec.when_ms += delay_ms;
	snprintf(r->id, sizeof r->id, "%s", rec.id);
	/* the waiter first: when it cannot wait, nothing is stored */
	if (answer_when_durable(&r->d, enqueue_committed) < 0) {
		free(payload);
		goto oom;
	}
	/* a delayed call waits in calls.db: the scheduler's timer finds it */
	is_new = !delay_ms && scheduler_take_new(api->d.scheduler, queue);
	rc = batch_add_call(api->d.batch, &rec, is_new);
	if (rc == 0 && is_new)
		scheduler_add_new(api->d.scheduler, &rec);
	else if (rc == 0 && delay_ms)
		scheduler_note_due(api->d.scheduler, rec.when_ms);
	free(payload);
	if (rc < 0)
		r->not_stored = true;	/* enqueue_committed answers 500 */
	return;
storage_error:
	/* the Idempotency-Key lookup failed: nothing was written */
	log_error("enqueue: %s", store_error(api->d.store));
	api->enqueues_failed++;
	batch_touch(api->d.batch);
	reply_error(req, 503, "Service Unavailable", "the call could not be stored: %s",
		    store_error(api->d.store));
	free(r);
	return;
oom:
	reply_error(req, 500, "Internal Server Error", "out of memory");
	free(r);
}

struct history {
	struct evbuffer *out;
	bool text;
	int count;
};

static void add_history(uint32_t n, const struct attempt_record *a, void *arg)
{
	struct history *h = arg;
	char at[CLOCK_ISO_LEN + 1];

	clock_format_iso(a->at_ms, at, sizeof at);
	if (h->text) {
		evbuffer_add_printf(h->out, "  #%-3" PRIu32 " %s  %-20s %s%s%s\n", n, at,
				    a->version, record_outcome_name(a->outcome),
				    a->error[0] ? "  " : "", a->error);
	} else {
		evbuffer_add_printf(h->out, "%s{\"attempt\": %" PRIu32, h->count ? ", " : "", n);
		json_field(h->out, "at", at, true);
		json_field(h->out, "version", a->version, true);
		json_field(h->out, "outcome", record_outcome_name(a->outcome), true);
		json_field(h->out, "error", a->error, true);
		evbuffer_add_printf(h->out, "}");
	}
	h->count++;
}

/*
 * True when the Accept header lists text/plain (any case, with any
 * parameters but q=0) among its media ranges: the text form.  Anything
 * else, wildcards included, gets JSON.
 */
static bool wants_text(struct evhttp_request *req)
{
	const char *p = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");

	while (p && *p) {
		size_t len = strcspn(p, ",");
		size_t type = strcspn(p, ",;");
		const char *q;

		while (type && len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
			type--;
		}
		while (type && (p[type - 1] == ' ' || p[type - 1] == '\t'))
			type--;
		if (type == 10 && !evutil_ascii_strncasecmp(p, "text/plain", 10)) {
			q = strstr(p, "q=");
			if (!q || q >= p + len || strtod(q + 2, NULL) > 0)
				return true;
		}
		p = p[len] ? p + len + 1 : NULL;
	}
	return false;
}

static void describe_call(struct http_api *api, struct evhttp_request *req,
			  const struct call_record *r, const char *state)
{
	struct evbuffer *out = evbuffer_new();
	struct history h = { out, wants_text(req), 0 };
	char enq[CLOCK_ISO_LEN + 1], when[CLOCK_ISO_LEN + 1];
	bool pending = r->state == CALL_PENDING;

	if (!out) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	clock_format_iso(r->enqueued_ms, enq, sizeof enq);
	clock_format_iso(r->when_ms, when, sizeof when);
	if (h.text) {
		evbuffer_add_printf(out, "id:            %s\n", r->id);
		if (r->cage[0])
			evbuffer_add_printf(out, "to cage:       %s\n", r->cage);
		evbuffer_add_printf(out,
			"state:         %s\nqueue:         %s\n"
			"module:        %s\nmethod:        %s\nattempts:      %" PRIu32 "\n"
			"enqueued:      %s\n%s %s\nlast version:  %s\nlast error:    %s\n",
			state, r->queue, r->module, r->method, r->attempts, enq,
			pending ? "next attempt: " : "finished:     ", when,
			r->version[0] ? r->version : "-", r->error[0] ? r->error : "-");
		if (r->state != CALL_DONE)
			evbuffer_add_printf(out, "payload:       %zu bytes\n", r->payload_len);
		if (r->idem_key[0])
			evbuffer_add_printf(out, "idempotency:   %s\n", r->idem_key);
		evbuffer_add_printf(out, "history:\n");
	} else {
		evbuffer_add_printf(out, "{");
		json_field(out, "id", r->id, false);
		json_field(out, "state", state, true);
		if (r->cage[0])
			json_field(out, "cage", r->cage, true);
		json_field(out, "queue", r->queue, true);
		json_field(out, "module", r->module, true);
		json_field(out, "method", r->method, true);
		evbuffer_add_printf(out, ", \"attempts\": %" PRIu32, r->attempts);
		json_field(out, "enqueued", enq, true);
		if (pending)
			json_field(out, "next_attempt", when, true);
		else
			evbuffer_add_printf(out, ", \"next_attempt\": null");
		if (!pending)
			json_field(out, "finished", when, true);
		else
			evbuffer_add_printf(out, ", \"finished\": null");
		if (r->version[0])
			json_field(out, "version", r->version, true);
		else
			evbuffer_add_printf(out, ", \"version\": null");	/* no attempt yet */
		if (r->error[0])
			json_field(out, "last_error", r->error, true);
		else
			evbuffer_add_printf(out, ", \"last_error\": null");
		if (r->idem_key[0])
			json_field(out, "idempotency_key", r->idem_key, true);
		if (r->state != CALL_DONE)
			evbuffer_add_printf(out, ", \"payload_bytes\": %zu", r->payload_len);
		evbuffer_add_printf(out, ", \"history\": [");
	}
	if (store_list_attempts(api->d.store, r->id, add_history, &h) < 0)
		log_error("history of %s: %s", r->id, store_error(api->d.store));
	if (h.count == 0 && r->state == CALL_DONE) {
		/* done at the first attempt: no history record was written */
		struct attempt_record first = { .at_ms = r->when_ms, .outcome = OUTCOME_OK };

		snprintf(first.version, sizeof first.version, "%s", r->version);
		add_history(1, &first, &h);
	}
	if (h.text) {
		if (!h.count)
			evbuffer_add_printf(out, "  (no attempts yet)\n");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(req, 200, "OK", out);
	} else {
		evbuffer_add_printf(out, "]}\n");
		reply_json(req, 200, "OK", out);
	}
	evbuffer_free(out);
}

/*
 * Checks a /v1/calls/ID request (its method and the id) and finds the call
 * in any table.  Returns 0 with *buf to free, or nonzero once replied to.
 */
static int find_call(struct http_api *api, struct evhttp_request *req,
		     enum evhttp_cmd_type method, const char *id, struct call_record *rec,
		     void **buf)
{
	int rc;

	if (method == EVHTTP_REQ_GET ? !is_get(req) : evhttp_request_get_command(req) != method) {
		reply_wrong_method(req, method == EVHTTP_REQ_POST ? "POST" : "GET, HEAD, DELETE");
		return -1;
	}
	if (!valid_id(id)) {
		reply_error(req, 400, "Bad Request", "a call id is 16 lowercase hex digits");
		return -1;
	}

	batch_sync(api->d.batch);
	rc = lookup_call(api, id, rec, buf);
	if (rc < 0)
		reply_error(req, 500, "Internal Server Error", "%s", store_error(api->d.store));
	else if (rc > 0)
		reply_error(req, 404, "Not Found", "no call %s", id);
	return rc;
}

#define LIST_LIMIT_DEFAULT 100

/* The options of a request for a page of calls (call_pages.h). */
struct call_page {
	struct call_filter filter;
	const char *after;	/* NULL: from the oldest */
	int limit;
	bool dead;		/* state=dead; else state=pending */
};

/* GET /v1/calls?state=...: the page being written. */
struct call_list {
	const struct scheduler *scheduler;
	int count;
	bool text;
	struct evbuffer *out;
};

static bool list_call_visit(const struct call_record *r, void *arg)
{
	struct call_list *l = arg;
	bool dead = r->state == CALL_DEAD;
	const char *state = dead ? "dead"
			    : scheduler_is_running(l->scheduler, r->id) ? "running" : "pending";
	char enq[CLOCK_ISO_LEN + 1], when[CLOCK_ISO_LEN + 1];

	clock_format_iso(r->enqueued_ms, enq, sizeof enq);
	clock_format_iso(r->when_ms, when, sizeof when);
	if (l->text) {
		evbuffer_add_printf(l->out, "%s  %s  %s.%s  attempts=%" PRIu32 "  %s=%s%s  %s\n",
				    r->id, r->queue, r->module, r->method, r->attempts,
				    dead ? "died" : "next", when,
				    strcmp(state, "running") ? "" : "  running",
				    r->error[0] ? r->error : "-");
	} else {
		evbuffer_add_printf(l->out, "%s{", l->count ? ", " : "");
		json_field(l->out, "id", r->id, false);
		if (!dead)
			json_field(l->out, "state", state, true);
		if (r->cage[0])
			json_field(l->out, "cage", r->cage, true);
		json_field(l->out, "queue", r->queue, true);
		json_field(l->out, "module", r->module, true);
		json_field(l->out, "method", r->method, true);
		evbuffer_add_printf(l->out, ", \"attempts\": %" PRIu32, r->attempts);
		json_field(l->out, "enqueued", enq, true);
		json_field(l->out, dead ? "finished" : "next_attempt", when, true);
		json_field(l->out, "version", r->version, true);
		json_field(l->out, "last_error", r->error, true);
		evbuffer_add_printf(l->out, ", \"payload_bytes\": %zu}", r->payload_len);
	}
	l->count++;
	return false;
}

/*
 * Reads the options of a request for a page of calls (GET and DELETE
 * /v1/calls, POST /v1/calls/requeue) into p: false, with 400 answered, for
 * a state other than dead or pending, or an unknown option.
 */
static bool call_page_options(struct evhttp_request *req, struct evkeyvalq *params,
			      struct call_page *p)
{
	enum { STATE, QUEUE, MODULE, METHOD, AFTER, LIMIT, OPTIONS };
	static const char *const name[OPTIONS] = { "state", "queue", "module",
						   "method", "after", "limit" };
	const char *value[OPTIONS], *state, *limit;
	char *end;
	long n;

	memset(p, 0, sizeof *p);
	if (!query_options(req, params, name, value, OPTIONS,
			   "/v1/calls takes state, queue, module, method, after and limit"))
		return false;
	state = value[STATE];
	limit = value[LIMIT];
	p->filter.queue = value[QUEUE];
	p->filter.module = value[MODULE];
	p->filter.method = value[METHOD];
	p->after = value[AFTER];
	if (!state || (strcmp(state, "dead") != 0 && strcmp(state, "pending") != 0)) {
		reply_error(req, 400, "Bad Request",
			    "/v1/calls takes state=pending (calls not finished yet) or "
			    "state=dead; any call is shown by its id, /v1/calls/ID");
		return false;
	}
	p->dead = !strcmp(state, "dead");
	if (p->after && !valid_id(p->after)) {
		reply_error(req, 400, "Bad Request", "after=%.64s: a call id is 16 lowercase hex "
			    "digits", p->after);
		return false;
	}
	p->limit = LIST_LIMIT_DEFAULT;
	if (limit) {
		errno = 0;
		n = strtol(limit, &end, 10);
		if (errno || end == limit || *end || n < 1 || n > CALL_PAGE_LIMIT_MAX) {
			reply_error(req, 400, "Bad Request", "limit=%.64s: a number from 1 to %d",
				    limit, CALL_PAGE_LIMIT_MAX);
			return false;
		}
		p->limit = (int)n;
	}
	return true;
}

/*
 * GET /v1/calls?state=dead|pending[&queue=Q][&module=M][&method=F][&after=ID][&limit=N]:
 * a page of dead calls, or of calls waiting (for an attempt, or in one), in
 * id (age) order; "next" is the after= of the next page, null at the end
 * (see call_pages.h).
 */
static void handle_list(struct http_api *api, struct evhttp_request *req,
			const struct call_page *p)
{
	struct call_list l = { api->d.scheduler, 0, wants_text(req), evbuffer_new() };
	char next[CALL_ID_LEN + 1];

	if (!l.out) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (!l.text)
		evbuffer_add_printf(l.out, "{\"calls\": [");
	batch_sync(api->d.batch);
	if ((p->dead ? call_page_list(api->d.store, TABLE_DEAD, &p->filter, p->after, p->limit,
				      list_call_visit, &l, next)
		     : call_page_list_pending(api->d.store, &p->filter, p->after, p->limit,
					      scheduler_each_new, api->d.scheduler,
					      list_call_visit, &l, next)) < 0) {
		reply_error(req, 500, "Internal Server Error", "%s", store_error(api->d.store));
	} else if (l.text) {
		if (next[0])
			evbuffer_add_printf(l.out, "next: %s\n", next);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(req, 200, "OK", l.out);
	} else {
		evbuffer_add_printf(l.out, "], \"next\": ");
		if (next[0])
			evbuffer_add_printf(l.out, "\"%s\"}\n", next);
		else
			evbuffer_add_printf(l.out, "null}\n");
		reply_json(req, 200, "OK", l.out);
	}
	evbuffer_free(l.out);
}

/* A page of dead calls requeued or deleted, answered once on disk. */
struct dead_page_reply {
	struct durable_reply d;
	const char *done;	/* "requeued", "deleted" */
	int count;
	char next[CALL_ID_LEN + 1];
	bool text;
};

static void dead_page_committed(bool ok, void *arg)
{
	struct dead_page_reply *r = arg;
	struct evbuffer *body = ok ? evbuffer_new() : NULL;

	if (!ok) {
		reply_error(r->d.req, 503, "Service Unavailable", "no call was %s: %s", r->done,
			    batch_error(r->d.api->d.batch));
	} else if (!body) {
		reply_error(r->d.req, 500, "Internal Server Error", "out of memory after %d calls "
			    "were %s", r->count, r->done);
	} else if (r->text) {
		evbuffer_add_printf(body, "%s: %d\n", r->done, r->count);
		if (r->next[0])
			evbuffer_add_printf(body, "next: %s\n", r->next);
		evhttp_add_header(evhttp_request_get_output_headers(r->d.req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(r->d.req, 200, "OK", body);
	} else {
		evbuffer_add_printf(body, "{\"%s\": %d, \"next\": ", r->done, r->count);
		if (r->next[0])
			evbuffer_add_printf(body, "\"%s\"}\n", r->next);
		else
			evbuffer_add_printf(body, "null}\n");
		reply_json(r->d.req, 200, "OK", body);
	}
	if (body)
		evbuffer_free(body);
	free(r);
}

/*
 * POST /v1/calls/requeue?state=dead&... and DELETE /v1/calls?state=dead&...
 * (the options of GET): the dead calls of one page are requeued, or
 * deleted; 200 {"requeued"|"deleted": N, "next": ...} once that is on disk.
 */
static void handle_dead_page(struct http_api *api, struct evhttp_request *req,
			     const struct call_page *p, bool requeue)
{
	struct dead_page_reply *r = calloc(1, sizeof *r);

	if (!r) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	r->d.api = api;
	r->d.req = req;
	r->done = requeue ? "requeued" : "deleted";
	r->text = wants_text(req);
	batch_sync(api->d.batch);
	/* a part of the turn's transaction: failing, it fails nothing else */
	if (store_part_begin(api->d.store) < 0) {
		r->count = -1;
	} else {
		r->count = requeue ? dead_page_requeue(api->d.store, &p->filter, p->after, p->limit,
						       clock_wall_ms(), r->next)
				   : dead_page_delete(api->d.store, &p->filter, p->after, p->limit,
						      r->next);
		if (store_part_end(api->d.store, r->count >= 0) < 0)
			r->count = -1;
	}
	if (r->count < 0) {
		reply_error(req, 503, "Service Unavailable", "no call was %s: %s", r->done,
			    store_error(api->d.store));
		batch_touch(api->d.batch);
		free(r);
		return;
	}
	if (r->count > 0) {
		log_info("%d dead call%s %s (queue %s, module %s, method %s)", r->count,
			 r->count == 1 ? "" : "s", r->done,
			 p->filter.queue ? p->filter.queue : "any",
			 p->filter.module ? p->filter.module : "any",
			 p->filter.method ? p->filter.method : "any");
		if (requeue)
			scheduler_kick(api->d.scheduler);
	}
	if (answer_when_durable(&r->d, dead_page_committed) < 0) {
		reply_error(req, 500, "Internal Server Error", "out of memory before the %d calls "
			    "%s were on disk; GET /v1/calls?state=dead shows what took", r->count,
			    r->done);
		free(r);
	}
}

/*
 * /v1/calls: GET lists a page of calls, DELETE deletes a page of dead
 * ones; /v1/calls/requeue (requeue true): POST requeues a page of dead
 * ones.
 */
static void handle_calls(struct http_api *api, struct evhttp_request *req, bool requeue)
{
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	bool changes = requeue || method == EVHTTP_REQ_DELETE;
	struct evkeyvalq params;
	struct call_page p;

	TAILQ_INIT(&params);
	if (requeue ? method != EVHTTP_REQ_POST : !is_get(req) && method != EVHTTP_REQ_DELETE)
		reply_wrong_method(req, requeue ? "POST" : "GET, HEAD, DELETE");
	else if (!call_page_options(req, &params, &p))
		;	/* answered */
	else if (changes && !p.dead)
		reply_error(req, 400, "Bad Request", "only dead calls are %s a page at a time: "
			    "add state=dead", requeue ? "requeued" : "deleted");
	else if (changes)
		handle_dead_page(api, req, &p, requeue);
	else
		handle_list(api, req, &p);
	evhttp_clear_headers(&params);
}

static void handle_show(struct http_api *api, struct evhttp_request *req, const char *id)
{
	struct call_record rec;
	void *buf;
	const char *state;

	if (find_call(api, req, EVHTTP_REQ_GET, id, &rec, &buf) != 0)
		return;
	state = record_state_name(rec.state);
	if (rec.state == CALL_PENDING && scheduler_is_running(api->d.scheduler, id))
		state = "running";
	describe_call(api, req, &rec, state);
	free(buf);
}

static void dead_call_committed(bool ok, void *arg)
{
	struct enqueue_reply *r = arg;
	struct evbuffer *body = ok ? evbuffer_new() : NULL;

	if (body) {
		evbuffer_add_printf(body, "{\"id\": \"%s\", \"state\": \"%s\"}\n", r->id,
				    r->deleted ? "deleted" : "pending");
		reply_json(r->d.req, r->deleted ? 200 : 202, r->deleted ? "OK" : "Accepted", body);
		evbuffer_free(body);
	} else if (ok)
		reply_error(r->d.req, 500, "Internal Server Error", "out of memory");
	else
		reply_error(r->d.req, 503, "Service Unavailable", "could not %s %s: %s",
			    r->deleted ? "delete" : "requeue", r->id, batch_error(r->d.api->d.batch));
	free(r);
}

/*
 * POST /v1/calls/{id}/requeue (requeue true): a dead call becomes pending
 * again; DELETE /v1/calls/{id}: a dead call is forgotten.  Either is
 * answered once on disk; 409 for a call that is not dead.
 */
static void handle_dead_call(struct http_api *api, struct evhttp_request *req, const char *id,
			     bool requeue)
{
	const char *verb = requeue ? "requeue" : "delete";
	struct enqueue_reply *r;
	struct call_record rec;
	void *buf;
	int rc;

	if (find_call(api, req, requeue ? EVHTTP_REQ_POST : EVHTTP_REQ_DELETE, id, &rec, &buf))
		return;
	if (rec.state != CALL_DEAD) {
		reply_error(req, 409, "Conflict", "call %s is %s, not dead%s", id,
			    record_state_name(rec.state),
			    requeue ? "" : ": only dead calls are deleted");
		free(buf);
		return;
	}
	r = calloc(1, sizeof *r);
	/* a part of the turn's transaction: failing, it fails nothing else */
	rc = !r ? -1 : store_part_begin(api->d.store);
	if (rc == 0) {
		rc = requeue ? dead_call_requeue(api->d.store, &rec, clock_wall_ms())
			     : store_delete_dead(api->d.store, &rec);
		if (store_part_end(api->d.store, rc == 0) < 0)
			rc = -1;
	}
	free(buf);
	if (rc < 0) {
		reply_error(req, 503, "Service Unavailable", "could not %s %s: %s", verb, id,
			    r ? store_error(api->d.store) : "out of memory");
		batch_touch(api->d.batch);
		free(r);
		return;
	}
	r->d.api = api;
	r->d.req = req;
	r->deleted = !requeue;
	snprintf(r->id, sizeof r->id, "%s", id);
	log_info("call %s %s from the dead store", id, requeue ? "requeued" : "deleted");
	if (requeue)
		scheduler_kick(api->d.scheduler);
	if (answer_when_durable(&r->d, dead_call_committed) < 0) {
		/* done, but it cannot wait for the disk: say so now */
		reply_error(req, 500, "Internal Server Error", "out of memory before the %s "
			    "was on disk; GET /v1/calls/%s shows whether it took", verb, id);
		free(r);
	}
}

/*
 * POST /v1/calls/retry?module=M[&queue=Q][&method=F]: the calls of module
 * M (of queue Q, of method F) that wait for a retry are made due now, in
 * the background (scheduler_retry_now): the cause of their failures was
 * fixed outside the module.  202 at once.
 */
static void handle_retry(struct http_api *api, struct evhttp_request *req)
{
	enum { MODULE, QUEUE, METHOD, OPTIONS };
	static const char *const names[OPTIONS] = { "module", "queue", "method" };
	static const char usage[] = "/v1/calls/retry takes module=NAME, and may take "
				    "queue=NAME and method=NAME: the calls they select that "
				    "wait for a retry are retried now";
	const char *value[OPTIONS];
	struct evkeyvalq params;
	struct evbuffer *body;

	TAILQ_INIT(&params);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_wrong_method(req, "POST");
		return;
	}
	if (!query_options(req, &params, names, value, OPTIONS, usage))
		goto out;
	if (!value[MODULE]) {
		reply_error(req, 400, "Bad Request", "%s", usage);
		goto out;
	}
	for (size_t i = 0; i < OPTIONS; i++)
		if (value[i] && !check_name(req, names[i], value[i]))
			goto out;
	scheduler_retry_now(api->d.scheduler, value[MODULE], value[QUEUE], value[METHOD]);
	log_info("calls of %s%s%s%s%s that wait for a retry are retried now (asked over HTTP)",
		 value[MODULE], value[METHOD] ? "." : "", value[METHOD] ? value[METHOD] : "",
		 value[QUEUE] ? " in queue " : "", value[QUEUE] ? value[QUEUE] : "");
	body = evbuffer_new();
	if (!body) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		goto out;
	}
	evbuffer_add_printf(body, "{");
	for (size_t i = 0; i < OPTIONS; i++)
		if (value[i])
			json_field(body, names[i], value[i], i > 0);
	evbuffer_add_printf(body, ", \"retrying\": true}\n");
	reply_json(req, 202, "Accepted", body);
	evbuffer_free(body);
out:
	evhttp_clear_headers(&params);
}

/* GET /v1/modules' answer as list_module() writes it */
struct module_list {
	struct evbuffer *out;
	bool text;
	int count;
};

/* One module of GET /v1/modules: a JSON object, or a line of text. */
static void list_module(const struct module_view *v, void *arg)
{
	struct module_list *l = arg;
	const char *state = v->version ? "loaded" : v->checking ? "checking" : "refused";

	if (l->text) {
		evbuffer_add_printf(l->out, "%s  %s  %s", v->name, v->version ? v->version : "-",
				    !v->version ? state : v->methods[0] ? v->methods : "-");
		if (v->checking && v->version)
			evbuffer_add_printf(l->out, "  (a new %s.so is being checked)", v->name);
		if (v->refused) {
			/* on one line: a refusal may quote a plugin's own words */
			char refused[RECORD_ERROR_MAX + 1];

			record_clean_text(refused, sizeof refused, v->refused);
			evbuffer_add_printf(l->out, v->version ? "  (%s.so now there was refused: %s)"
							       : "  %s.so was refused: %s",
					    v->name, refused);
		}
		evbuffer_add(l->out, "\n", 1);
		l->count++;
		return;
	}
	evbuffer_add_printf(l->out, "%s{", l->count++ ? ", " : "");
	json_field(l->out, "name", v->name, false);
	json_field(l->out, "state", state, true);
	if (v->version)
		json_field(l->out, "version", v->version, true);
	else
		evbuffer_add_printf(l->out, ", \"version\": null");
	evbuffer_add_printf(l->out, ", \"methods\": [");
	for (const char *m = v->methods; *m;) {
		size_t len = strcspn(m, " ");

		evbuffer_add_printf(l->out, "%s", m == v->methods ? "" : ", ");
		json_string(l->out, m, len);
		m += len;
		m += strspn(m, " ");
	}
	evbuffer_add_printf(l->out, "], \"checking\": %s", v->checking ? "true" : "false");
	if (v->refused)
		json_field(l->out, "refused", v->refused, true);
	else
		evbuffer_add_printf(l->out, ", \"refused\": null");
	evbuffer_add_printf(l->out, "}");
}

/*
 * GET /v1/modules: the modules of the plugin directory in name order, each
 * with its state, the version in service and its methods, and why the file
 * now there was refused, if it was.
 */
static void handle_modules(struct http_api *api, struct evhttp_request *req)
{
	struct module_list l = { evbuffer_new(), wants_text(req), 0 };
	struct evkeyvalq params;
	bool ok;

	TAILQ_INIT(&params);
	if (!is_get(req)) {
		reply_wrong_method(req, "GET, HEAD");
		goto out;
	}
	ok = query_options(req, &params, NULL, NULL, 0, "/v1/modules takes none");
	evhttp_clear_headers(&params);
	if (!ok)
		goto out;
	if (!l.out) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (!l.text)
		evbuffer_add_printf(l.out, "{\"modules\": [");
	if (plugins_each(api->d.plugins, list_module, &l) < 0) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		goto out;
	}
	if (l.text) {
		if (!l.count)
			evbuffer_add_printf(l.out, "(no modules)\n");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(req, 200, "OK", l.out);
	} else {
		evbuffer_add_printf(l.out, "]}\n");
		reply_json(req, 200, "OK", l.out);
	}
out:
	if (l.out)
		evbuffer_free(l.out);
}

static void backup_done(const struct backup_result *res, void *arg)
{
	struct http_api *api = arg;
	struct evhttp_request *req = api->backup_req;
	struct evbuffer *body = evbuffer_new();

	api->backup_req = NULL;
	api->replies_waiting--;
	if (res->cancelled) {
		api->backups_failed++;
		reply_error(req, 503, "Service Unavailable", "backup failed: %s", res->error);
	} else if (!res->ok) {
		api->backups_failed++;
		reply_error(req, 500, "Internal Server Error", "backup failed: %s", res->error);
	} else if (!body) {
		api->backups++;
		reply_error(req, 500, "Internal Server Error",
			    "out of memory; the backup is in %s", res->dir);
	} else if (wants_text(req)) {
		/* the directory alone, for scripts (cagectl backup) */
		api->backups++;
		evbuffer_add_printf(body, "%s\n", res->dir);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(req, 200, "OK", body);
	} else {
		api->backups++;
		evbuffer_add(body, "{", 1);
		json_field(body, "dir", res->dir, false);
		evbuffer_add_printf(body, ", \"bytes\": %" PRIu64 ", \"seconds\": %.3f}\n",
				    res->bytes, (double)res->ms / 1000.0);
		reply_json(req, 200, "OK", body);
	}
	if (body)
		evbuffer_free(body);
}

/* POST /v1/backup: a hot backup into backup_dir, answered when done. */
static void handle_backup(struct http_api *api, struct evhttp_request *req)
{
	int rc;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_wrong_method(req, "POST");
		return;
	}
	rc = backup_start(api->d.backup, backup_done, api);
	if (rc == 1) {
		reply_error(req, 409, "Conflict", "a backup is being made already, into %s",
			    backup_running_dir(api->d.backup));
		return;
	}
	if (rc < 0) {
		api->backups_failed++;
		reply_error(req, 500, "Internal Server Error", "backup failed: cannot start the "
			    "backup thread");
		return;
	}
	api->backup_req = req;
	api->replies_waiting++;
}

static void module_outcomes(const char *module, const uint64_t n[3], void *arg)
{
	static const char *const outcomes[] = { "ok", "retry", "fail" };

	for (int i = 0; i < 3; i++)
		evbuffer_add_printf(arg, "cagehost_module_attempts_total{module=\"%s\",outcome=\"%s\"} "
				    "%" PRIu64 "\n", module, outcomes[i], n[i]);
}

static void queue_in_flight(const char *queue, int in_flight, void *arg)
{
	evbuffer_add_printf(arg, "cagehost_queue_attempts_in_flight{queue=\"%s\"} %d\n", queue,
			    in_flight);
}

static void handle_metrics(struct http_api *api, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	struct store_stats st;
	struct scheduler_stats sc;
	int64_t due, held, now = clock_wall_ms();
	double lag = 0;

	if (!out) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	/* the earliest planned attempt of any unfinished call, held by the
	 * scheduler (waiting for a worker, running) or in the store: how far
	 * behind it is says whether queues are stuck.  The store is read (the
	 * loop waiting for the writer) only when the scheduler has left due
	 * calls there. */
	due = INT64_MAX;
	if (scheduler_store_behind(api->d.scheduler)) {
		batch_sync(api->d.batch);
		if (store_next_due(api->d.store, INT64_MIN, &due) != 0)
			due = INT64_MAX;
	}
	held = scheduler_earliest_held(api->d.scheduler);
	if (held < due)
		due = held;
	if (due < now)
		lag = (double)(now - due) / 1000;
	store_get_stats(api->d.store, &st);
	scheduler_get_stats(api->d.scheduler, &sc);
	evbuffer_add_printf(out,
		"# HELP cagehost_enqueued_total Calls stored for queues (answered 202).\n"
		"# TYPE cagehost_enqueued_total counter\n"
		"cagehost_enqueued_total %" PRIu64 "\n"
		"# TYPE cagehost_enqueue_duplicates_total counter\n"
		"cagehost_enqueue_duplicates_total %" PRIu64 "\n"
		"# HELP cagehost_enqueues_failed_total Enqueues answered 503 because the call "
		"could not be stored (disk full, storage busy).\n"
		"# TYPE cagehost_enqueues_failed_total counter\n"
		"cagehost_enqueues_failed_total %" PRIu64 "\n"
		"# HELP cagehost_queue_lag_seconds How long ago the earliest planned attempt "
		"of an unfinished call was due (0: none is due); it grows while queues are "
		"stuck.\n"
		"# TYPE cagehost_queue_lag_seconds gauge\n"
		"cagehost_queue_lag_seconds %.3f\n"
		"# TYPE cagehost_sync_calls_total counter\n"
		"cagehost_sync_calls_total %" PRIu64 "\n"
		"# HELP cagehost_sync_calls_abandoned_total Sync calls whose caller closed the "
		"connection before they started; they did not run.\n"
		"# TYPE cagehost_sync_calls_abandoned_total counter\n"
		"cagehost_sync_calls_abandoned_total %" PRIu64 "\n"
		"# TYPE cagehost_commits_total counter\n"
		"cagehost_commits_total %" PRIu64 "\n"
		"# HELP cagehost_log_flushes_total fdatasyncs of the log; each makes every commit "
		"before it durable.\n"
		"# TYPE cagehost_log_flushes_total counter\n"
		"cagehost_log_flushes_total %" PRIu64 "\n"
		"# TYPE cagehost_attempts_total counter\n"
		"cagehost_attempts_total{outcome=\"ok\"} %" PRIu64 "\n"
		"cagehost_attempts_total{outcome=\"retry\"} %" PRIu64 "\n"
		"cagehost_attempts_total{outcome=\"fail\"} %" PRIu64 "\n"
		"# TYPE cagehost_calls_dead_total counter\n"
		"cagehost_calls_dead_total %" PRIu64 "\n"
		"# TYPE cagehost_calls_woken_total counter\n"
		"cagehost_calls_woken_total %" PRIu64 "\n"
		"# HELP cagehost_done_swept_early_total Finished calls forgotten before "
		"done_retention because of done_keep_max (their Idempotency-Keys too).\n"
		"# TYPE cagehost_done_swept_early_total counter\n"
		"cagehost_done_swept_early_total %" PRIu64 "\n"
		"# TYPE cagehost_attempts_in_flight gauge\n"
		"cagehost_attempts_in_flight %d\n"
		"# HELP cagehost_deliveries_in_flight Attempts in flight that are deliveries "
		"to other cages.\n"
		"# TYPE cagehost_deliveries_in_flight gauge\n"
		"cagehost_deliveries_in_flight %d\n"
		"# TYPE cagehost_workers gauge\n"
		"cagehost_workers %d\n"
		"# TYPE cagehost_workers_busy gauge\n"
		"cagehost_workers_busy %d\n"
		"# TYPE cagehost_modules_loaded gauge\n"
		"cagehost_modules_loaded %d\n",
		api->enqueued, api->duplicates, api->enqueues_failed, lag, api->sync_calls,
		api->abandoned, st.commits, st.log_flushes, sc.attempts_ok, sc.attempts_retry,
		sc.attempts_fail, sc.calls_dead, sc.calls_woken, st.done_swept_early, sc.in_flight,
		sc.deliveries_in_flight, pool_size(api->d.pool), pool_busy(api->d.pool),
		plugins_count(api->d.plugins));
	evbuffer_add_printf(out,
		"# HELP cagehost_backups_total Backups asked for with POST /v1/backup, by "
		"result.\n"
		"# TYPE cagehost_backups_total counter\n"
		"cagehost_backups_total{result=\"ok\"} %" PRIu64 "\n"
		"cagehost_backups_total{result=\"failed\"} %" PRIu64 "\n"
		"# HELP cagehost_dead_calls Calls in the dead store now: failed for good or "
		"expired (GET /v1/calls?state=dead lists them).\n"
		"# TYPE cagehost_dead_calls gauge\n"
		"cagehost_dead_calls %" PRIu64 "\n"
		"# HELP cagehost_dead_swept_total Dead calls deleted by the host as "
		"dead_retention or dead_keep_max ask.\n"
		"# TYPE cagehost_dead_swept_total counter\n"
		"cagehost_dead_swept_total %" PRIu64 "\n",
		api->backups, api->backups_failed, st.dead_calls, st.dead_swept);
	evbuffer_add_printf(out,
		"# HELP cagehost_module_attempts_total Attempts of queued calls run here, by "
		"module and outcome (calls to other cages are not in it).\n"
		"# TYPE cagehost_module_attempts_total counter\n");
	scheduler_each_module(api->d.scheduler, module_outcomes, out);
	evbuffer_add_printf(out,
		"# HELP cagehost_queue_attempts_in_flight Attempts of queued calls under way "
		"(with a worker, or being delivered to another cage), by queue; the queue's "
		"concurrency caps it when set.\n"
		"# TYPE cagehost_queue_attempts_in_flight gauge\n");
	scheduler_each_queue(api->d.scheduler, queue_in_flight, out);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4");
	send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* With a token set, a request must carry it; replies 401 when it doesn't. */
static bool authorized(struct http_api *api, struct evhttp_request *req)
{
	const char *token = api->d.conf->token;
	const char *given;
	size_t len = strlen(token);
	unsigned char diff = 0;

	if (!token[0])
		return true;
	given = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (given && !strncasecmp(given, "Bearer ", 7) && strlen(given + 7) == len) {
		/* compare in constant time: no timing hints about the token */
		for (size_t i = 0; i < len; i++)
			diff |= (unsigned char)(given[7 + i] ^ token[i]);
		if (diff == 0)
			return true;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
			  "Bearer realm=\"cagehost\"");
	reply_error(req, 401, "Unauthorized",
		    given ? "wrong token" : "this host requires Authorization: Bearer TOKEN");
	return false;
}

/*
 * The path of a request target: origin-form ("/v1/...") as is, and the
 * absolute-form a proxy sends ("http://host:port/v1/...", which RFC 9112
 * 3.2.2 says servers must accept) from its path on.  NULL for anything else.
 */
static const char *target_path(const char *uri)
{
	const char *rest;

	if (!uri)
		return NULL;
	if (uri[0] == '/')
		return uri;
	if (!evutil_ascii_strncasecmp(uri, "http://", 7))
		rest = uri + 7;
	else if (!evutil_ascii_strncasecmp(uri, "https://", 8))
		rest = uri + 8;
	else
		return NULL;
	rest = strchr(rest, '/');
	return rest ? rest : "/";
}

static void route(struct evhttp_request *req, void *arg)
{
	struct http_api *api = arg;
	const char *uri = target_path(evhttp_request_get_uri(req));
	char path[1024];
	char *parts[6];
	const char *q;
	size_t len;
	int n;

	if (!http_guard_admit(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		reply_error(req, 400, "Bad Request",
			    "the request's framing could not be followed; connection closed");
		return;
	}
	if (!uri || uri[0] != '/') {
		reply_error(req, 400, "Bad Request", "malformed request target");
		return;
	}
	q = strchr(uri, '?');
	len = q ? (size_t)(q - uri) : strlen(uri);
	if (len >= sizeof path) {
		reply_error(req, 414, "URI Too Long", "path longer than %zu bytes", sizeof path - 1);
		return;
	}
	memcpy(path, uri, len);
	path[len] = '\0';
	if (api->stopping) {
		/* nothing new is taken on; the port stays open until the end, so
		 * a caller gets this answer rather than a reset connection */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		reply_error(req, 503, "Service Unavailable", "stopping");
		return;
	}
	if (!api->serving) {
		reply_error(req, 503, "Service Unavailable", "starting: loading the plugins");
		return;
	}
	if (strcmp(path, "/healthz") != 0 && !authorized(api, req))
		return;
	if ((!strcmp(path, "/healthz") || !strcmp(path, "/metrics")) && !is_get(req)) {
		reply_wrong_method(req, "GET, HEAD");
		return;
	}
	if (!strcmp(path, "/healthz")) {
		struct evbuffer *out = evbuffer_new();

		evbuffer_add_printf(out, "ok\n");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; charset=utf-8");
		send_reply(req, 200, "OK", out);
		evbuffer_free(out);
		return;
	}
	if (!strcmp(path, "/metrics")) {
		handle_metrics(api, req);
		return;
	}
	n = split_path(path, parts, 5);
	if (n >= 2 && strcmp(parts[0], "v1") == 0) {
		if (n == 4 && !strcmp(parts[1], "call")) {
			handle_call(api, req, parts[2], parts[3]);
			return;
		}
		if (n == 5 && !strcmp(parts[1], "enqueue")) {
			handle_enqueue(api, req, parts[2], parts[3], parts[4]);
			return;
		}
		if (n == 2 && !strcmp(parts[1], "calls")) {
			handle_calls(api, req, false);
			return;
		}
		if (n == 3 && !strcmp(parts[1], "calls") && !strcmp(parts[2], "requeue")) {
			handle_calls(api, req, true);
			return;
		}
		if (n == 3 && !strcmp(parts[1], "calls") && !strcmp(parts[2], "retry")) {
			handle_retry(api, req);
			return;
		}
		if (n == 3 && !strcmp(parts[1], "calls")) {
			if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE)
				handle_dead_call(api, req, parts[2], false);
			else
				handle_show(api, req, parts[2]);
			return;
		}
		if (n == 4 && !strcmp(parts[1], "calls") && !strcmp(parts[3], "requeue")) {
			handle_dead_call(api, req, parts[2], true);
			return;
		}
		if (n == 2 && !strcmp(parts[1], "backup")) {
			handle_backup(api, req);
			return;
		}
		if (n == 2 && !strcmp(parts[1], "modules")) {
			handle_modules(api, req);
			return;
		}
	}
	reply_error(req, 404, "Not Found",
		    "no such endpoint; see /v1/call/MODULE/METHOD, /v1/enqueue/QUEUE/MODULE/METHOD, "
		    "/v1/calls/ID, /v1/modules, /v1/backup, /healthz, /metrics");
}

static bool is_loopback(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
	if (addr->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)addr)->sin6_addr);
	return false;
}

/*
 * File descriptors the host may need besides its HTTP connections: the
 * databases, log files, workers' channels, plugin files (FD_BASE is
 * generous; an idle host has about 30 open), and the relay's connections.
 */
static int reserved_fds(const struct host_conf *conf)
{
	enum { FD_BASE = 128 };
	int n = FD_BASE;

	for (const struct cage_conf *c = conf->cages; c; c = c->next)
		n += c->url_count * RELAY_CONNS_PER_URL;
	return n + 3 * conf->workers;	/* channel, pidfd, output pipe */
}

struct http_api *http_api_new(struct event_base *base, const struct host_conf *conf)
{
	struct http_api *api = calloc(1, sizeof *api);
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage addr;
	socklen_t addr_len = sizeof addr;
	struct timeval timeout;

	if (!api)
		return NULL;
	LIST_INIT(&api->running);
	api->base = base;
	timeout.tv_sec = conf->sync_timeout_ms / 1000;
	timeout.tv_usec = (conf->sync_timeout_ms % 1000) * 1000;
	api->sync_timeout = event_base_init_common_timeout(base, &timeout);
	if (!api->sync_timeout) {
		free(api);
		return NULL;
	}
	api->d.conf = conf;
	api->http = evhttp_new(base);
	if (!api->http)
		goto fail;
	/* every method reaches route(), which answers 405 in JSON (evhttp's own
	 * refusal is a 501 in HTML); CONNECT only on a connection the guard
	 * does not watch (it answers CONNECT 501 itself) */
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
					      EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
					      EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
					      EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_max_body_size(api->http, (ev_ssize_t)conf->max_body_size);
	/* the guard answers 431 and 413 first; evhttp's limits are backstops */
	evhttp_set_max_headers_size(api->http, (ev_ssize_t)conf->max_header_size + 1024);
	http_guard_install(api->http, base, conf->max_header_size, conf->max_body_size,
			   conf->header_timeout_ms, conf->max_connections, reserved_fds(conf));
	evhttp_set_timeout(api->http, (int)((conf->idle_timeout_ms + 999) / 1000));
	evhttp_set_gencb(api->http, route, api);
	bound = evhttp_bind_socket_with_handle(api->http, conf->listen_host,
					       (ev_uint16_t)conf->listen_port);
	if (!bound) {
		log_error("cannot listen on %s:%d (in use, or not an address of this host)",
			  conf->listen_host, conf->listen_port);
		goto fail;
	}
	http_guard_listen(evhttp_bound_socket_get_listener(bound));
	/* port 0 asks the kernel for a free port: tell the operator which */
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &addr_len) < 0) {
		log_error("getsockname: %s", strerror(errno));
		goto fail;
	}
	api->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
						     : ((struct sockaddr_in *)&addr)->sin_port);
	/* the config check reads the text; this checks what a name resolved to */
	if (!conf->token[0] && !is_loopback(&addr)) {
		log_error("listen = %s resolves to an address other hosts can reach; set token = "
			  "SECRET in [host] to allow that", conf->listen_host);
		goto fail;
	}
	return api;
fail:
	http_api_free(&api);
	return NULL;
}

void http_api_start(struct http_api *api, const struct http_api_deps *deps)
{
	api->d = *deps;
	api->serving = true;
}

void http_api_stop(struct http_api *api)
{
	api->stopping = true;
}

int http_api_unanswered(const struct http_api *api)
{
	const struct sync_call *c;
	int n = api->replies_waiting;

	LIST_FOREACH(c, &api->running, link)
		n++;
	return n;
}

int http_api_port(const struct http_api *api)
{
	return api->port;
}

void http_api_free(struct http_api **ap)
{
	struct http_api *api = *ap;
	struct sync_call *c;

	if (!api)
		return;
	http_guard_close();
	LIST_FOREACH(c, &api->running, link)
		event_del(c->hangup);	/* before evhttp closes the sockets */
	if (api->http)
		evhttp_free(api->http);
	/* calls still queued or running: the pool and the plugin directory
	 * drop their references without completing them (worker.h) */
	while (!LIST_EMPTY(&api->running))
		sync_call_free(LIST_FIRST(&api->running));
	free(api);
	*ap = NULL;
}

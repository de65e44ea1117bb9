/*
 * http_guard.c - the byte-level guard under evhttp (see http_guard.h).
 *
 * evhttp reads each connection through a plain socket bufferevent; the
 * guard watches the bytes as they are added to that bufferevent's input
 * buffer (an evbuffer callback, run before evhttp parses them) and follows
 * the requests with a small state machine: HEAD counts a request's header
 * bytes and picks up Content-Length on the way, BODY skips that many
 * bytes, REJECTED discards everything after the guard's own answer (431,
 * 408, 413, 411 for a Transfer-Encoding, whose body it could not follow,
 * 400, 503), and the connection is closed REJECT_LINGER_MS later (time for
 * the client to read the answer).  Guards live in a table indexed by
 * socket.
 *
 * Requests pipelined before a refused one, in the same read, are complete
 * and valid: their bytes stay for evhttp, and the refusal is held until
 * evhttp has answered them (HTTP answers go out in request order): it goes
 * out from evhttp's write callback, wrapped for the purpose, once the last
 * of those answers is written; the sweep is the backstop.
 *
 * evhttp stops reading a connection when a request with a body is in, and
 * starts again once the answer is written; for an answer that waits for
 * the disk, that took the socket out of epoll and put it back, and the
 * answer waited for the loop to find the socket writable.  The API instead
 * has the connection read ahead while such an answer waits (the guard's
 * callbacks stand in for evhttp's, which must not see the input yet), and
 * writes the answer at once when it comes; the guard then treats evhttp
 * as busy until it reads again.
 *
 * Every connection gets its slot when it is accepted: evhttp asks for a
 * bufferevent (new_connection), which the guard holds a reference to until
 * the end of that turn (adopt), when evhttp has made its connection; the
 * slot then takes the connection's close callback, so it is cleared the
 * moment evhttp frees the connection, and the count of open connections
 * is exact.  Past max_connections a connection is answered 503; further
 * past it, and whenever accept() fails (out of file descriptors), the
 * listener pauses, so that connections can never take the descriptors the
 * databases need.
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"

#include "http_guard.h"

enum guard_state { HEAD, BODY, REJECTED };

#define NAME_PREFIX 20
#define VERSION_MAX 16		/* longest HTTP version read ("HTTP/1.1" is 8) */
#define SHORTEST_LINE 14	/* evhttp's shortest request line, "GET / HTTP/1.0" */
#define REJECT_LINGER_MS 2000	/* a refused client's time to read the answer */
#define OVER_LIMIT_ANSWERS 64	/* connections past max_connections still answered 503 */
#define ACCEPT_PAUSE_MS 1000	/* after accept() failed */
#define READ_AHEAD_MAX (64 * 1024)	/* input read while evhttp does not parse it */

/* the guard's own answer to a request evhttp never sees */
struct refusal {
	int code;
	const char *reason, *error;	/* string literals */
};

struct guard {
	struct bufferevent *bev;	/* the connection this slot serves, or NULL */
	uint64_t scanned;		/* bytes of the stream the guard has looked at */
	uint64_t passed, admitted;	/* request heads let through; taken by the API */
	uint64_t request_at;		/* where in the stream this request began */
	struct refusal refusal;		/* when REJECTED */
	bool refusal_held;		/* not sent yet: evhttp has requests before it */
	int64_t head_started_ms;	/* monotonic; first byte of these headers */
	bool head_paused;		/* evhttp stopped reading since (sweep) */
	struct event *keep_read;	/* keep_reading()'s, made when first needed */
	int64_t rejected_ms;		/* monotonic; when the guard answered */
	bool read_shut;			/* closing: evhttp was made to see EOF */
	enum guard_state state;
	size_t head_len;		/* header bytes of the current request */
	size_t line_len;		/* bytes of the current header line */
	char name[NAME_PREFIX];		/* its first bytes, lowercased */
	bool in_length;			/* reading a Content-Length value */
	bool length_digits, length_ended;	/* of that value: digits seen, a blank after them */
	bool cr_pending;		/* the line's last byte was a CR: an LF must follow */
	bool has_length;		/* this request has a Content-Length */
	bool past_request_line;		/* in the header lines of this request */
	bool bodiless;			/* HEAD or TRACE: evhttp reads no body */
	unsigned request_spaces;	/* in the request line so far */
	bool method_not_upper;		/* a byte of its method is not A-Z */
	/* the request line's words (runs of non-spaces), as evhttp splits it */
	size_t first_space_at;		/* where its first space is (with request_spaces) */
	size_t word_at, word_len;	/* the word being read: where, how long */
	size_t last_at, last_len;	/* the word before it (last_len 0: none) */
	char word[VERSION_MAX], last[VERSION_MAX];	/* their first bytes */
	size_t held_input;		/* input left unread by evhttp at the last sweep */
	bufferevent_data_cb evhttp_writecb;	/* wrapped by after_answer_written */
	bool seen_colon, name_blank;	/* of the current line, in its first bytes */
	unsigned long long length, body_left;
};

static size_t guard_limit;
static unsigned long long body_limit;
static int64_t header_timeout_ms;
static int max_connections, live_connections;	/* live: adopted, not closed */
static struct guard *guards;		/* indexed by fd */
static size_t guard_count;

/* bufferevents made this turn, each with a reference the guard holds */
static struct bufferevent **adopting;
static size_t adopt_count, adopt_cap;
static struct event *adopt_event;

/* sockets keep_reading() holds until the end of this turn */
static evutil_socket_t *kept;
static size_t kept_count, kept_cap;
static struct event *release_event;	/* made only on a base of one priority */
static struct event *sweeper;

static struct evconnlistener *listener;
static bool listener_paused;
static int64_t accept_resume_ms;	/* monotonic; 0: accept() works */
static bool putting_back;		/* on_input: bytes evhttp has yet to read */
/* while on_input scans: the input buffer, and where its first byte is in
 * the stream (check_request_line reads the target from it) */
static struct evbuffer *scan_input;
static uint64_t scan_input_at;
static uint64_t desyncs;		/* requests evhttp parsed that the guard did not pass */
static struct evbuffer *scratch;	/* drop_tail's */

/*
 * items, an array of *cap elements of size bytes of which count are used,
 * with room for one more: items itself, or the array doubled (64 at
 * first, *cap updated); NULL without memory, items then unchanged.
 */
static void *room_for_one(void *items, size_t count, size_t *cap, size_t size)
{
	size_t want;
	void *grown;

	if (count < *cap)
		return items;
	want = *cap ? *cap * 2 : 64;
	grown = realloc(items, want * size);
	if (grown)
		*cap = want;
	return grown;
}

/* The slot of socket fd, the table grown as needed; NULL without memory. */
static struct guard *slot(evutil_socket_t fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= guard_count) {
		size_t count = guard_count ? guard_count : 256;
		struct guard *grown;

		while (count <= (size_t)fd)
			count *= 2;
		grown = realloc(guards, count * sizeof *grown);
		if (!grown)
			return NULL;
		memset(grown + guard_count, 0, (count - guard_count) * sizeof *grown);
		guards = grown;
		guard_count = count;
	}
	return &guards[fd];
}

/* The slot serving bev, or NULL (a connection the guard could not adopt). */
static struct guard *guard_for(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (fd < 0 || (size_t)fd >= guard_count || guards[fd].bev != bev)
		return NULL;
	return &guards[fd];
}

/*
 * While an answer waits (http_guard_read_ahead), the connection reads on
 * with these callbacks instead of evhttp's, which must not see the input
 * before it has answered.  on_input stops the reading once READ_AHEAD_MAX
 * bytes wait; an end of stream, error or timeout also stops it (the
 * bufferevent does that itself), and evhttp sees it again when it reads
 * next.
 */
static void read_ahead_input(struct bufferevent *bev, void *arg)
{
	(void)bev;
	(void)arg;
}

static void read_ahead_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	(void)arg;
}

/* The connection's read callback: evhttp's, read_ahead_input, or none
 * while evhttp writes an answer. */
static bufferevent_data_cb read_callback(const struct guard *g)
{
	bufferevent_data_cb readcb;

	bufferevent_getcb(g->bev, &readcb, NULL, NULL, NULL);
	return readcb;
}

/* An answer of evhttp's waits: the connection reads ahead. */
static bool answer_waits(const struct guard *g)
{
	return read_callback(g) == read_ahead_input;
}

/* evhttp takes the input as it comes: it is not writing an answer and no
 * answer of its waits. */
static bool evhttp_parses(const struct guard *g)
{
	bufferevent_data_cb readcb = read_callback(g);

	return readcb && readcb != read_ahead_input;
}

/* evhttp reads the connection: it has answered every request it took. */
static bool evhttp_reading(const struct guard *g)
{
	return (bufferevent_get_enabled(g->bev) & EV_READ) && !answer_waits(g);
}

/* Accepting stops while connections (counting those accepted this turn)
 * are far past the limit or accept() has just failed, and starts again
 * once neither holds.  (Disabled from new_connection, the listener stops
 * at once, in the middle of a burst of accepts.) */
static void steer_listener(void)
{
	bool pause = live_connections + (int)adopt_count >= max_connections + OVER_LIMIT_ANSWERS ||
		     (accept_resume_ms && clock_mono_ms() < accept_resume_ms);

	if (!listener || pause == listener_paused)
		return;
	if (pause ? evconnlistener_disable(listener) : evconnlistener_enable(listener))
		return;
	listener_paused = pause;
	if (!pause)
		accept_resume_ms = 0;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	(void)arg;
	log_error("cannot accept a connection: %s (%d open); not accepting for %d ms",
		  strerror(err), live_connections, ACCEPT_PAUSE_MS);
	accept_resume_ms = clock_mono_ms() + ACCEPT_PAUSE_MS;
	steer_listener();
}

static void close_when_sent(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *bev = arg;

	(void)info;
	if (evbuffer_get_length(out) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

/* Refuses the current request: from now on the connection's input is
 * dropped.  The answer is sent by send_refusal(). */
static void refuse(struct guard *g, int code, const char *reason, const char *error)
{
	g->state = REJECTED;
	g->refusal = (struct refusal){ code, reason, error };
	g->refusal_held = false;
}

/*
 * Answers the connection directly (evhttp never sees the request), shuts
 * its sending side once the answer is sent, and closes it REJECT_LINGER_MS
 * later (sweep).  With nothing else to send, the answer goes to the socket
 * at once: a client that has closed its side would otherwise be seen gone,
 * and the connection freed, before the answer's turn to be written.
 */
static void send_refusal(struct guard *g)
{
	struct evbuffer *out = bufferevent_get_output(g->bev);
	const struct refusal *r = &g->refusal;
	evutil_socket_t fd = bufferevent_getfd(g->bev);
	bufferevent_data_cb readcb;
	bufferevent_event_cb eventcb;
	void *cbarg;
	char text[512];
	int len;
	ssize_t sent = 0;

	g->refusal_held = false;
	g->rejected_ms = clock_mono_ms();
	len = snprintf(text, sizeof text,
		       "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		       "Connection: close\r\nContent-Length: %zu\r\n\r\n"
		       "{\"error\": \"%s\"}\n",
		       r->code, r->reason, strlen(r->error) + sizeof "{\"error\": \"\"}\n" - 1,
		       r->error);
	if (len < 0 || len >= (int)sizeof text)
		len = 0;	/* no answer; the connection is still closed */
	if (evbuffer_get_length(out) == 0) {
		sent = send(fd, text, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent == len) {
			shutdown(fd, SHUT_WR);
			return;
		}
		if (sent < 0)
			sent = 0;
	}
	/* evhttp's write callback may still be set from its last answer on this
	 * connection: this write must not run it (it would finish, and free, the
	 * request evhttp is handling now).  evhttp sets it again when it answers. */
	bufferevent_getcb(g->bev, &readcb, NULL, &eventcb, &cbarg);
	bufferevent_setcb(g->bev, readcb, NULL, eventcb, cbarg);
	evbuffer_add(out, text + sent, (size_t)(len - sent));
	evbuffer_add_cb(out, close_when_sent, g->bev);
	bufferevent_enable(g->bev, EV_WRITE);
}

/* Refuses the current request and answers at once. */
static void answer(struct guard *g, int code, const char *reason, const char *error)
{
	refuse(g, code, reason, error);
	send_refusal(g);
}

/*
 * A held refusal goes out once evhttp has answered every request it kept
 * and reads again with nothing left in its input.  evhttp reading with
 * input left that it did not take in a whole second means the two parsers
 * disagree on where a request ends: that input is dropped, and the refusal
 * sent.
 */
static void send_when_answered(struct guard *g, bool from_sweep)
{
	struct evbuffer *in = bufferevent_get_input(g->bev);
	size_t unread = evbuffer_get_length(in);
	bool idle = evbuffer_get_length(bufferevent_get_output(g->bev)) == 0 &&
		    evhttp_reading(g);

	if (idle && unread == 0) {
		send_refusal(g);
	} else if (idle && from_sweep) {
		if (unread == g->held_input) {
			log_warning("a request pipelined before a refused one was not read "
				    "(%zu bytes); dropped", unread);
			evbuffer_drain(in, unread);
			send_refusal(g);
		}
		g->held_input = unread;
	} else if (from_sweep) {
		g->held_input = 0;
	}
}

/* evhttp's write callback, wrapped while a refusal is held: once evhttp
 * has finished an answer and reads again, the refusal goes out at once if
 * nothing is left before it (before evhttp can see a client's close and
 * free the connection). */
static void after_answer_written(struct bufferevent *bev, void *arg)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct guard *g = guard_for(bev);
	bufferevent_data_cb evhttp_writecb = g ? g->evhttp_writecb : NULL;

	if (!evhttp_writecb)
		return;
	evhttp_writecb(bev, arg);	/* may free the connection, clearing its slot */
	g = (size_t)fd < guard_count && guards[fd].bev == bev ? &guards[fd] : NULL;
	if (g && g->state == REJECTED && g->refusal_held)
		send_when_answered(g, false);
}

/* Output written while a refusal is held: when evhttp's answer is all
 * sent, its write callback (run next) is wrapped. */
static void on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *bev = arg;
	struct guard *g = guard_for(bev);
	bufferevent_data_cb readcb, writecb;
	bufferevent_event_cb eventcb;
	void *cbarg;

	if (!g || !g->refusal_held || !info->n_deleted || evbuffer_get_length(out) > 0)
		return;
	bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
	if (writecb && writecb != after_answer_written) {
		g->evhttp_writecb = writecb;
		bufferevent_setcb(bev, readcb, after_answer_written, eventcb, cbarg);
	}
}

/*
 * Once a second: connections whose headers are overdue get 408; held
 * refusals are sent once evhttp has answered the requests before them;
 * refused connections whose client had REJECT_LINGER_MS to read the
 * answer are closed (a shut reading side makes evhttp see the end of the
 * stream, and free the connection as if the client had closed it).
 */
static void sweep(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	(void)arg;
	for (size_t i = 0; i < guard_count; i++) {
		struct guard *g = &guards[i];

		if (!g->bev)
			continue;
		/* headers time out only while evhttp reads: a request's next one
		 * may have begun to arrive while evhttp handled it, not reading
		 * on (or reading ahead, at most READ_AHEAD_MAX), and the rest of
		 * it may wait in the socket; their time counts again from the
		 * first sweep that finds evhttp reading */
		if (!evhttp_reading(g)) {
			g->head_paused = true;
		} else if (g->head_paused) {
			g->head_paused = false;
			g->head_started_ms = now;
		} else if (g->state == HEAD && g->head_len > 0 &&
			   now - g->head_started_ms > header_timeout_ms) {
			answer(g, 408, "Request Timeout",
			       "request headers did not arrive within header_timeout");
		}
		if (g->state == REJECTED && g->refusal_held)
			send_when_answered(g, true);
		if (g->state == REJECTED && !g->refusal_held && !g->read_shut &&
		    now - g->rejected_ms >= REJECT_LINGER_MS) {
			shutdown((int)i, SHUT_RD);
			g->read_shut = true;
		}
	}
	steer_listener();
}

/* evhttp frees a connection (its socket still open): the slot goes first,
 * so the guard never looks at a freed bufferevent */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct guard *g = bev ? guard_for(bev) : NULL;

	(void)arg;
	if (g) {
		if (g->keep_read)
			event_free(g->keep_read);	/* before evhttp closes the socket */
		g->keep_read = NULL;
		g->bev = NULL;
		live_connections--;
		steer_listener();
	}
}

/*
 * The end of the turn that accepted connections: evhttp has made each new
 * bufferevent's connection, and set its callbacks with that connection as
 * their argument (the only way to reach it from the bufferevent); a
 * bufferevent without callbacks was already let go.  Each connection gets
 * its slot and close callback.
 */
static void adopt(evutil_socket_t unused, short what, void *arg)
{
	(void)unused;
	(void)what;
	(void)arg;
	for (size_t i = 0; i < adopt_count; i++) {
		struct bufferevent *bev = adopting[i];
		bufferevent_event_cb eventcb = NULL;
		void *evcon = NULL;
		struct guard *g;

		bufferevent_getcb(bev, NULL, NULL, &eventcb, &evcon);
		if (eventcb && evcon && evhttp_connection_get_bufferevent(evcon) == bev &&
		    (g = slot(bufferevent_getfd(bev)))) {
			memset(g, 0, sizeof *g);
			g->bev = bev;
			evhttp_connection_set_closecb(evcon, on_connection_close, NULL);
			live_connections++;
			if (live_connections > max_connections)
				answer(g, 503, "Service Unavailable",
				       "too many connections (max_connections)");
		}
		bufferevent_decref(bev);
	}
	adopt_count = 0;
	steer_listener();
}

/* The slot serving req's connection, or NULL. */
static struct guard *guard_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	return bev ? guard_for(bev) : NULL;
}

bool http_guard_admit(struct evhttp_request *req)
{
	struct guard *g = guard_of(req);
	struct evbuffer *in;

	if (!g || ++g->admitted <= g->passed)
		return true;
	desyncs++;
	log_error("HTTP: evhttp read a request the guard did not see whole (%" PRIu64
		  " passed on this connection); refused, and the connection closed", g->passed);
	in = bufferevent_get_input(g->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	return false;
}

void http_guard_read_ahead(struct evhttp_request *req)
{
	struct guard *g = guard_of(req);

	if (!g || g->state == REJECTED)
		return;
	/* evhttp's callback argument is its connection */
	bufferevent_setcb(g->bev, read_ahead_input, NULL, read_ahead_event,
			  evhttp_request_get_connection(req));
	g->head_paused = true;
	if (evbuffer_get_length(bufferevent_get_input(g->bev)) < READ_AHEAD_MAX)
		bufferevent_enable(g->bev, EV_READ);
}

struct http_guard_conn http_guard_conn_of(struct evhttp_request *req)
{
	struct guard *g = guard_of(req);

	if (!g)
		return (struct http_guard_conn){ -1, NULL };
	return (struct http_guard_conn){ bufferevent_getfd(g->bev), g->bev };
}

void http_guard_write_now(struct http_guard_conn conn)
{
	struct bufferevent *bev;
	struct evbuffer *out;
	bufferevent_data_cb writecb;
	void *cbarg;
	int written;

	/* the slot still holds that bufferevent: the connection was not freed
	 * meanwhile (conn.bev is only compared, never followed, until then) */
	if (conn.fd < 0 || (size_t)conn.fd >= guard_count || guards[conn.fd].bev != conn.bev)
		return;
	bev = guards[conn.fd].bev;
	out = bufferevent_get_output(bev);
	if (!(bufferevent_get_enabled(bev) & EV_WRITE) || evbuffer_get_length(out) == 0)
		return;
	/* as the bufferevent writes: it keeps the buffer's start frozen
	 * between its writes */
	evbuffer_unfreeze(out, 1);
	written = evbuffer_write(out, conn.fd);
	evbuffer_freeze(out, 1);
	if (written <= 0 || evbuffer_get_length(out) > 0)
		return;	/* the bufferevent writes the rest, or meets the error, as usual */
	/* what the bufferevent does once its output is written: run the write
	 * callback (evhttp's, or after_answer_written, which on_output may
	 * have set just now); evhttp finishes the request, and may free the
	 * connection, and stops writing, so no write event is left waiting */
	bufferevent_getcb(bev, NULL, &writecb, NULL, &cbarg);
	if (writecb)
		writecb(bev, cbarg);
}

uint64_t http_guard_desyncs(void)
{
	return desyncs;
}

size_t http_guard_unsent(int *connections)
{
	size_t bytes = 0;

	*connections = 0;
	for (size_t fd = 0; fd < guard_count; fd++) {
		struct guard *g = &guards[fd];
		size_t n;

		if (!g->bev || (g->state == REJECTED && !g->refusal_held))
			continue;
		n = evbuffer_get_length(bufferevent_get_output(g->bev));
		if (n) {
			bytes += n;
			(*connections)++;
		}
	}
	return bytes;
}

/* A bare CR (RFC 9112 2.2: invalid): evhttp keeps it in the line, where the
 * guard would read "G\rET" as GET. */
static void refuse_bare_cr(struct guard *g)
{
	refuse(g, 400, "Bad Request", "a CR not followed by LF in the request headers");
}

/* evhttp reads a C string: "0\0" followed by more digits is 0 to evhttp;
 * only 1*DIGIT (RFC 9110 8.6) is read the same way by both. */
static void refuse_length(struct guard *g)
{
	refuse(g, 400, "Bad Request", "a Content-Length that is not a number");
}

/* One byte of a Content-Length value: blanks, digits, blanks.  False for
 * anything else. */
static bool length_byte(struct guard *g, char c)
{
	if (c == ' ' || c == '\t') {
		g->length_ended = g->length_digits;
		return true;
	}
	if (!isdigit((unsigned char)c) || g->length_ended)
		return false;
	g->length_digits = true;
	if (g->length < (1ULL << 50))
		g->length = g->length * 10 + (unsigned long long)(c - '0');
	return true;
}

/* The request line starts with method_sp ("get ", lower case), and its
 * method is in upper case. */
static bool method_is(const struct guard *g, const char *method_sp)
{
	size_t len = strlen(method_sp);

	return !g->method_not_upper && g->line_len > len && len <= NAME_PREFIX &&
	       !memcmp(g->name, method_sp, len);
}

/* evhttp's methods (evhttp_parse_request_line). */
static bool known_method(const struct guard *g)
{
	static const char *const methods[] = { "get ", "post ", "head ", "put ", "delete ",
					       "options ", "trace ", "connect ", "patch " };

	for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
		if (method_is(g, methods[i]))
			return true;
	return false;
}

/*
 * n bytes of the request line (no CR or LF) from where line_len says:
 * counts its spaces and keeps where its last two words are, with their
 * first bytes (the last word is the HTTP version).
 */
static void request_line_text(struct guard *g, const char *p, size_t n)
{
	size_t at = g->line_len;

	while (n > 0) {
		const char *space = memchr(p, ' ', n);
		size_t run = space ? (size_t)(space - p) : n;

		if (run) {
			if (g->word_len == 0)
				g->word_at = at;
			if (g->word_len < VERSION_MAX)
				memcpy(g->word + g->word_len, p,
				       run < VERSION_MAX - g->word_len ? run : VERSION_MAX - g->word_len);
			g->word_len += run;
		}
		if (!space)
			return;
		if (g->request_spaces++ == 0)
			g->first_space_at = at + run;
		if (g->word_len) {
			memcpy(g->last, g->word, sizeof g->last);
			g->last_at = g->word_at;
			g->last_len = g->word_len;
			g->word_len = 0;
		}
		p += run + 1;
		n -= run + 1;
		at += run + 1;
	}
}

/*
 * Does the request target (between the line's first and last spaces,
 * version_at being where the version starts) parse as evhttp parses it
 * (but for CONNECT's, refused before)?  Only a target that does not start
 * with a single '/' is looked at: a path always parses.  The target's
 * bytes are still in the input buffer (evhttp takes a line only once it
 * is whole).
 */
static bool target_parses(const struct guard *g, size_t version_at)
{
	size_t len = version_at - g->first_space_at - 2;
	uint64_t at = g->request_at + g->first_space_at + 1;
	struct evbuffer_ptr ptr;
	char head[2], *target;
	struct evhttp_uri *uri;

	if (!scan_input || at < scan_input_at ||
	    evbuffer_ptr_set(scan_input, &ptr, (size_t)(at - scan_input_at), EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(scan_input, &ptr, head, len < 2 ? len : 2) < 1)
		return true;	/* nothing to look at: evhttp will say */
	if (head[0] == '/' && (len < 2 || head[1] != '/'))
		return true;
	target = malloc(len + 1);
	if (!target || evbuffer_copyout_from(scan_input, &ptr, target, len) != (ev_ssize_t)len) {
		free(target);
		return true;
	}
	target[len] = '\0';
	uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
	free(target);
	if (!uri)
		return false;
	evhttp_uri_free(uri);
	return true;
}

/*
 * The request line is complete: is it one evhttp can read
 * (evhttp_parse_request_line)?  Trailing spaces dropped, at least
 * SHORTEST_LINE bytes, the method up to the first space, the version after
 * the last one, something between them, and a version sscanf reads as
 * HTTP/major.minor with major at most 1.  evhttp answers any other line
 * with an HTML 400; the guard answers it in JSON, and a later HTTP version
 * 505.  Then CONNECT gets 501, a target evhttp would not parse as a URI
 * 400 (both also HTML from evhttp), and a method evhttp does not know 501,
 * as evhttp would say it.
 */
static void check_request_line(struct guard *g)
{
	bool in_word = g->word_len > 0;	/* else the line ended in spaces */
	size_t at = in_word ? g->word_at : g->last_at;
	size_t len = in_word ? g->word_len : g->last_len;
	char version[VERSION_MAX + 1];
	int major, minor;
	char extra;

	if (at + len < SHORTEST_LINE || !g->request_spaces || at < g->first_space_at + 3 ||
	    len > VERSION_MAX) {
		refuse(g, 400, "Bad Request",
		       "a malformed request line: send METHOD TARGET HTTP/1.1");
		return;
	}
	memcpy(version, in_word ? g->word : g->last, len);
	version[len] = '\0';
	if (sscanf(version, "HTTP/%d%c", &major, &extra) == 1 && major > 1) {
		/* "HTTP/2": a later version all the same */
		refuse(g, 505, "HTTP Version Not Supported",
		       "this host speaks HTTP/1.1 (and 1.0) on this port");
		return;
	}
	if (sscanf(version, "HTTP/%d.%d%c", &major, &minor, &extra) != 2) {
		refuse(g, 400, "Bad Request",
		       "a malformed request line: its last word must be the version, HTTP/1.1");
		return;
	}
	if (major > 1) {
		refuse(g, 505, "HTTP Version Not Supported",
		       "this host speaks HTTP/1.1 (and 1.0) on this port");
		return;
	}
	if (method_is(g, "connect ")) {
		/* evhttp reads its target as host:port, and answers one it
		 * cannot read in HTML */
		refuse(g, 501, "Not Implemented", "CONNECT: this host is not a proxy");
		return;
	}
	if (!target_parses(g, at)) {
		refuse(g, 400, "Bad Request",
		       "a request target that is not a URI: send a path, such as /healthz");
		return;
	}
	if (!known_method(g))
		refuse(g, 501, "Not Implemented",
		       "unknown method: HTTP methods are upper case, such as GET, HEAD and POST");
}

/* One byte of a header line (not its newline): keeps the name's first
 * bytes and the digits of a Content-Length. */
static void line_byte(struct guard *g, char c)
{
	if (g->cr_pending) {
		refuse_bare_cr(g);
		return;
	}
	if (c == '\r') {
		g->cr_pending = true;
		return;
	}
	if (g->line_len == 0 && g->past_request_line && (c == ' ' || c == '\t')) {
		/* obs-fold (RFC 9112 5.2: 400): evhttp would add the line to the
		 * header before, perhaps a Content-Length the guard has read */
		refuse(g, 400, "Bad Request", "a header line folded onto the next (obs-fold)");
		return;
	}
	if (!g->past_request_line) {
		if (c != ' ' && g->request_spaces == 0 && (c < 'A' || c > 'Z'))
			g->method_not_upper = true;
		request_line_text(g, &c, 1);
	}
	if (g->in_length && !length_byte(g, c)) {
		refuse_length(g);
		return;
	}
	if (g->line_len < NAME_PREFIX)
		g->name[g->line_len] = (char)tolower((unsigned char)c);
	g->line_len++;
	if (!g->seen_colon && (c == ' ' || c == '\t')) {
		g->name_blank = true;
	} else if (!g->seen_colon && c == ':') {
		g->seen_colon = true;
		/* "Name : value" (RFC 9112 5.1: 400): evhttp would take "Name "
		 * for another header, and an Idempotency-Key would be lost */
		if (g->past_request_line && g->name_blank) {
			refuse(g, 400, "Bad Request", "whitespace between a header's name and its colon");
			return;
		}
	}
	if (c == ':' && g->line_len <= NAME_PREFIX) {
		if (g->line_len == 15 && !memcmp(g->name, "content-length:", 15)) {
			if (g->has_length) {
				/* two lengths: where the body ends is ambiguous */
				refuse(g, 400, "Bad Request", "more than one Content-Length");
				return;
			}
			g->in_length = g->has_length = true;
		}
		if (g->line_len == 18 && !memcmp(g->name, "transfer-encoding:", 18))
			/* a chunked body's end is past what the guard follows */
			refuse(g, 411, "Length Required",
			       "send the body with a Content-Length (no Transfer-Encoding)");
	}
}

static void end_of_line(struct guard *g)
{
	g->cr_pending = false;
	if (g->in_length && !g->length_digits) {
		refuse_length(g);	/* an empty value */
		return;
	}
	if (g->line_len == 0 && g->head_len > 2) {
		/* the blank line: the headers are complete */
		if (g->bodiless)
			g->length = 0;	/* what follows is the next request */
		if (g->length > body_limit) {
			refuse(g, 413, "Payload Too Large", "the body is over max_body_size");
			return;
		}
		g->body_left = g->length;
		g->state = g->body_left ? BODY : HEAD;
		g->passed++;
		g->head_len = 0;
		g->length = 0;
		g->has_length = false;
		g->past_request_line = false;
		g->bodiless = false;
		g->request_spaces = 0;
		g->method_not_upper = false;
		g->word_len = g->last_len = g->last_at = 0;
	} else if (!g->past_request_line) {
		/* the request line (empty lines included: evhttp does not skip
		 * them); evhttp reads no body after HEAD or TRACE, whatever the
		 * headers say */
		g->bodiless = method_is(g, "head ") || method_is(g, "trace ");
		g->past_request_line = true;
		check_request_line(g);
	}
	g->line_len = 0;
	g->in_length = g->length_digits = g->length_ended = false;
	g->seen_colon = g->name_blank = false;
}

/*
 * Header bytes: the rest of the current line, or all n bytes when the line
 * goes on past them.  Only a line's first NAME_PREFIX bytes and a length's
 * digits are looked at one by one; the rest is counted.  Where the limit
 * falls inside, the bytes before it still count (a Transfer-Encoding there
 * passes, a second Content-Length is 400), then 431.  Returns the bytes
 * used.
 */
static size_t header_bytes(struct guard *g, const char *p, size_t n)
{
	const char *newline = memchr(p, '\n', n);
	size_t len = newline ? (size_t)(newline - p) + 1 : n;
	size_t room = guard_limit - g->head_len;	/* head_len never passes the limit */
	bool over = len > room;
	size_t text = over ? room : newline ? len - 1 : len;

	if (g->head_len == 0) {
		g->head_started_ms = clock_mono_ms();
		g->request_at = g->scanned;
	}
	g->head_len += over ? room : len;
	if (memchr(p, '\0', text)) {
		/* evhttp reads header lines as C strings: what follows a NUL
		 * would be the guard's and not evhttp's */
		refuse(g, 400, "Bad Request", "a NUL byte in the request headers");
		return over ? n : len;
	}
	for (size_t i = 0; i < text && g->state == HEAD; i++) {
		if (g->line_len >= NAME_PREFIX && !g->in_length) {
			/* nothing further on this line matters but the request
			 * line's spaces and a CR not before the LF: count it */
			const char *cr = memchr(p + i, '\r', text - i);

			if (g->cr_pending || (cr && cr < p + text - 1)) {
				refuse_bare_cr(g);
				break;
			}
			if (cr)	/* the last byte so far: an LF must follow */
				g->cr_pending = true;
			if (!g->past_request_line)
				request_line_text(g, p + i, text - i - (cr ? 1 : 0));
			g->line_len += text - i;
			break;
		}
		line_byte(g, p[i]);
	}
	if (over) {
		if (g->state == HEAD)
			refuse(g, 431, "Request Header Fields Too Large",
			       "request headers exceed max_header_size");
		return n;
	}
	if (newline && g->state == HEAD)
		end_of_line(g);
	return len;
}

static void never_runs(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/*
 * A request with a body has just come in whole.  evhttp, taking it, stops
 * reading the socket, and for an answer that waits the API has it read on
 * (http_guard_read_ahead) before the turn ends: libevent would still make
 * an epoll_ctl of the two.  A second read event on the socket, held until
 * the end of the turn, keeps the socket's interest in epoll unchanged
 * meanwhile; it is released before the loop polls again, so it never runs.
 */
static void keep_reading(struct guard *g)
{
	evutil_socket_t fd = bufferevent_getfd(g->bev);
	evutil_socket_t *room;

	if (!release_event || fd < 0)
		return;
	if (!g->keep_read &&
	    !(g->keep_read = event_new(bufferevent_get_base(g->bev), fd, EV_READ, never_runs, NULL)))
		return;
	if (event_pending(g->keep_read, EV_READ, NULL))
		return;
	room = room_for_one(kept, kept_count, &kept_cap, sizeof *kept);
	if (!room)
		return;
	kept = room;
	if (event_add(g->keep_read, NULL) < 0)
		return;
	kept[kept_count++] = fd;
	event_active(release_event, EV_TIMEOUT, 0);
}

/* The end of the turn: the read events keep_reading() added go. */
static void release_kept(evutil_socket_t unused, short what, void *arg)
{
	(void)unused;
	(void)what;
	(void)arg;
	for (size_t i = 0; i < kept_count; i++) {
		struct guard *g = (size_t)kept[i] < guard_count ? &guards[kept[i]] : NULL;

		if (g && g->bev && g->keep_read)
			event_del(g->keep_read);
	}
	kept_count = 0;
}

/* Runs the state machine over n new bytes; false once rejected. */
static bool scan(struct guard *g, const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t used;

		if (g->state == REJECTED)
			return false;
		if (g->state == BODY) {
			used = n - i < g->body_left ? n - i : (size_t)g->body_left;
			g->body_left -= used;
			if (g->body_left == 0) {
				g->state = HEAD;
				if (!answer_waits(g))
					keep_reading(g);
			}
		} else {
			used = header_bytes(g, p + i, n - i);
		}
		i += used;
		g->scanned += used;
	}
	return g->state != REJECTED;
}

/* Removes the last n bytes of in, which evhttp has not read.  Returns false
 * when out of memory: everything is gone then. */
static bool drop_tail(struct evbuffer *in, size_t n)
{
	size_t len = evbuffer_get_length(in);
	bool kept;

	if (n == 0)
		return true;
	if (n >= len || !scratch) {
		evbuffer_drain(in, len);
		return n >= len;
	}
	putting_back = true;
	kept = evbuffer_remove_buffer(in, scratch, len - n) == (int)(len - n) &&
	       evbuffer_drain(in, n) == 0 && evbuffer_add_buffer(in, scratch) == 0;
	putting_back = false;
	if (!kept) {
		evbuffer_drain(in, evbuffer_get_length(in));
		evbuffer_drain(scratch, evbuffer_get_length(scratch));
	}
	return kept;
}

/*
 * The request just refused began at g->request_at; end is where the bytes
 * in the buffer end.  Bytes before that request that evhttp has yet to read
 * are earlier requests, complete: they stay, and the refusal waits until
 * evhttp has answered them (after_answer_written; the sweep as backstop).
 * So does a refusal that came while an answer of evhttp's waited.
 * Everything from the refused request on is dropped.
 */
static void settle_refusal(struct guard *g, struct evbuffer *in, uint64_t end)
{
	size_t buffered = evbuffer_get_length(in);
	uint64_t start = end - buffered;
	size_t earlier = g->request_at > start ? (size_t)(g->request_at - start) : 0;

	if ((earlier || answer_waits(g)) && drop_tail(in, buffered - earlier)) {
		g->refusal_held = true;
		g->held_input = 0;
		evbuffer_add_cb(bufferevent_get_output(g->bev), on_output, g->bev);
		return;
	}
	evbuffer_drain(in, evbuffer_get_length(in));
	send_refusal(g);
}

/* Sees every chunk the socket adds to evhttp's input buffer. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct guard *g = guard_for(arg);
	struct evbuffer_ptr at;
	char chunk[4096];
	size_t left = info->n_added;
	uint64_t end;

	if (!g || !left || putting_back)
		return;
	if (g->state == REJECTED) {
		drop_tail(in, left);
		return;
	}
	end = g->scanned + left;
	if (evbuffer_ptr_set(in, &at, evbuffer_get_length(in) - left, EVBUFFER_PTR_SET) < 0)
		return;
	scan_input = in;
	scan_input_at = end - evbuffer_get_length(in);
	while (left > 0) {
		size_t n = left < sizeof chunk ? left : sizeof chunk;
		ev_ssize_t got = evbuffer_copyout_from(in, &at, chunk, n);

		if (got <= 0)
			break;
		if (!scan(g, chunk, (size_t)got)) {
			/* evhttp must never see this request */
			scan_input = NULL;
			settle_refusal(g, in, end);
			return;
		}
		left -= (size_t)got;
		evbuffer_ptr_set(in, &at, (size_t)got, EVBUFFER_PTR_ADD);
	}
	scan_input = NULL;
	if (evbuffer_get_length(in) >= READ_AHEAD_MAX && !evhttp_parses(g)) {
		bufferevent_disable(g->bev, EV_READ);	/* evhttp reads on after its answer */
		g->head_paused = true;
	}
}

/* evhttp accepted a connection and asks for its bufferevent. */
static struct bufferevent *new_connection(struct event_base *base, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent **room;

	(void)arg;
	if (!bev)
		return NULL;
	evbuffer_add_cb(bufferevent_get_input(bev), on_input, bev);
	if (!adopt_event)
		return bev;	/* served unguarded */
	room = room_for_one(adopting, adopt_count, &adopt_cap, sizeof *adopting);
	if (!room)
		return bev;	/* served unguarded */
	adopting = room;
	bufferevent_incref(bev);	/* until adopt() has looked at it */
	adopting[adopt_count++] = bev;
	event_active(adopt_event, EV_TIMEOUT, 0);
	steer_listener();
	return bev;
}

/* The limit on open connections: max_connections, within what the file
 * descriptor limit leaves once `reserve` are kept for everything else and
 * OVER_LIMIT_ANSWERS for 503s. */
static int connection_limit(int wanted, int reserve)
{
	rlim_t kept = (rlim_t)reserve + OVER_LIMIT_ANSWERS;
	struct rlimit rl;
	rlim_t room;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return wanted;
	room = rl.rlim_cur > kept + 16 ? rl.rlim_cur - kept : 16;
	if ((rlim_t)wanted <= room)
		return wanted;
	log_warning("max_connections %d lowered to %d: the process may open %llu files "
		    "(ulimit -n; LimitNOFILE= in a systemd unit), and %llu of them are kept "
		    "for the databases, workers, deliveries and 503 answers", wanted, (int)room,
		    (unsigned long long)rl.rlim_cur, (unsigned long long)kept);
	return (int)room;
}

void http_guard_install(struct evhttp *http, struct event_base *base, size_t max_header_bytes,
			size_t max_body_bytes, int64_t header_timeout, int max_conns, int reserve_fds)
{
	struct timeval second = { 1, 0 };

	guard_limit = max_header_bytes;
	body_limit = max_body_bytes;
	header_timeout_ms = header_timeout;
	max_connections = connection_limit(max_conns, reserve_fds);
	evhttp_set_bevcb(http, new_connection, NULL);
	if (!adopt_event)
		adopt_event = event_new(base, -1, 0, adopt, NULL);
	/* release_kept must run in the turn keep_reading() was called in: with
	 * one priority, an event made active runs in the same turn */
	if (!release_event && event_base_get_npriorities(base) == 1)
		release_event = event_new(base, -1, 0, release_kept, NULL);
	if (!scratch)
		scratch = evbuffer_new();
	if (!sweeper) {
		sweeper = event_new(base, -1, EV_PERSIST, sweep, NULL);
		if (sweeper)
			event_add(sweeper, &second);
	}
}

void http_guard_listen(struct evconnlistener *l)
{
	listener = l;
	evconnlistener_set_error_cb(l, on_accept_error);
}

void http_guard_close(void)
{
	listener = NULL;	/* evhttp_free frees it before the connections */
	for (size_t i = 0; i < adopt_count; i++)
		bufferevent_decref(adopting[i]);
	adopt_count = 0;
	release_kept(-1, 0, NULL);
	/* the guard's events belong to this base: a later install may be on
	 * another (the unit tests make one per test) */
	if (adopt_event)
		event_free(adopt_event);
	if (release_event)
		event_free(release_event);
	if (sweeper)
		event_free(sweeper);
	adopt_event = release_event = sweeper = NULL;
	free(kept);
	kept = NULL;
	kept_cap = 0;
}

/*
 * http_guard.c - the header-size guard (see http_guard.h).
 *
 * evhttp reads each connection through a plain socket bufferevent; the
 * guard watches the bytes as they are added to that bufferevent's input
 * buffer (an evbuffer callback, run before evhttp parses them) and follows
 * the requests with a small state machine: HEAD counts a request's header
 * bytes and picks up Content-Length on the way, BODY skips that many
 * bytes, PASS gives up on a connection that uses Transfer-Encoding
 * (evhttp's own limit still holds there), REJECTED discards everything
 * after the 431 answer.  Guards live in a table indexed by socket, since
 * bufferevents have no "freed" hook.  A bufferevent made for a new
 * connection is remembered as fresh, and the first bytes it reads reset its
 * socket's slot (a freed bufferevent's address and socket number are often
 * both reused at once, so neither alone tells connections apart).
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "clock.h"

#include "http_guard.h"

enum guard_state { HEAD, BODY, PASS, REJECTED };

#define NAME_PREFIX 20

struct guard {
	struct bufferevent *bev;	/* the connection this slot serves */
	struct sockaddr_storage peer;	/* tells a reused socket number apart */
	int64_t head_started_ms;	/* monotonic; first byte of these headers */
	enum guard_state state;
	size_t head_len;		/* header bytes of the current request */
	size_t line_len;		/* bytes of the current header line */
	char name[NAME_PREFIX];		/* its first bytes, lowercased */
	bool in_length;			/* reading a Content-Length value */
	bool has_length;		/* this request has a Content-Length */
	unsigned long long length, body_left;
};

static size_t guard_limit;
static int64_t header_timeout_ms;
static int max_connections, live_connections;
static struct guard *guards;		/* indexed by fd */
static size_t guard_count;

static void answer(struct guard *g, int code, const char *reason, const char *error);
static void count_live(void);
static struct bufferevent *fresh[256];	/* new, not yet read from */
static size_t fresh_next, fresh_count;

static bool take_fresh(struct bufferevent *bev)
{
	if (fresh_count == 0)
		return false;	/* the usual case on busy keep-alive traffic */
	for (size_t i = 0; i < sizeof fresh / sizeof fresh[0]; i++) {
		if (fresh[i] == bev) {
			fresh[i] = NULL;
			fresh_count--;
			return true;
		}
	}
	return false;
}

static struct guard *guard_for(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct guard *g;
	bool is_new;

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
	g = &guards[fd];
	is_new = take_fresh(bev);	/* always: a stale entry would reset it later */
	if (g->bev != bev || is_new) {
		socklen_t len = sizeof g->peer;

		if (!g->bev)
			live_connections++;
		memset(g, 0, sizeof *g);
		g->bev = bev;
		getpeername(fd, (struct sockaddr *)&g->peer, &len);
		if (live_connections > max_connections)
			count_live();	/* exact count before turning anyone away */
		if (live_connections > max_connections) {
			answer(g, 503, "Service Unavailable", "too many connections (max_connections)");
			return NULL;
		}
	}
	return g;
}

static void close_when_sent(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *bev = arg;

	(void)info;
	if (evbuffer_get_length(out) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

/* Answers the connection directly (evhttp never sees the request) and
 * closes it once the answer is sent. */
static void answer(struct guard *g, int code, const char *reason, const char *error)
{
	struct evbuffer *out = bufferevent_get_output(g->bev);

	g->state = REJECTED;
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Connection: close\r\nContent-Length: %zu\r\n\r\n"
			    "{\"error\": \"%s\"}\n",
			    code, reason, strlen(error) + 13, error);
	evbuffer_add_cb(out, close_when_sent, g->bev);
	bufferevent_enable(g->bev, EV_WRITE);
}

static void reject(struct guard *g)
{
	answer(g, 431, "Request Header Fields Too Large",
	       "request headers exceed max_header_size");
}

/*
 * True when slot g's connection is still open: its socket number is open
 * and connected to the same peer (only evhttp closes these sockets, and it
 * frees the bufferevent when it does).
 */
static bool still_open(struct guard *g, int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof peer;

	memset(&peer, 0, sizeof peer);
	return fcntl(fd, F_GETFD) != -1 &&
	       getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
	       memcmp(&peer, &g->peer, sizeof peer) == 0;
}

/* Forgets closed connections; recounts the open ones. */
static void count_live(void)
{
	live_connections = 0;
	for (size_t fd = 0; fd < guard_count; fd++) {
		struct guard *g = &guards[fd];

		if (!g->bev)
			continue;
		if (!still_open(g, (int)fd))
			g->bev = NULL;
		else
			live_connections++;
	}
}

/* Once a second: connections whose headers are overdue get 408. */
static void sweep(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	(void)arg;
	count_live();
	for (size_t i = 0; i < guard_count; i++) {
		struct guard *g = &guards[i];

		if (g->bev && g->state == HEAD && g->head_len > 0 &&
		    now - g->head_started_ms > header_timeout_ms)
			answer(g, 408, "Request Timeout",
			       "request headers did not arrive within header_timeout");
	}
}

/* evhttp frees a connection (its socket still open): the slot goes first,
 * so the guard never looks at a freed bufferevent */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

	(void)arg;
	if (fd >= 0 && (size_t)fd < guard_count && guards[fd].bev == bev) {
		guards[fd].bev = NULL;
		live_connections--;
	}
}

void http_guard_watch(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	if (evcon)
		evhttp_connection_set_closecb(evcon, on_connection_close, NULL);
}

size_t http_guard_unsent(int *connections)
{
	size_t bytes = 0;

	*connections = 0;
	for (size_t fd = 0; fd < guard_count; fd++) {
		struct guard *g = &guards[fd];
		size_t n;

		if (!g->bev || g->state == REJECTED || !still_open(g, (int)fd))
			continue;
		n = evbuffer_get_length(bufferevent_get_output(g->bev));
		if (n) {
			bytes += n;
			(*connections)++;
		}
	}
	return bytes;
}

/* One byte of a header line (not its newline): keeps the name's first
 * bytes and the digits of a Content-Length. */
static void line_byte(struct guard *g, char c)
{
	if (c == '\r')
		return;
	if (g->in_length && isdigit((unsigned char)c) && g->length < (1ULL << 50))
		g->length = g->length * 10 + (unsigned long long)(c - '0');
	if (g->line_len < NAME_PREFIX)
		g->name[g->line_len] = (char)tolower((unsigned char)c);
	g->line_len++;
	if (c == ':' && g->line_len <= NAME_PREFIX) {
		if (g->line_len == 15 && !memcmp(g->name, "content-length:", 15)) {
			if (g->has_length) {
				/* two lengths: where the body ends is ambiguous */
				answer(g, 400, "Bad Request", "more than one Content-Length");
				return;
			}
			g->in_length = g->has_length = true;
		}
		if (g->line_len == 18 && !memcmp(g->name, "transfer-encoding:", 18))
			g->state = PASS;
	}
}

static void end_of_line(struct guard *g)
{
	if (g->line_len == 0 && g->head_len > 2) {
		/* the blank line: the headers are complete */
		g->body_left = g->length;
		g->state = g->body_left ? BODY : HEAD;
		g->head_len = 0;
		g->length = 0;
		g->has_length = false;
	}
	g->line_len = 0;
	g->in_length = false;
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

	if (g->head_len == 0)
		g->head_started_ms = clock_mono_ms();
	g->head_len += over ? room : len;
	for (size_t i = 0; i < text && g->state == HEAD; i++) {
		if (g->line_len >= NAME_PREFIX && !g->in_length) {
			/* nothing further on this line matters: count it */
			g->line_len += text - i;
			break;
		}
		line_byte(g, p[i]);
	}
	if (over) {
		if (g->state == HEAD)
			reject(g);
		return n;
	}
	if (newline && g->state == HEAD)
		end_of_line(g);
	return len;
}

/* Runs the state machine over n new bytes; false once rejected. */
static bool scan(struct guard *g, const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (g->state == REJECTED)
			return false;
		if (g->state == PASS)
			return true;
		if (g->state == BODY) {
			size_t skip = n - i < g->body_left ? n - i : (size_t)g->body_left;

			i += skip;
			g->body_left -= skip;
			if (g->body_left == 0)
				g->state = HEAD;
			continue;
		}
		i += header_bytes(g, p + i, n - i);
	}
	return g->state != REJECTED;
}

/* Sees every chunk the socket adds to evhttp's input buffer. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct guard *g = guard_for(arg);
	struct evbuffer_ptr at;
	char chunk[4096];
	size_t left = info->n_added;

	if (!g || !left || g->state == PASS)
		return;
	if (g->state == REJECTED) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (evbuffer_ptr_set(in, &at, evbuffer_get_length(in) - left, EVBUFFER_PTR_SET) < 0)
		return;
	while (left > 0) {
		size_t n = left < sizeof chunk ? left : sizeof chunk;
		ev_ssize_t got = evbuffer_copyout_from(in, &at, chunk, n);

		if (got <= 0)
			return;
		if (!scan(g, chunk, (size_t)got)) {
			/* evhttp must never see this request */
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		left -= (size_t)got;
		evbuffer_ptr_set(in, &at, (size_t)got, EVBUFFER_PTR_ADD);
	}
}

static struct bufferevent *new_connection(struct event_base *base, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

	(void)arg;
	if (bev) {
		size_t slot = fresh_next++ % (sizeof fresh / sizeof fresh[0]);

		take_fresh(bev);	/* an old entry for the same address */
		if (fresh[slot])
			fresh_count--;	/* overwritten: never read from */
		fresh[slot] = bev;
		fresh_count++;
		evbuffer_add_cb(bufferevent_get_input(bev), on_input, bev);
	}
	return bev;
}

void http_guard_install(struct evhttp *http, struct event_base *base, size_t max_header_bytes,
			int64_t header_timeout, int max_conns)
{
	static struct event *sweeper;
	struct timeval second = { 1, 0 };

	guard_limit = max_header_bytes;
	header_timeout_ms = header_timeout;
	max_connections = max_conns;
	evhttp_set_bevcb(http, new_connection, NULL);
	if (!sweeper) {
		sweeper = event_new(base, -1, EV_PERSIST, sweep, NULL);
		if (sweeper)
			event_add(sweeper, &second);
	}
}

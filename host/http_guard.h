/*
 * http_guard.h - a byte-level guard under evhttp for what evhttp does not
 * enforce itself:
 *   - request headers larger than the limit get "431 Request Header Fields
 *     Too Large" (evhttp's own limit answers 413, the body's status, and
 *     stays only as a backstop);
 *   - a request whose headers take longer than the header timeout to
 *     arrive (slowloris) gets "408 Request Timeout";
 *   - a connection beyond max_connections gets "503" when it sends its
 *     first bytes.
 * Each answer closes the connection once it is sent.  (Connections that
 * never send a byte are closed by evhttp's idle timeout.)
 */
#ifndef CAGEHOST_HTTP_GUARD_H
#define CAGEHOST_HTTP_GUARD_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

struct evhttp;
struct evhttp_request;

/* Installs the guard on every new connection of http. */
void http_guard_install(struct evhttp *http, struct event_base *base, size_t max_header_bytes,
			int64_t header_timeout_ms, int max_connections);

/*
 * Called with every request evhttp hands over: the guard then forgets the
 * connection the moment evhttp frees it.  (A connection that never got as
 * far as a request is checked by socket number and peer address instead,
 * which a new connection from the same address and port could fool.)
 */
void http_guard_watch(struct evhttp_request *req);

/*
 * Answers the loop has made that open connections have not yet written to
 * their sockets (a slow reader's, say): the bytes in all; *connections is
 * set to how many connections hold some.  The guard's own error answers
 * (431, 408, 503) do not count: nobody waits for those.
 */
size_t http_guard_unsent(int *connections);

#endif

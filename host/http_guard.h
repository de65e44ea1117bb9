/*
 * http_guard.h - a byte-level guard under evhttp for what evhttp does not
 * enforce itself:
 *   - request headers larger than the limit get "431 Request Header Fields
 *     Too Large" (evhttp's own limit answers 413, the body's status, and
 *     stays only as a backstop), and a Content-Length over the body limit
 *     "413 Payload Too Large" in JSON (evhttp's would be HTML);
 *   - a request whose headers take longer than the header timeout to
 *     arrive (slowloris) gets "408 Request Timeout";
 *   - a request with a Transfer-Encoding gets "411 Length Required" (the
 *     guard follows bodies by their Content-Length, as evhttp does: none
 *     after HEAD or TRACE); one with two Content-Lengths, one that is not
 *     digits, a blank before a header's colon, a folded header line, a NUL
 *     or a CR not followed by LF gets "400" (each a place where evhttp
 *     would read the headers otherwise than the guard); a method evhttp
 *     does not know "501" (in JSON; evhttp's would be HTML);
 *   - a request line evhttp cannot read (no target, no version, an empty
 *     line) gets "400", and one in a later HTTP version "505 HTTP Version
 *     Not Supported", in JSON (evhttp's would be an HTML 400);
 *   - a connection beyond max_connections gets "503" when it is accepted;
 *     further beyond it, and while accept() fails (no file descriptors
 *     left), the listener pauses.  max_connections is lowered, with a
 *     warning, to what the file descriptor limit leaves.
 * Each answer shuts the connection's sending side once it is sent, and the
 * connection is closed about two seconds later, whatever the client does.
 * Requests pipelined before a refused one are left to evhttp, and the
 * answer waits until evhttp has answered them.
 * (Connections that never send a byte are closed by evhttp's idle timeout.)
 */
#ifndef CAGEHOST_HTTP_GUARD_H
#define CAGEHOST_HTTP_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

struct evconnlistener;
struct evhttp;
struct evhttp_request;

/* Installs the guard on every new connection of http.  reserve_fds: file
 * descriptors the rest of the host may need at once (connections are kept
 * within the open files limit less these). */
void http_guard_install(struct evhttp *http, struct event_base *base, size_t max_header_bytes,
			size_t max_body_bytes, int64_t header_timeout_ms, int max_connections,
			int reserve_fds);

/* Lets the guard pause and resume accepting on http's listener. */
void http_guard_listen(struct evconnlistener *listener);

/* Before evhttp_free(): the guard lets go of the listener and of the
 * connections accepted this turn, and frees its events (a later install
 * may be on another event base). */
void http_guard_close(void);

/*
 * Answers the loop has made that open connections have not yet written to
 * their sockets (a slow reader's, say): the bytes in all; *connections is
 * set to how many connections hold some.  The guard's own error answers
 * (431, 408, 503) do not count: nobody waits for those.
 */
size_t http_guard_unsent(int *connections);

/*
 * For each request evhttp hands to the API, before anything else: false
 * when the guard let fewer requests through on its connection than evhttp
 * has read, i.e. the two disagree on where a request ends (a request
 * hidden from the guard, as in request smuggling).  The caller then
 * answers 400 with "Connection: close"; the rest of the input is dropped
 * and the event logged.  True for connections the guard does not serve.
 */
bool http_guard_admit(struct evhttp_request *req);

/*
 * For a request answered in a later loop turn, once evhttp has handed it
 * over: the connection goes on reading while the answer waits, instead of
 * stopping until it is written (what evhttp does after a request with a
 * body), which spares taking its socket out of epoll and putting it back
 * for every such request.  What arrives meanwhile waits in the input, up
 * to 64 KiB, and is checked as it comes; evhttp reads it once it has
 * answered.  A refusal of a request that came meanwhile waits for that
 * answer too.  An end of stream or error is left for evhttp to see then.
 * evhttp's answer ends the read-ahead.  Nothing happens on a connection
 * the guard does not serve, or one it has refused.
 */
void http_guard_read_ahead(struct evhttp_request *req);

/* A connection as the guard knows it, to write an answer to once made. */
struct http_guard_conn {
	int fd;			/* -1: a connection the guard does not serve */
	const void *bev;	/* its bufferevent, compared, never followed */
};

/* req's connection: taken before answering req, which may free it. */
struct http_guard_conn http_guard_conn_of(struct evhttp_request *req);

/*
 * For an answer evhttp_send_reply() has just queued on conn from outside
 * evhttp's callbacks (an answer that waited): writes it to the socket now,
 * not when the loop next finds the socket writable, and once all of it is
 * written, lets evhttp finish the request as it does after any write, which
 * may free the connection.  Spares two epoll changes and a loop wakeup per
 * answer.  What the socket does not take, or an error, is left to the
 * usual write.  Nothing happens if conn is gone or not the guard's.
 */
void http_guard_write_now(struct http_guard_conn conn);

/* How many times http_guard_admit() has said false (for tests). */
uint64_t http_guard_desyncs(void);

#endif

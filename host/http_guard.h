/*
 * http_guard.h - a byte-level guard under evhttp that enforces the request
 * header limit with "431 Request Header Fields Too Large".  (evhttp's own
 * header limit answers 413, the body's status, so it stays only as a
 * backstop.)  Each connection's bytes pass through a bufferevent filter
 * that counts each request's header bytes, then lets the body through by
 * its Content-Length; a connection that exceeds the limit gets the 431
 * answer and is closed once the answer is sent.
 */
#ifndef CAGEHOST_HTTP_GUARD_H
#define CAGEHOST_HTTP_GUARD_H

#include <stddef.h>

struct evhttp;

/* Installs the guard on every new connection of http. */
void http_guard_install(struct evhttp *http, size_t max_header_bytes);

#endif

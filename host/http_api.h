/*
 * http_api.h - the HTTP interface (libevent evhttp):
 *
 *   POST /v1/call/{module}/{method}            run now; 200 + the reply
 *   POST /v1/enqueue/{queue}/{module}/{method} store; 202 {"id": ...} once durable
 *   GET  /v1/calls/{id}                        state, attempts, history (JSON;
 *                                              text with Accept: text/plain)
 *   POST /v1/calls/{id}/requeue                a dead call becomes pending again
 *   DELETE /v1/calls/{id}                      a dead call is forgotten
 *   GET  /v1/calls?state=dead|pending&...      a page of dead or waiting calls
 *                                              (call_pages.h)
 *   POST /v1/calls/requeue?state=dead&...      ... requeued
 *   DELETE /v1/calls?state=dead&...            ... deleted
 *   POST /v1/calls/retry?module=M              M's calls waiting for a retry
 *                                              are retried now
 *   POST /v1/backup                            a hot backup (backup.h)
 *   GET  /healthz                              200 "ok"
 *   GET  /metrics                              Prometheus text format
 *
 * Errors are JSON {"error": "reason"} with a fitting status.
 */
#ifndef CAGEHOST_HTTP_API_H
#define CAGEHOST_HTTP_API_H

struct event_base;
struct host_conf;
struct store;
struct batch;
struct plugin_dir;
struct worker_pool;
struct scheduler;
struct http_api;

struct http_api_deps {
	const struct host_conf *conf;
	struct store *store;
	struct batch *batch;
	struct plugin_dir *plugins;
	struct worker_pool *pool;
	struct scheduler *scheduler;
	struct backup *backup;
};

/*
 * Binds conf->listen (done first, while the host may still be root).
 * Until http_api_start(), every request gets 503 "starting".  Returns NULL
 * and logs why on failure.
 */
struct http_api *http_api_new(struct event_base *base, const struct host_conf *conf);

/* Starts serving with the host's parts (deps->conf must be the same). */
void http_api_start(struct http_api *api, const struct http_api_deps *deps);

/*
 * The host is stopping: every request from now on gets 503 "stopping"
 * (Connection: close), whether on a new connection or one kept open.
 * Requests already taken are answered as usual: see http_api_unanswered().
 */
void http_api_stop(struct http_api *api);

/* Requests taken and not answered yet: sync calls, enqueues and requeues
 * waiting for the disk, and a backup being made. */
int http_api_unanswered(const struct http_api *api);

/* Closes every connection and frees the sync calls not answered yet (the
 * worker pool and plugin directory still listing them never complete them). */
void http_api_free(struct http_api **api);

/* The TCP port listened on (the kernel's choice when the config says 0). */
int http_api_port(const struct http_api *api);

#endif

/*
 * host.h - one whole host: its parts assembled on one event loop in the
 * order they depend on each other, and taken apart in reverse.  main.c
 * runs it as the daemon; the HTTP fuzz harness runs the very same thing.
 *
 *   host_listen()  the event loop and the HTTP listener (binds the port:
 *                  as root, before privileges are dropped)
 *   host_start()   store, writer, worker pool, plugin directory, relay,
 *                  backups, scheduler; serving starts by itself once
 *                  every plugin present at start has been probed
 *                  (host->serving)
 *   host_begin_stop()  takes on no new work: new requests get 503
 *                  "stopping", no attempt starts;
 *                  host_busy() says what is still in progress
 *   host_stop()    after the loop ends: commits and flushes what was
 *                  written, answering every waiter
 *   host_free()    closes everything host_listen/host_start opened
 */
#ifndef CAGEHOST_HOST_H
#define CAGEHOST_HOST_H

#include <stdbool.h>

#include "conf.h"

struct host {
	struct host_conf conf;		/* filled in by the caller */
	struct event_base *base;
	struct store *store;
	struct batch *batch;
	struct worker_pool *pool;
	struct plugin_dir *plugins;
	struct relay *relay;		/* delivers calls to other cages */
	struct backup *backup;		/* POST /v1/backup */
	struct scheduler *scheduler;
	struct http_api *http;
	struct event *left_out_timer;	/* log_budgets_report() every second */
	bool serving;
	bool stopping;			/* host_begin_stop() was called */
};

/* Each returns 0, or -1 after logging why. */
int host_listen(struct host *h);
int host_start(struct host *h);

void host_begin_stop(struct host *h);

/*
 * Work still in progress after host_begin_stop(): requests not answered
 * yet, answers not yet written out to their clients, attempts running in
 * workers, deliveries to other cages.  Returns
 * how many in all (0: the host may stop), described in what.
 */
int host_busy(const struct host *h, char *what, size_t size);

void host_stop(struct host *h);

/* Also releases h->conf. */
void host_free(struct host *h);

#endif

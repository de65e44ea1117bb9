/*
 * host.c - assembles a host's parts and takes them apart (see host.h).
 */
#include "config.h"	/* PACKAGE_VERSION */

#include <event2/event.h>
#include <limits.h>
#include <stdio.h>

#include "backup.h"
#include "batch.h"
#include "host.h"
#include "http_api.h"
#include "http_guard.h"
#include "log.h"
#include "plugin_dir.h"
#include "relay.h"
#include "scheduler.h"
#include "store.h"
#include "worker.h"

/*
 * The event loop.  epoll changes are batched per turn (the changelist):
 * evhttp turns a connection's read and write interest on and off for
 * every request, and most of those changes cancel out within the turn;
 * without it each one is an epoll_ctl call (measured: /healthz 57k/s
 * without, 69k/s with).  No fd the host polls is a dup of another, which
 * is the case the changelist gets wrong.
 */
/* libevent's own messages (a failed accept(), say) go to the host's log,
 * with its timestamps and level */
static void libevent_log(int severity, const char *msg)
{
	log_msg(severity >= EVENT_LOG_ERR	 ? LOG_ERROR
		: severity == EVENT_LOG_WARN ? LOG_WARNING
					     : LOG_DEBUG,
		"libevent: %s", msg);
}

static struct event_base *new_event_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (!cfg)
		return NULL;
	event_set_log_callback(libevent_log);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

int host_listen(struct host *h)
{
	h->base = new_event_base();
	if (!h->base) {
		log_error("cannot create the event loop");
		return -1;
	}
	h->http = http_api_new(h->base, &h->conf);
	return h->http ? 0 : -1;
}

static void on_plugins_ready(void *arg)
{
	struct host *h = arg;
	struct http_api_deps deps = { &h->conf, h->store, h->batch, h->plugins, h->pool,
				      h->scheduler, h->backup };

	if (h->stopping)
		return;		/* stopped before it served */
	http_api_start(h->http, &deps);
	scheduler_start(h->scheduler);
	h->serving = true;
	char address[sizeof h->conf.listen_host + 16];

	log_info("serving on %s (cagehost %s, data_dir %s, plugin_dir %s, %d workers)",
		 conf_format_address(h->conf.listen_host, http_api_port(h->http), address,
				     sizeof address),
		 PACKAGE_VERSION, h->conf.data_dir, h->conf.plugin_dir, h->conf.workers);
}

/* Every second: how many lines each log budget left out of a storm now
 * over (log.h), so that the count is not lost when no line follows. */
static void report_left_out(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_budgets_report(false);
}

int host_start(struct host *h)
{
	struct worker_limits limits = { h->conf.worker_memory_limit, h->conf.worker_cpu_limit_ms,
					h->conf.worker_files_limit };
	char err[4096], cache_dir[PATH_MAX + 16];

	if (store_open(&h->store, h->conf.data_dir, err, sizeof err) < 0) {
		log_error("%s", err);
		return -1;
	}
	h->left_out_timer = event_new(h->base, -1, EV_PERSIST, report_left_out, NULL);
	if (!h->left_out_timer || event_add(h->left_out_timer, &(struct timeval){ 1, 0 }) < 0) {
		log_error("cannot start a timer: out of memory");
		return -1;
	}
	h->batch = batch_new(h->base, h->store);
	snprintf(cache_dir, sizeof cache_dir, "%s/workers", h->conf.data_dir);
	h->pool = pool_new(h->base, h->conf.workers, &limits, cache_dir);
	snprintf(cache_dir, sizeof cache_dir, "%s/modules", h->conf.data_dir);
	h->plugins = h->pool ? plugins_new(h->base, h->pool, h->conf.plugin_dir, cache_dir) : NULL;
	h->relay = relay_new(h->base, &h->conf, store_has_deliveries(h->store));
	h->backup = backup_new(h->base, h->store, h->conf.data_dir, h->conf.backup_dir,
				h->conf.backup_keep);
	if (!h->batch || !h->pool || !h->plugins || !h->relay || !h->backup) {
		log_error("cannot start the writer, the workers, the plugin directory, the relay "
			  "or the backups");
		return -1;
	}
	h->scheduler = scheduler_new(h->base, &h->conf, h->store, h->batch, h->plugins, h->pool,
				     h->relay);
	if (!h->scheduler) {
		log_error("cannot start the scheduler");
		return -1;
	}
	if (store_start_threads(h->store, h->conf.checkpoint_interval_ms) < 0) {
		log_error("%s", store_error(h->store));
		return -1;
	}
	plugins_on_ready(h->plugins, on_plugins_ready, h);
	return 0;
}

void host_begin_stop(struct host *h)
{
	h->stopping = true;
	if (h->http)
		http_api_stop(h->http);
	if (h->scheduler)
		scheduler_stop(h->scheduler);
	backup_cancel(h->backup);	/* its caller gets 503 */
	if (h->pool)
		pool_hold(h->pool, CLASS_QUEUED);	/* queued, not started: after the restart */
}

int host_busy(const struct host *h, char *what, size_t size)
{
	int requests = h->http && h->serving ? http_api_unanswered(h->http) : 0;
	int workers = h->pool ? pool_busy(h->pool) : 0;
	int deliveries = h->relay ? relay_in_flight(h->relay) : 0;
	int writing = 0;
	size_t unsent = h->http ? http_guard_unsent(&writing) : 0;

	snprintf(what, size, "%d request(s) unanswered, %d worker(s) busy, %d delivery(ies) "
		 "to other cages in flight, %zu byte(s) of answers not yet taken by %d "
		 "client(s)", requests, workers, deliveries, unsent, writing);
	return requests + workers + deliveries + writing;
}

void host_stop(struct host *h)
{
	if (h->batch)
		batch_flush(h->batch);
}

void host_free(struct host *h)
{
	http_api_free(&h->http);
	scheduler_free(&h->scheduler);
	relay_free(&h->relay);
	plugins_free(&h->plugins);
	pool_free(&h->pool);
	batch_free(&h->batch);
	backup_free(&h->backup);
	if (h->left_out_timer)
		event_free(h->left_out_timer);
	h->left_out_timer = NULL;
	store_close(&h->store);
	log_budgets_report(true);	/* Berkeley DB's last complaints included */
	if (h->base)
		event_base_free(h->base);
	h->base = NULL;
	conf_release(&h->conf);
}

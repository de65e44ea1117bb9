/*
 * batch.c - group commit (see batch.h).
 *
 * The end of a loop turn is a zero-timeout event, made active when the
 * turn's first write or waiter arrives; libevent runs it after the
 * callbacks already active in that turn.  There the turn's transaction is
 * committed without waiting for the disk.  Waiters that need durability
 * (an enqueue's 202) then wait in a group for the flusher thread, which
 * fdatasyncs the log and wakes the loop through an eventfd; one flush
 * covers every group committed before it started.  Meanwhile the loop goes
 * on parsing requests, so the disk's latency is never spent idle.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "batch.h"
#include "log.h"
#include "store.h"

struct waiter {
	batch_done_fn done;
	void *arg;
};

struct waiters {
	struct waiter *items;
	size_t count, cap;
};

/* Waiters of one committed turn, waiting for the flush of generation gen. */
struct group {
	uint64_t gen;
	struct waiters w;
	struct group *next;
};

struct batch {
	struct store *store;
	struct event *turn_end;
	struct waiters turn;		/* this turn's waiters, answered at its end */
	struct waiters turn_durable;	/* and those that need the disk */
	struct group *groups, **groups_tail;	/* committed, awaiting a flush */
	void (*after)(void *arg);
	void *after_arg;

	/* shared with the flusher thread, under lock */
	pthread_t flusher;
	bool flusher_running;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	uint64_t requested, flushed;	/* generations */
	bool stop, flush_failed;
	int eventfd;			/* the flusher's "done" signal */
	struct event *flushed_ev;
};

static int waiters_add(struct waiters *w, batch_done_fn done, void *arg)
{
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct waiter *grown = realloc(w->items, cap * sizeof *grown);

		if (!grown)
			return -1;
		w->items = grown;
		w->cap = cap;
	}
	w->items[w->count++] = (struct waiter){ done, arg };
	return 0;
}

static void waiters_run(struct waiters *w, bool ok)
{
	/* a waiter may register new ones: run a detached copy */
	struct waiters run = *w;

	memset(w, 0, sizeof *w);
	for (size_t i = 0; i < run.count; i++)
		run.items[i].done(ok, run.items[i].arg);
	free(run.items);
}

static void *flusher_loop(void *arg)
{
	struct batch *b = arg;
	uint64_t target, one = 1;
	bool ok;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->stop && b->requested == b->flushed)
			pthread_cond_wait(&b->wake, &b->lock);
		if (b->stop)
			break;
		target = b->requested;
		pthread_mutex_unlock(&b->lock);
		ok = store_flush_log(b->store) == 0;
		pthread_mutex_lock(&b->lock);
		b->flushed = target;
		if (!ok)
			b->flush_failed = true;
		if (write(b->eventfd, &one, sizeof one) < 0 && errno != EAGAIN)
			log_error("flusher: cannot wake the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Answers the groups the flusher has covered. */
static void on_flushed(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;
	uint64_t count, flushed;
	bool ok;

	(void)what;
	if (read(fd, &count, sizeof count) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&b->lock);
	flushed = b->flushed;
	ok = !b->flush_failed;
	b->flush_failed = false;
	pthread_mutex_unlock(&b->lock);
	if (!ok)
		log_error("storage: flushing the log to disk failed; the waiting enqueues get an "
			  "error (their calls may still run: they were committed, not acknowledged)");
	while (b->groups && b->groups->gen <= flushed) {
		struct group *g = b->groups;

		b->groups = g->next;
		if (!b->groups)
			b->groups_tail = &b->groups;
		waiters_run(&g->w, ok);
		free(g);
	}
}

/* Hands this turn's waiters to the flusher as a new group. */
static void await_flush(struct batch *b)
{
	struct group *g = calloc(1, sizeof *g);

	if (!g) {
		/* no memory for a group: wait for the disk here instead */
		waiters_run(&b->turn_durable, store_flush_log(b->store) == 0);
		return;
	}
	g->w = b->turn_durable;
	memset(&b->turn_durable, 0, sizeof b->turn_durable);
	pthread_mutex_lock(&b->lock);
	g->gen = ++b->requested;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	*b->groups_tail = g;
	b->groups_tail = &g->next;
}

static void end_turn(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;
	bool ok = true;

	(void)fd;
	(void)what;
	if (store_in_transaction(b->store) && store_commit(b->store) < 0) {
		log_error("storage: %s; %zu waiting request(s) get an error", store_error(b->store),
			  b->turn.count + b->turn_durable.count);
		store_abort(b->store);
		ok = false;
	}
	/* a durable waiter whose own writes committed in an earlier turn (a
	 * repeated Idempotency-Key) still waits for a flush after that turn */
	if (ok && b->turn_durable.count)
		await_flush(b);
	else
		waiters_run(&b->turn_durable, ok);
	waiters_run(&b->turn, ok);
	if (b->after)
		b->after(b->after_arg);
}

struct batch *batch_new(struct event_base *base, struct store *store)
{
	struct batch *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->store = store;
	b->groups_tail = &b->groups;
	b->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->wake, NULL);
	b->turn_end = event_new(base, -1, 0, end_turn, b);
	b->flushed_ev = b->eventfd >= 0 ? event_new(base, b->eventfd, EV_READ | EV_PERSIST,
						    on_flushed, b) : NULL;
	if (!b->turn_end || !b->flushed_ev || event_add(b->flushed_ev, NULL) < 0 ||
	    pthread_create(&b->flusher, NULL, flusher_loop, b) != 0) {
		batch_free(&b);
		return NULL;
	}
	b->flusher_running = true;
	return b;
}

void batch_free(struct batch **bp)
{
	struct batch *b = *bp;

	if (!b)
		return;
	if (b->flusher_running) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_signal(&b->wake);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->flusher, NULL);
	}
	while (b->groups) {
		struct group *g = b->groups;

		b->groups = g->next;
		free(g->w.items);
		free(g);
	}
	if (b->turn_end)
		event_free(b->turn_end);
	if (b->flushed_ev)
		event_free(b->flushed_ev);
	if (b->eventfd >= 0)
		close(b->eventfd);
	free(b->turn.items);
	free(b->turn_durable.items);
	free(b);
	*bp = NULL;
}

void batch_touch(struct batch *b)
{
	event_active(b->turn_end, EV_TIMEOUT, 0);
}

int batch_wait(struct batch *b, bool durable, batch_done_fn done, void *arg)
{
	if (waiters_add(durable ? &b->turn_durable : &b->turn, done, arg) < 0)
		return -1;
	batch_touch(b);
	return 0;
}

void batch_after_commit(struct batch *b, void (*cb)(void *arg), void *arg)
{
	b->after = cb;
	b->after_arg = arg;
}

void batch_flush(struct batch *b)
{
	bool ok;

	event_del(b->turn_end);
	end_turn(-1, 0, b);
	ok = store_flush_log(b->store) == 0;
	while (b->groups) {
		struct group *g = b->groups;

		b->groups = g->next;
		waiters_run(&g->w, ok);
		free(g);
	}
	b->groups_tail = &b->groups;
}

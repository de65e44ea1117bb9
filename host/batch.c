/*
 * batch.c - the end-of-turn commit (see batch.h).  A zero-timeout event is
 * made active when the first write or waiter of a turn arrives; libevent
 * runs it after the callbacks already active in that turn, which is where
 * the commit happens.
 */
#include <event2/event.h>
#include <stdlib.h>

#include "batch.h"
#include "log.h"
#include "store.h"

struct waiter {
	batch_done_fn done;
	void *arg;
};

struct batch {
	struct store *store;
	struct event *flush_ev;
	struct waiter *waiters;
	size_t count, cap;
	void (*after)(void *arg);
	void *after_arg;
};

static void flush(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;
	struct waiter *waiters = b->waiters;
	size_t count = b->count;
	bool ok = true;

	(void)fd;
	(void)what;
	if (store_in_transaction(b->store) && store_commit(b->store) < 0) {
		log_error("storage: %s; %zu waiting request(s) get an error", store_error(b->store),
			  count);
		store_abort(b->store);
		ok = false;
	}
	/* waiters may register new ones for the next turn */
	b->waiters = NULL;
	b->count = b->cap = 0;
	for (size_t i = 0; i < count; i++)
		waiters[i].done(ok, waiters[i].arg);
	free(waiters);
	if (b->after)
		b->after(b->after_arg);
}

struct batch *batch_new(struct event_base *base, struct store *store)
{
	struct batch *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->store = store;
	b->flush_ev = event_new(base, -1, 0, flush, b);
	if (!b->flush_ev) {
		free(b);
		return NULL;
	}
	return b;
}

void batch_free(struct batch **bp)
{
	struct batch *b = *bp;

	if (!b)
		return;
	event_free(b->flush_ev);
	free(b->waiters);
	free(b);
	*bp = NULL;
}

void batch_touch(struct batch *b)
{
	event_active(b->flush_ev, EV_TIMEOUT, 0);
}

int batch_wait(struct batch *b, batch_done_fn done, void *arg)
{
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct waiter *grown = realloc(b->waiters, cap * sizeof *grown);

		if (!grown)
			return -1;
		b->waiters = grown;
		b->cap = cap;
	}
	b->waiters[b->count++] = (struct waiter){ done, arg };
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
	event_del(b->flush_ev);
	flush(-1, 0, b);
}

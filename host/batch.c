/*
 * batch.c - group commit on a writer thread (see batch.h).
 *
 * A turn's writes are recorded as a list of operations.  The end of a loop
 * turn is a zero-timeout event, made active by the turn's first write or
 * waiter; libevent runs it after the callbacks already active in that turn,
 * and it hands the turn to the writer thread (batch_hand_over() may hand
 * over part of a long turn before that).  The writer applies every
 * turn queued so far in one transaction, commits it without waiting for the
 * disk, asks the flusher thread for an fdatasync when a turn has durable
 * waiters, and wakes the loop through an eventfd - unless every turn of the
 * transaction waits only for that flush, which wakes the loop itself.  The
 * loop then answers the turns' waiters in order: those that need only the
 * commit at once, the durable ones (an enqueue's 202) when the flush
 * covering them is done.  The flusher signals the same eventfd.
 *
 * Sweeps of finished calls (batch_sweep_done, batch_sweep_dead) also run
 * on the writer, a bite of SWEEP_BITE calls per transaction, when no turn
 * waits (or every SWEEP_STARVED_MS when turns never stop coming), so that
 * no commit waits long behind one.
 *
 * The loop and the writer never use the store at the same time: the
 * writer only touches it with `writing` set, and the loop only after
 * batch_sync() has seen the writer idle; from then until the end of that
 * loop turn `loop_holds` keeps the writer from starting a sweep.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "clock.h"
#include "log.h"
#include "store.h"

#define BUSY_RETRY_MS 1000	/* how long writes wait for another process's lock */
#define BUSY_PAUSE_MS 10
#define SWEEP_BITE 100		/* finished calls forgotten per sweep transaction */
#define SWEEP_STARVED_MS 50	/* a busy writer still takes a bite this often */
#define HAND_OVER_OPS 4		/* writes a turn hands over before it ends */

enum op_kind { OP_ADD_CALL, OP_UPDATE_CALL, OP_FINISH_CALL, OP_ADD_ATTEMPT, OP_FORGET_DELIVERIES };

/* One recorded store write. */
struct op {
	struct op *next;
	enum op_kind kind;
	bool is_new;			/* the call is (to be) in new.db */
	union {
		struct call_record call;	/* payload points to op->payload */
		struct {
			char id[CALL_ID_LEN + 1];
			uint32_t n;
			struct attempt_record rec;
		} attempt;
		struct {
			char prefix[RECORD_IDEM_MAX + 1];
			char below[CALL_ID_LEN + 1];
		} forget;
	} u;
	char payload[];
};

struct waiter {
	batch_done_fn done;
	void *arg;
};

struct waiters {
	struct waiter *items;
	size_t count, cap;
};

/* The writes and waiters of one loop turn. */
struct turn {
	struct op *ops, **ops_tail;
	struct waiters committed;	/* answered after the commit */
	struct waiters durable;		/* answered after the flush after it */
	size_t op_count;
	/* set by the writer */
	bool ok;
	uint64_t flush_gen;		/* the flush that covers it (durable waiters) */
	char error[256];
	struct turn *next;
};

/* Durable waiters of committed turns, waiting for flush generation gen. */
struct group {
	uint64_t gen;
	struct waiters w;
	struct group *next;
};

struct turn_list {
	struct turn *head, **tail;
};

struct batch {
	struct store *store;
	struct event *turn_end;
	struct turn *current;		/* being recorded; NULL while empty */
	uint64_t handed;		/* turns handed to the writer (batch_mark) */
	struct group *groups, **groups_tail;	/* loop only */
	void (*after)(void *arg);
	void *after_arg;
	const char *error;		/* while failed waiters run */
	char flush_reason[512];		/* error, when a flush failed */

	/* shared with the threads, under lock */
	pthread_mutex_t lock;
	pthread_cond_t work;		/* the writer: turns submitted, or stop */
	pthread_cond_t idle;		/* batch_sync(): the writer went idle */
	pthread_cond_t flush_wake;	/* the flusher: a flush requested, or stop */
	pthread_t writer, flusher;
	bool writer_running, flusher_running;
	struct turn_list submitted;	/* waiting for the writer */
	struct turn_list applied;	/* committed (or failed), for the loop */
	bool writing, stop;
	bool loop_holds;		/* after batch_sync(), until the turn ends */
	struct sweep {			/* a sweep asked for, until done */
		int64_t cutoff_ms;
		uint64_t keep_max;
		int left;
	} sweeps[2];			/* of done.db, then of dead.db */
	bool sweep_failing[2];		/* writer only: its last bite failed */
	struct store_sweep_pass dead_pass;	/* writer only */
	int64_t last_bite_ms;		/* writer only */
	uint64_t requested, flushed;	/* flush generations */
	bool flush_failed;
	int flush_pause_ms;		/* CAGEHOST_TEST_FLUSH_PAUSE_MS (batch.h) */
	int eventfd;			/* the threads' "look" signal to the loop */
	struct event *wake_ev;
};

static void turn_list_init(struct turn_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static void turn_list_append(struct turn_list *l, struct turn *t)
{
	t->next = NULL;
	*l->tail = t;
	l->tail = &t->next;
}

static void turn_list_splice(struct turn_list *to, struct turn_list *from)
{
	if (!from->head)
		return;
	*to->tail = from->head;
	to->tail = from->tail;
	turn_list_init(from);
}

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

static void free_ops(struct op *op)
{
	while (op) {
		struct op *next = op->next;

		free(op);
		op = next;
	}
}

static void free_turn(struct turn *t)
{
	free_ops(t->ops);
	free(t->committed.items);
	free(t->durable.items);
	free(t);
}

static void wake_loop(struct batch *b)
{
	uint64_t one = 1;

	if (write(b->eventfd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_error("storage: cannot wake the event loop: %s", strerror(errno));
}

/* ---- the writer thread ---- */

static int apply_op(struct store *s, const struct op *op)
{
	switch (op->kind) {
	case OP_ADD_CALL:
		return store_add_call(s, &op->u.call, op->is_new);
	case OP_UPDATE_CALL:
		return store_update_call(s, &op->u.call, op->is_new);
	case OP_FINISH_CALL:
		return store_finish_call(s, &op->u.call, op->is_new);
	case OP_ADD_ATTEMPT:
		return store_add_attempt(s, op->u.attempt.id, op->u.attempt.n, &op->u.attempt.rec);
	case OP_FORGET_DELIVERIES:
		return store_forget_deliveries(s, op->u.forget.prefix, op->u.forget.below) < 0 ? -1
											      : 0;
	}
	return -1;
}

/* One try at applying and committing the turns' writes. */
static int apply_once(struct batch *b, struct turn *turns)
{
	int rc = 0;

	for (struct turn *t = turns; t && rc == 0; t = t->next)
		for (struct op *op = t->ops; op && rc == 0; op = op->next)
			rc = apply_op(b->store, op);
	if (rc == 0 && store_in_transaction(b->store))
		rc = store_commit(b->store);
	return rc;
}

/*
 * Applies the turns' writes as one transaction; fills in their outcome.
 * Writes do not wait for locks (see store.h): when another process holds
 * one, the transaction is aborted and tried again, for up to BUSY_RETRY_MS,
 * unless it carries the loop's direct writes, which cannot be replayed.
 * Turns submitted meanwhile join the retries, so that no write waits much
 * longer than BUSY_RETRY_MS in all.
 */
static void apply(struct batch *b, struct turn_list *work)
{
	char error[sizeof work->head->error] = "";
	bool replayable = !store_in_transaction(b->store), busy;
	int rc, waited_ms = 0;

	for (;;) {
		rc = apply_once(b, work->head);
		if (rc == 0)
			break;
		snprintf(error, sizeof error, "%s", store_error(b->store));
		busy = store_busy(b->store);
		store_abort(b->store);
		if (!busy || !replayable || waited_ms >= BUSY_RETRY_MS)
			break;
		nanosleep(&(struct timespec){ 0, BUSY_PAUSE_MS * 1000000L }, NULL);
		waited_ms += BUSY_PAUSE_MS;
		pthread_mutex_lock(&b->lock);
		turn_list_splice(work, &b->submitted);
		pthread_mutex_unlock(&b->lock);
	}
	for (struct turn *t = work->head; t; t = t->next) {
		free_ops(t->ops);
		t->ops = NULL;
	}
	for (struct turn *t = work->head; t; t = t->next) {
		t->ok = rc == 0;
		memcpy(t->error, error, sizeof error);
	}
}

enum { SWEEP_DONE, SWEEP_DEAD };

static bool sweep_wanted(const struct batch *b)
{
	return (b->sweeps[SWEEP_DONE].left > 0 || b->sweeps[SWEEP_DEAD].left > 0) &&
	       !b->loop_holds;
}

/*
 * One bite of a sweep - done.db's first - in a transaction of its own: a
 * sweep that fails (a damaged done.db page, say) fails no caller's write.
 * The next batch_sweep_done() or batch_sweep_dead() tries again; failures
 * are logged when they start and when they end.  Called and returns with
 * b->lock held.
 */
static void sweep_bite(struct batch *b)
{
	int which = b->sweeps[SWEEP_DONE].left > 0 ? SWEEP_DONE : SWEEP_DEAD;
	struct sweep order = b->sweeps[which];
	int want = order.left < SWEEP_BITE ? order.left : SWEEP_BITE;
	const char *what = which == SWEEP_DONE ? "finished" : "dead";
	bool ok, ended;
	int n;

	b->writing = true;
	pthread_mutex_unlock(&b->lock);
	n = which == SWEEP_DONE ? store_sweep_done(b->store, order.cutoff_ms, order.keep_max, want)
				: store_sweep_dead(b->store, order.cutoff_ms, order.keep_max, want,
						   &b->dead_pass);
	ok = n >= 0 && store_commit(b->store) == 0;
	if (!ok) {
		if (!b->sweep_failing[which])
			log_error("removing old %s calls: %s (tried again with the next sweep)",
				  what, store_error(b->store));
		store_abort(b->store);
		if (which == SWEEP_DEAD) {
			/* the pass starts over, and runs whatever its gate said:
			 * an undone bite's deletions are still to make */
			b->dead_pass.at[0] = '\0';
			b->dead_pass.next_ms = INT64_MIN;
		}
	} else if (b->sweep_failing[which]) {
		log_info("removing old %s calls works again", what);
	}
	b->sweep_failing[which] = !ok;
	/* a bite of a dead.db pass may stop for its reading budget */
	ended = which == SWEEP_DONE ? n < want : !b->dead_pass.at[0];
	b->last_bite_ms = clock_mono_ms();
	pthread_mutex_lock(&b->lock);
	b->sweeps[which].left = !ok || ended ? 0 : b->sweeps[which].left - n;
	b->writing = false;
	pthread_cond_broadcast(&b->idle);
}

static void *writer_loop(void *arg)
{
	struct batch *b = arg;
	struct turn_list work;
	bool flush, wake_now, more;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->stop && !b->submitted.head && !sweep_wanted(b))
			pthread_cond_wait(&b->work, &b->lock);
		if (!b->submitted.head) {
			if (b->stop)
				break;
			sweep_bite(b);
			continue;
		}
		turn_list_init(&work);
		turn_list_splice(&work, &b->submitted);
		b->writing = true;
		pthread_mutex_unlock(&b->lock);

		apply(b, &work);

		pthread_mutex_lock(&b->lock);
		flush = false;
		wake_now = false;
		for (struct turn *t = work.head; t; t = t->next) {
			flush |= t->ok && t->durable.count > 0;
			wake_now |= !t->ok || t->committed.count > 0;
		}
		if (flush)
			b->requested++;
		for (struct turn *t = work.head; t; t = t->next)
			t->flush_gen = b->requested;
		turn_list_splice(&b->applied, &work);
		b->writing = false;
		pthread_cond_broadcast(&b->idle);
		more = b->submitted.head != NULL;
		/* the threads woken here take b->lock first thing: signalled
		 * while it is held, each would wake only to sleep on it again */
		pthread_mutex_unlock(&b->lock);
		if (flush)
			pthread_cond_signal(&b->flush_wake);
		/* turns that only wait for the disk (enqueues) are answered
		 * when the flusher wakes the loop: waking it now as well
		 * would cost it a turn per commit, for nothing */
		if (wake_now || !flush)
			wake_loop(b);
		/*
		 * The flusher just woken may wait on this thread's CPU behind the
		 * next transaction while the other CPU idles (perf sched showed
		 * waits of half a millisecond, the loop idle meanwhile, waiting
		 * for that flush): when that transaction is already queued, let
		 * the flusher run first.  Machine idle during delayed enqueues fell
		 * from about 25 % to 19 %, the rate rose about 3 % (paired runs
		 * vary by 10 %).  Yielding after every flush request seemed to
		 * slow enqueues of calls that also run, whose dispatch waits for
		 * the next commit.
		 */
		if (flush && more)
			sched_yield();
		pthread_mutex_lock(&b->lock);
		if (sweep_wanted(b) && b->submitted.head &&
		    clock_mono_ms() - b->last_bite_ms >= SWEEP_STARVED_MS)
			sweep_bite(b);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- the flusher thread ---- */

static void *flusher_loop(void *arg)
{
	struct batch *b = arg;
	uint64_t target;
	bool ok;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->stop && b->requested == b->flushed)
			pthread_cond_wait(&b->flush_wake, &b->lock);
		if (b->requested == b->flushed)
			break;
		target = b->requested;
		pthread_mutex_unlock(&b->lock);
		if (b->flush_pause_ms > 0)
			nanosleep(&(struct timespec){ b->flush_pause_ms / 1000,
						      b->flush_pause_ms % 1000 * 1000000L }, NULL);
		ok = store_flush_log(b->store) == 0;
		pthread_mutex_lock(&b->lock);
		if (target > b->flushed)
			b->flushed = target;	/* batch_flush() may have gone ahead */
		if (!ok)
			b->flush_failed = true;
		pthread_mutex_unlock(&b->lock);
		wake_loop(b);
		pthread_mutex_lock(&b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- the loop ---- */

/* Answers what the threads have finished; flush_ok overrides the flusher's
 * verdict for a flush done here (at shutdown). */
static void answer(struct batch *b)
{
	struct turn_list done;
	uint64_t flushed;
	bool flush_ok;

	turn_list_init(&done);
	pthread_mutex_lock(&b->lock);
	turn_list_splice(&done, &b->applied);
	flushed = b->flushed;
	flush_ok = !b->flush_failed;
	b->flush_failed = false;
	pthread_mutex_unlock(&b->lock);

	while (done.head) {
		struct turn *t = done.head;

		done.head = t->next;
		b->error = t->error;
		if (!t->ok)
			log_error("storage: %s; %zu waiting request(s) get an error", t->error,
				  t->committed.count + t->durable.count);
		waiters_run(&t->committed, t->ok);
		if (t->durable.count && t->ok) {
			struct group *g = calloc(1, sizeof *g);

			if (g) {
				g->gen = t->flush_gen;
				g->w = t->durable;
				memset(&t->durable, 0, sizeof t->durable);
				*b->groups_tail = g;
				b->groups_tail = &g->next;
			} else {
				/* no memory for a group: wait for the disk here instead */
				waiters_run(&t->durable, store_flush_log(b->store) == 0);
			}
		} else {
			waiters_run(&t->durable, t->ok);
		}
		b->error = NULL;
		free_turn(t);
		if (b->after)
			b->after(b->after_arg);
	}
	if (!flush_ok)
		log_error("storage: flushing the log to disk failed; the waiting enqueues get an "
			  "error (their calls may still run: they were committed, not acknowledged)");
	while (b->groups && b->groups->gen <= flushed) {
		struct group *g = b->groups;

		b->groups = g->next;
		if (!b->groups)
			b->groups_tail = &b->groups;
		snprintf(b->flush_reason, sizeof b->flush_reason,
			 "flushing the log to disk failed: %s (the call was committed and may "
			 "still run; retry with the same Idempotency-Key)",
			 store_flush_error(b->store));
		b->error = b->flush_reason;
		waiters_run(&g->w, flush_ok);
		b->error = NULL;
		free(g);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t count;

	(void)what;
	if (read(fd, &count, sizeof count) < 0 && errno != EAGAIN)
		return;
	answer(arg);
}

static struct turn *current_turn(struct batch *b)
{
	if (!b->current) {
		b->current = calloc(1, sizeof *b->current);
		if (!b->current)
			return NULL;
		b->current->ops_tail = &b->current->ops;
	}
	event_active(b->turn_end, EV_TIMEOUT, 0);
	return b->current;
}

/* Hands the current turn to the writer. */
static void submit(struct batch *b)
{
	struct turn *t = b->current;

	if (!t)
		return;
	b->current = NULL;
	b->handed++;
	pthread_mutex_lock(&b->lock);
	turn_list_append(&b->submitted, t);
	pthread_mutex_unlock(&b->lock);
	pthread_cond_signal(&b->work);	/* after the unlock: see writer_loop() */
}

/*
 * Delayed enqueues at 64 connections: +2 to +5 % against handing over
 * whole turns (22 of 36 paired runs faster, in alternating order; runs
 * vary by 10 % on the benchmark's VM).  Handing over 1, 2, 8 or 16 writes,
 * or only while the writer waits, did no better than 4; handing over
 * attempt outcomes too (scheduler.c) did not help.
 */
void batch_hand_over(struct batch *b)
{
	/* (the loop's direct writes, after batch_sync(), set loop_holds) */
	if (b->current && b->current->op_count >= HAND_OVER_OPS && !b->loop_holds)
		submit(b);
}

static void end_turn(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;

	(void)fd;
	(void)what;
	/* the loop's direct writes, with no write or waiter recorded after
	 * them, get a turn of their own: they commit now, not with whatever the
	 * writer does next (a sweep that failed would abort them) */
	if (!b->current && b->loop_holds && store_in_transaction(b->store))
		current_turn(b);
	submit(b);
	if (b->loop_holds) {
		pthread_mutex_lock(&b->lock);
		b->loop_holds = false;
		pthread_cond_signal(&b->work);	/* a sweep may be waiting */
		pthread_mutex_unlock(&b->lock);
	}
}

/* Waits for the writer to be idle, and keeps it off the store until the
 * loop turn ends (end_turn). */
static void wait_idle(struct batch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->submitted.head || b->writing)
		pthread_cond_wait(&b->idle, &b->lock);
	b->loop_holds = true;
	pthread_mutex_unlock(&b->lock);
	event_active(b->turn_end, EV_TIMEOUT, 0);
}

void batch_sync(struct batch *b)
{
	submit(b);
	wait_idle(b);
	/* direct writes of an earlier turn that nobody touched: commit them now */
	if (store_in_transaction(b->store)) {
		batch_touch(b);
		submit(b);
		wait_idle(b);
	}
}

struct batch *batch_new(struct event_base *base, struct store *store)
{
	struct batch *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->store = store;
	b->dead_pass = (struct store_sweep_pass)STORE_SWEEP_PASS_INIT;
	b->groups_tail = &b->groups;
	if (getenv("CAGEHOST_TEST_FLUSH_PAUSE_MS"))
		b->flush_pause_ms = atoi(getenv("CAGEHOST_TEST_FLUSH_PAUSE_MS"));
	turn_list_init(&b->submitted);
	turn_list_init(&b->applied);
	b->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->work, NULL);
	pthread_cond_init(&b->idle, NULL);
	pthread_cond_init(&b->flush_wake, NULL);
	b->turn_end = event_new(base, -1, 0, end_turn, b);
	b->wake_ev = b->eventfd >= 0 ? event_new(base, b->eventfd, EV_READ | EV_PERSIST,
						 on_wake, b) : NULL;
	if (!b->turn_end || !b->wake_ev || event_add(b->wake_ev, NULL) < 0)
		goto fail;
	if (pthread_create(&b->writer, NULL, writer_loop, b) != 0)
		goto fail;
	b->writer_running = true;
	pthread_setname_np(b->writer, "cage-writer");	/* for top -H, perf, gdb */
	if (pthread_create(&b->flusher, NULL, flusher_loop, b) != 0)
		goto fail;
	b->flusher_running = true;
	pthread_setname_np(b->flusher, "cage-flusher");
	return b;
fail:
	batch_free(&b);
	return NULL;
}

void batch_free(struct batch **bp)
{
	struct batch *b = *bp;

	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_signal(&b->work);
	pthread_cond_signal(&b->flush_wake);
	pthread_mutex_unlock(&b->lock);
	if (b->writer_running)
		pthread_join(b->writer, NULL);
	if (b->flusher_running)
		pthread_join(b->flusher, NULL);
	if (b->current)
		free_turn(b->current);
	while (b->submitted.head) {
		struct turn *t = b->submitted.head;

		b->submitted.head = t->next;
		free_turn(t);
	}
	while (b->applied.head) {
		struct turn *t = b->applied.head;

		b->applied.head = t->next;
		free_turn(t);
	}
	while (b->groups) {
		struct group *g = b->groups;

		b->groups = g->next;
		free(g->w.items);
		free(g);
	}
	if (b->turn_end)
		event_free(b->turn_end);
	if (b->wake_ev)
		event_free(b->wake_ev);
	if (b->eventfd >= 0)
		close(b->eventfd);
	free(b);
	*bp = NULL;
}

static struct op *add_op(struct batch *b, enum op_kind kind, size_t payload_len)
{
	struct turn *t = current_turn(b);
	struct op *op;

	if (!t)
		return NULL;
	op = malloc(sizeof *op + payload_len + 1);
	if (!op)
		return NULL;
	op->next = NULL;
	op->kind = kind;
	op->is_new = false;
	*t->ops_tail = op;
	t->ops_tail = &op->next;
	t->op_count++;
	return op;
}

static int add_call_op(struct batch *b, enum op_kind kind, const struct call_record *r,
		       bool is_new)
{
	struct op *op = add_op(b, kind, r->payload_len);

	if (!op)
		return -1;
	op->is_new = is_new;
	op->u.call = *r;
	if (r->payload_len)
		memcpy(op->payload, r->payload, r->payload_len);
	op->payload[r->payload_len] = '\0';
	op->u.call.payload = op->payload;
	return 0;
}

int batch_add_call(struct batch *b, const struct call_record *r, bool is_new)
{
	return add_call_op(b, OP_ADD_CALL, r, is_new);
}

int batch_update_call(struct batch *b, const struct call_record *r, bool was_new)
{
	return add_call_op(b, OP_UPDATE_CALL, r, was_new);
}

int batch_finish_call(struct batch *b, const struct call_record *r, bool was_new)
{
	return add_call_op(b, OP_FINISH_CALL, r, was_new);
}

int batch_add_attempt(struct batch *b, const char *id, uint32_t n,
		      const struct attempt_record *a)
{
	struct op *op = add_op(b, OP_ADD_ATTEMPT, 0);

	if (!op)
		return -1;
	snprintf(op->u.attempt.id, sizeof op->u.attempt.id, "%s", id);
	op->u.attempt.n = n;
	op->u.attempt.rec = *a;
	return 0;
}

int batch_forget_deliveries(struct batch *b, const char *prefix, const char *below_id)
{
	struct op *op = add_op(b, OP_FORGET_DELIVERIES, 0);

	if (!op)
		return -1;
	snprintf(op->u.forget.prefix, sizeof op->u.forget.prefix, "%s", prefix);
	snprintf(op->u.forget.below, sizeof op->u.forget.below, "%s", below_id);
	return 0;
}

static void ask_sweep(struct batch *b, int which, int64_t cutoff_ms, uint64_t keep_max, int max)
{
	pthread_mutex_lock(&b->lock);
	b->sweeps[which] = (struct sweep){ cutoff_ms, keep_max, max };
	pthread_cond_signal(&b->work);
	pthread_mutex_unlock(&b->lock);
}

void batch_sweep_done(struct batch *b, int64_t cutoff_ms, uint64_t keep_max, int max)
{
	ask_sweep(b, SWEEP_DONE, cutoff_ms, keep_max, max);
}

void batch_sweep_dead(struct batch *b, int64_t cutoff_ms, uint64_t keep_max, int max)
{
	ask_sweep(b, SWEEP_DEAD, cutoff_ms, keep_max, max);
}

struct batch_mark batch_mark(const struct batch *b)
{
	struct batch_mark m = { b->handed, b->current ? b->current->op_count : 0 };

	return m;
}

void batch_undo(struct batch *b, struct batch_mark mark)
{
	struct turn *t = b->current;
	struct op **tail;

	if (!t)
		return;
	/* a turn handed over since the mark may hold writes after it */
	if (b->handed != mark.handed) {
		log_error("storage: cannot undo writes already handed to the writer");
		return;
	}
	if (t->op_count <= mark.ops)
		return;
	tail = &t->ops;
	for (size_t i = 0; i < mark.ops; i++)
		tail = &(*tail)->next;
	free_ops(*tail);
	*tail = NULL;
	t->ops_tail = tail;
	t->op_count = mark.ops;
}

void batch_touch(struct batch *b)
{
	current_turn(b);
}

int batch_wait(struct batch *b, bool durable, batch_done_fn done, void *arg)
{
	struct turn *t = current_turn(b);

	if (!t)
		return -1;
	return waiters_add(durable ? &t->durable : &t->committed, done, arg);
}

const char *batch_error(const struct batch *b)
{
	return b->error ? b->error : "storage failure";
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
	batch_sync(b);
	ok = store_flush_log(b->store) == 0;
	pthread_mutex_lock(&b->lock);
	b->flushed = b->requested;
	if (!ok)
		b->flush_failed = true;
	pthread_mutex_unlock(&b->lock);
	answer(b);
}

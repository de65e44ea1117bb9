/*
 * batch.h - group commit on a writer thread.
 *
 * The event loop does not write to the store itself.  The writes of one
 * loop turn (a new call, an attempt's outcome) are recorded here and, at
 * the end of the turn (or a few at a time, when enqueues keep coming: see
 * batch_hand_over), handed to a writer thread, which applies them in one
 * transaction and commits it without waiting for the disk; when the writer
 * is still busy with earlier turns, it takes all that queued up and commits
 * them together.  A flusher thread makes commits durable (fdatasync of the
 * log), each flush covering every commit before it.  So the loop only
 * parses requests and talks to workers, and one fsync serves many turns.
 *
 * Code that must not act before its writes are committed (forgetting an
 * attempt in flight, dispatching a new call) or on disk (the 202 reply)
 * registers a waiter; waiters run on the loop, in order.
 *
 * Rare work that reads the store, or writes it in ways not listed here
 * (sweeps, requeues, scans), calls batch_sync() first: the loop then waits
 * until every write recorded so far is committed and the writer is idle,
 * and may use the store directly until it returns to the event loop.
 * Direct writes join the transaction that ends with the turn.
 *
 * For tests: CAGEHOST_TEST_FLUSH_PAUSE_MS in the host's environment makes
 * the flusher wait that long before each flush, so that answers waiting
 * for the disk surely wait while a test sends more on their connections.
 */
#ifndef CAGEHOST_BATCH_H
#define CAGEHOST_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

struct event_base;
struct store;
struct batch;

/* ok is true when the writes before the waiter's registration are
 * committed (and on disk, for a durable waiter). */
typedef void (*batch_done_fn)(bool ok, void *arg);

struct batch *batch_new(struct event_base *base, struct store *store);

/* Stops the threads (after batch_flush(), at shutdown). */
void batch_free(struct batch **b);

/*
 * The store writes a turn may record (see store.h for what each does;
 * is_new and was_new say whether the call is in new.db).
 * They copy what they need, payload included.  A failure to apply one
 * fails the whole transaction; its waiters see ok = false and
 * batch_error() says why.  Each returns 0, or -1 when out of memory.
 */
int batch_add_call(struct batch *b, const struct call_record *r, bool is_new);
int batch_update_call(struct batch *b, const struct call_record *r, bool was_new);
int batch_finish_call(struct batch *b, const struct call_record *r, bool was_new);
int batch_add_attempt(struct batch *b, const char *id, uint32_t n,
		      const struct attempt_record *a);
int batch_forget_deliveries(struct batch *b, const char *prefix, const char *below_id);

/*
 * A mark in the current turn's writes, and undoing every write recorded
 * after it: what must be stored whole or not at all (an attempt's outcome
 * with the calls its handler enqueued on other cages) is not stored in
 * part when memory runs out half way.  The two calls must come in the
 * same loop turn, with no batch_sync() or batch_hand_over() between them
 * (each may hand the turn to the writer: batch_undo() then logs the
 * mistake and undoes nothing).
 */
struct batch_mark {
	uint64_t handed;	/* turns handed to the writer before it */
	size_t ops;		/* writes the current turn had */
};
struct batch_mark batch_mark(const struct batch *b);
void batch_undo(struct batch *b, struct batch_mark mark);

/*
 * Has the writer thread forget up to max finished calls, as
 * store_sweep_done() does, in small transactions of their own between
 * commits: the loop goes on serving meanwhile, and a failed sweep fails no
 * other write.  A new request replaces one not finished yet.
 */
void batch_sweep_done(struct batch *b, int64_t cutoff_ms, uint64_t keep_max, int max);

/* The same for dead calls, as store_sweep_dead() does; done calls first. */
void batch_sweep_dead(struct batch *b, int64_t cutoff_ms, uint64_t keep_max, int max);

/*
 * Runs done(ok, arg) after the current turn's writes are committed and,
 * when durable, after everything committed so far is on disk (a repeated
 * Idempotency-Key's answer waits for the flush of the first call too).
 */
int batch_wait(struct batch *b, bool durable, batch_done_fn done, void *arg);

/* While a waiter runs with ok = false: why the transaction failed. */
const char *batch_error(const struct batch *b);

/*
 * Waits until every write recorded so far is committed and the writer is
 * idle.  Until the loop turn ends, the caller may then read and write the
 * store directly; batch_wait() waiters registered after direct writes run
 * once those are committed.
 */
void batch_sync(struct batch *b);

/*
 * Hands the current turn's writes over to the writer now, when there are a
 * few of them, rather than at the end of the loop turn: a turn that reads
 * many requests then keeps the writer (and the flusher after it) busy from
 * its start instead of leaving them idle until its end, and its first
 * requests are answered sooner.  For code that records a request's or an
 * outcome's writes, before it registers their waiter: never between
 * batch_mark() and batch_undo().  Does nothing after batch_sync() in the
 * same turn (the loop may be using the store).
 */
void batch_hand_over(struct batch *b);

/* Makes the current turn end in a commit even without a waiter. */
void batch_touch(struct batch *b);

/* Runs on the loop after each transaction (e.g. to let the scheduler look
 * again): after its commit, or after the flush that follows it when all
 * its waiters wait for that flush. */
void batch_after_commit(struct batch *b, void (*cb)(void *arg), void *arg);

/* Commits and flushes now, answering every waiter (used at shutdown). */
void batch_flush(struct batch *b);

#endif

/*
 * batch.h - group commit.  Everything written to the store during one turn
 * of the event loop is committed by one transaction at the end of the turn.
 * A separate thread makes commits durable (fdatasync of the log), each
 * flush covering every commit before it, so one fsync serves many turns'
 * enqueues while the loop keeps working.  Code that must not act before its
 * writes are committed (forgetting an attempt in flight) or on disk (the
 * 202 reply) registers a waiter.
 */
#ifndef CAGEHOST_BATCH_H
#define CAGEHOST_BATCH_H

#include <stdbool.h>

struct event_base;
struct store;
struct batch;

/* ok is true when the writes before the waiter's registration are
 * committed (and on disk, for a durable waiter). */
typedef void (*batch_done_fn)(bool ok, void *arg);

struct batch *batch_new(struct event_base *base, struct store *store);
void batch_free(struct batch **b);

/*
 * Runs done(ok, arg) after the current turn's transaction has ended and,
 * when durable, after everything committed so far is on disk (a repeated
 * Idempotency-Key's answer waits for the flush of the first call too).
 */
int batch_wait(struct batch *b, bool durable, batch_done_fn done, void *arg);

/* Ends the current transaction at the end of this turn (no waiter). */
void batch_touch(struct batch *b);

/* Runs after every commit (e.g. to let the scheduler look again). */
void batch_after_commit(struct batch *b, void (*cb)(void *arg), void *arg);

/* Commits and flushes now, answering every waiter (used at shutdown). */
void batch_flush(struct batch *b);

#endif

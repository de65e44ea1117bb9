/*
 * batch.h - group commit.  Everything written to the store during one turn
 * of the event loop is committed by one transaction at the end of the turn,
 * so one fsync serves every enqueue that arrived in that turn.  Code that
 * must not act before its writes are durable (the 202 reply, forgetting an
 * attempt in flight) registers a waiter that runs after the commit.
 */
#ifndef CAGEHOST_BATCH_H
#define CAGEHOST_BATCH_H

#include <stdbool.h>

struct event_base;
struct store;
struct batch;

/* ok is true when the writes before the waiter's registration are durable. */
typedef void (*batch_done_fn)(bool ok, void *arg);

struct batch *batch_new(struct event_base *base, struct store *store);
void batch_free(struct batch **b);

/* Runs done(ok, arg) after the current turn's transaction has ended. */
int batch_wait(struct batch *b, batch_done_fn done, void *arg);

/* Ends the current transaction at the end of this turn (no waiter). */
void batch_touch(struct batch *b);

/* Runs after every commit (e.g. to let the scheduler look again). */
void batch_after_commit(struct batch *b, void (*cb)(void *arg), void *arg);

/* Commits now (used at shutdown). */
void batch_flush(struct batch *b);

#endif

/*
 * scheduler.h - runs queued calls when they are due.
 *
 * A new call is handed to the module registry from memory as soon as its
 * enqueue has committed (scheduler_add_new), when there is room.  Calls
 * that are due later, or found no room, are read from the store's due
 * index, earliest first: one timer is armed for the earliest due call
 * (re-checked at least every second, since due times are wall-clock).
 * A bounded number of attempts is in flight (see max_in_flight), and each
 * queue stays within its `concurrency`.  When an attempt ends, the call is
 * finished (done), rescheduled by its queue's retry policy, or moved to
 * the dead store (FAIL or expired), and the attempt is recorded - all in
 * the turn's batch (batch.h).  A call stays "in flight" until that batch
 * has committed, so it can never be dispatched twice at once.
 *
 * When a module gets a new good version, pending calls of that module in
 * queues with wake_on_new_version are made due now, at most 20,000 per
 * second, so a fix drains its backlog without waiting
 * out each call's retry delay.
 */
#ifndef CAGEHOST_SCHEDULER_H
#define CAGEHOST_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct batch;
struct plugin_dir;
struct relay;
struct worker_pool;
struct job_result;
struct host_conf;
struct scheduler;
struct call_record;

/* Calls run on pool (modules from plugins); calls to other cages go
 * through relay. */
struct scheduler *scheduler_new(struct event_base *base, const struct host_conf *conf,
				struct store *store, struct batch *batch,
				struct plugin_dir *plugins, struct worker_pool *pool,
				struct relay *relay);
void scheduler_free(struct scheduler **s);

/* Starts dispatching (after the plugin directory is ready). */
void scheduler_start(struct scheduler *s);

/* Starts no more attempts (the host is stopping); those running go on. */
void scheduler_stop(struct scheduler *s);

/*
 * New calls.  When scheduler_take_new() says there is room for a new call
 * of queue, the caller writes it to new.db (batch_add_call with is_new)
 * and hands it to scheduler_add_new() in the same turn: its first attempt
 * starts from memory as soon as that write commits, and new.db needs no
 * index.  Otherwise the caller writes it to calls.db, where a scan after
 * the commit finds it.  A call stays in new.db until the outcome of its
 * first attempt is stored; a restart moves what is left to calls.db.
 */
bool scheduler_take_new(struct scheduler *s, const char *queue);
void scheduler_add_new(struct scheduler *s, const struct call_record *r);

/*
 * Records, in the current turn's writes, the calls res (an OK) enqueued
 * on other cages: each a new pending call, due now, delivered by the
 * relay.  Returns 0, or -1 when out of memory; then none is recorded.
 */
int scheduler_add_outgoing(struct scheduler *s, const struct job_result *res);

/* A call due at due_ms (wall clock) is being stored: look for it then. */
void scheduler_note_due(struct scheduler *s, int64_t due_ms);

/* Calls may have become due in the store (a requeue): look soon. */
void scheduler_kick(struct scheduler *s);

/* True while an attempt of call id is running. */
bool scheduler_is_running(const struct scheduler *s, const char *id);

/*
 * Calls visit() for each call at its first attempt whose record is in
 * new.db (committed, no outcome recorded yet), from the scheduler's own
 * copy, in no order: at most the attempts in flight.  (sched is a struct
 * scheduler; the form is call_pages.h's call_source.)
 */
void scheduler_each_new(const void *sched, void (*visit)(const struct call_record *r, void *arg),
			void *arg);

/*
 * Makes pending calls of module due now (see above), except those whose
 * last attempt already ran this version (at start-up every module is "new";
 * only calls that failed on another version deserve an early retry).
 * With version "" (an operator's, see scheduler_retry_now), every call of
 * the module that waits for a retry, in any queue: the cause of its
 * failures was fixed elsewhere.  Calls delayed on enqueue keep their time.
 */
void scheduler_wake_module(struct scheduler *s, const char *module, const char *version);

/* An operator's wake (POST /v1/calls/retry): every call of module that
 * waits for a retry, of queue and of method when not NULL. */
void scheduler_retry_now(struct scheduler *s, const char *module, const char *queue,
			 const char *method);

struct scheduler_stats {
	uint64_t attempts_ok, attempts_retry, attempts_fail, calls_dead, calls_woken;
	int in_flight;
	int deliveries_in_flight;	/* of in_flight: to other cages */
};
void scheduler_get_stats(const struct scheduler *s, struct scheduler_stats *stats);

/*
 * Attempts of queued calls run here, by module, since the start: visit()
 * gets each module's count of ok, retry and fail outcomes (in that order),
 * in the order modules were first met.  Deliveries to other cages are not
 * in it.  The first SCHEDULER_MODULES_MAX - 1 modules met have a count of
 * their own; the rest are counted together under the name "(other)".
 */
#define SCHEDULER_MODULES_MAX 64
/* Calls visit() for each configured queue with its attempts in flight
 * (with a worker, or being delivered; `concurrency` caps them when set). */
void scheduler_each_queue(const struct scheduler *s,
			  void (*visit)(const char *queue, int in_flight, void *arg), void *arg);

void scheduler_each_module(const struct scheduler *s,
			   void (*visit)(const char *module, const uint64_t outcomes[3], void *arg),
			   void *arg);

/* The earliest planned time of the attempts the scheduler holds (waiting
 * for a worker, or running); INT64_MAX when it holds none. */
int64_t scheduler_earliest_held(const struct scheduler *s);

/* True when due calls may be waiting in the store, not yet taken for
 * lack of room (otherwise none is overdue there: the timer takes each
 * when it falls due). */
bool scheduler_store_behind(const struct scheduler *s);

#endif

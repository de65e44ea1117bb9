/*
 * scheduler.c - dispatch of due queued calls and the bookkeeping after
 * each attempt (see scheduler.h).
 */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "clock.h"
#include "conf.h"
#include "duration.h"
#include "log.h"
#include "plugin_dir.h"
#include "relay.h"
#include "retry.h"
#include "scheduler.h"
#include "store.h"
#include "worker.h"

#define MAX_TIMER_MS 1000
#define MAX_IN_FLIGHT 1024
/* Deliveries to other cages in flight at most: a peer that does not answer
 * holds each for up to attempt_timeout, and must not take every slot */
#define MAX_DELIVERIES 256
#define STORAGE_PAUSE_MS 1000	/* no dispatch after an outcome failed to store */
#define BUCKETS 1024
#define WAKE_TICK_MS 100
#define WAKE_PER_TICK 2000	/* WAKE_PER_SECOND = 20,000 */
#define WAKE_SCAN_PER_TICK 20000
#define SWEEP_TICK_MS 200
#define SWEEP_PER_TICK 10000	/* 50,000/s: faster than any enqueue rate seen here */
#define EARLY_SWEEP_WARN_MS (10 * 60 * 1000)	/* at most one such warning per 10 min */
#define DEAD_SWEEP_TELL_MS (60 * 1000)		/* dead calls deleted: a line a minute */
#define DEAD_SWEEP_EVERY_MS 5000		/* a pass over dead.db at most this often */
#define HELD_BACK_SLOTS 65536	/* held-back calls remembered (see struct held_back) */

struct attempt {
	struct scheduler *sched;
	struct job job;
	struct call_record rec;		/* as dispatched; payload = job.payload */
	const struct queue_conf *queue;
	int64_t started_ms;		/* wall clock */
	bool is_new;			/* its record is in new.db (see scheduler.h) */
	bool listed;			/* is_new, stored, and no outcome handed on */
	bool outcome_lost;		/* its outcome could not be recorded (memory) */
	bool dies;			/* its outcome makes the call dead */
	int64_t retry_ms;		/* its outcome's next attempt (0: none) */
	struct attempt *next_in_bucket;
	struct attempt *next_new;	/* a scan's collection, or the stranded list */
};

/*
 * The calls scans held back (their queue at its concurrency, or a delivery
 * with MAX_DELIVERIES under way), so that later scans pass them over by id
 * without reading them, as they pass the calls in flight.  A scan reads at
 * most as many calls as it may dispatch; when more held-back calls than
 * that were due, every scan stopped among them, and the calls behind them,
 * of every queue, waited (new calls too: they wait their turn behind the
 * calls due in the store).  An open-addressing table of ids; an entry whose
 * reason is gone becomes a tombstone, and a full table is emptied (the next
 * scans read those calls again and remember them anew).
 */
enum { HELD_FREE = -1, HELD_GONE = -2 };
struct held_back {
	char id[CALL_ID_LEN + 1];
	int reason;			/* queue index; queue_count: deliveries */
};

struct wake {
	char module[NAME_MAX_LEN + 1];
	char version[RECORD_VERSION_MAX + 1];	/* "": any (an operator asked) */
	char queue[NAME_MAX_LEN + 1];		/* an operator's: "" is any */
	char method[NAME_MAX_LEN + 1];
	char after_id[CALL_ID_LEN + 1];
	struct wake *next;
};

struct scheduler {
	struct event_base *base;
	const struct host_conf *conf;
	struct store *store;
	struct batch *batch;
	struct plugin_dir *plugins;
	struct worker_pool *pool;
	struct relay *relay;
	bool started;
	uint64_t swept_early_told;	/* done_swept_early when last logged */
	int64_t swept_early_told_ms;	/* monotonic */
	int64_t dead_swept_ms;		/* monotonic: the last dead sweep asked for */
	uint64_t dead_swept_told;	/* dead_swept when last logged */
	int64_t dead_swept_told_ms;	/* monotonic */
	struct event *timer, *kick;
	struct attempt *buckets[BUCKETS];
	int in_flight;
	int deliveries;			/* of in_flight: calls to other cages */
	int *queue_running;		/* by queue index */
	const struct queue_conf **queues;
	int queue_count;
	struct held_back *held_back;	/* HELD_BACK_SLOTS; NULL until needed */
	int held_back_used;		/* slots not free, tombstones included */
	int *held_back_for;		/* by reason: live entries */
	struct due_at {			/* a place in the due index */
		char time[CLOCK_ISO_LEN + 1];
		char id[CALL_ID_LEN + 1];
	} *held_from;			/* by reason: the earliest held back */
	/*
	 * Where calls held back may go again (an attempt of their queue, or
	 * a delivery, ended): the earliest held_from of those reasons; time
	 * "" when none.  The next scan reads from there up to resume first:
	 * a scan that started over walked the whole backlog of a queue at
	 * its concurrency after each of its attempts (15,000 calls of 1 ms
	 * kept the loop busy, and ran at 750 a second where 2,000 could).
	 */
	struct due_at release;
	bool *released;			/* by reason: since release was set */
	struct wake *wakes;
	struct event *wake_timer;
	/* new calls whose outcome could not be stored: their records are
	 * still in new.db, which nothing scans, so they stay in flight until
	 * a retry moves them to calls.db */
	struct attempt *stranded;
	struct event *strand_timer;
	struct event *sweep_timer;	/* forgets finished calls (done_retention) */
	struct name_set unknown_queues;	/* queues of calls the config lacks, logged */
	struct module_outcomes {
		char name[NAME_MAX_LEN + 1];
		uint64_t n[3];			/* ok, retry, fail */
	} modules[SCHEDULER_MODULES_MAX];	/* the last one: "(other)" once full */
	int module_count;
	struct scheduler_stats stats;
	int64_t paused_until_ms;	/* monotonic; see STORAGE_PAUSE_MS */
	int64_t timer_due_ms;		/* wall clock: when the timer fires */
	/*
	 * New calls are dispatched from memory once their enqueue commits
	 * (scheduler_add_new), so the due index is read only when it may hold
	 * due calls that are not in memory: at start, when the timer fires,
	 * after a wake or a requeue, when a new call found no room, and while
	 * a scan leaves due calls behind.
	 */
	bool scan_needed;
	/*
	 * Where the next scan of the due index starts: the due time and id
	 * of the last call dispatched with only calls in flight before it
	 * (the calls due at one time are in id order).  Calls in flight stay
	 * at the front of the index until their outcome commits, and new due
	 * times are never earlier than now, so scans need not walk over them
	 * again; the timer's tick and a failed commit start over (resume "").
	 * The id matters when many calls share a due time, as the 2,000 a
	 * wake makes due at once do: with the time alone, every scan walked
	 * over all of them still in flight, and the loop's CPU for the 10,000
	 * calls of the benchmark's row 4 was 0.9-1.5 s instead of 0.3.
	 */
	struct due_at resume;
	/* by [cage], in config order: the floor last handed to a durable
	 * wait ("" when none, or when that wait failed); an unchanged floor
	 * needs no new wait, and so no fdatasync of its own */
	char (*floors_asked)[CALL_ID_LEN + 1];
	int cage_count;			/* [cage] sections, floors_asked's length */
	unsigned short jitter_seed[3];	/* erand48's state, for retry_jitter */
};

static unsigned hash_id(const char *id)
{
	unsigned h = 5381;

	for (; *id; id++)
		h = h * 33 + (unsigned char)*id;
	return h;
}

static unsigned bucket_of(const char *id)
{
	return hash_id(id) % BUCKETS;
}

static struct attempt *find_attempt(const struct scheduler *s, const char *id)
{
	for (struct attempt *a = s->buckets[bucket_of(id)]; a; a = a->next_in_bucket)
		if (!strcmp(a->rec.id, id))
			return a;
	return NULL;
}

bool scheduler_is_running(const struct scheduler *s, const char *id)
{
	return find_attempt(s, id) != NULL;
}

void scheduler_each_new(const void *sched, void (*visit)(const struct call_record *r, void *arg),
			void *arg)
{
	const struct scheduler *s = sched;

	for (int i = 0; i < BUCKETS; i++)
		for (const struct attempt *a = s->buckets[i]; a; a = a->next_in_bucket)
			if (a->listed)
				visit(&a->rec, arg);
}

static int queue_index(const struct scheduler *s, const struct queue_conf *q)
{
	for (int i = 0; i < s->queue_count; i++)
		if (s->queues[i] == q)
			return i;
	return 0;
}

/* Is the reason for holding calls back still there? */
static bool still_held(const struct scheduler *s, int reason)
{
	const struct queue_conf *q;

	if (reason == s->queue_count)
		return s->deliveries >= MAX_DELIVERIES;
	q = s->queues[reason];
	return q->concurrency && s->queue_running[reason] >= q->concurrency;
}

/* Is place a before place b?  (A time "" is before every other.) */
static bool due_before(const struct due_at *a, const struct due_at *b)
{
	int c = strcmp(a->time, b->time);

	return c < 0 || (c == 0 && strcmp(a->id, b->id) < 0);
}

/* id's slot in the table: its entry, or the free slot where it would go. */
static struct held_back *held_back_slot(const struct scheduler *s, const char *id)
{
	unsigned h = hash_id(id);

	for (int i = 0; i < HELD_BACK_SLOTS; i++) {
		struct held_back *e = &s->held_back[(h + (unsigned)i) % HELD_BACK_SLOTS];

		if (e->reason == HELD_FREE || !strcmp(e->id, id))
			return e;
	}
	return NULL;
}

/* Where call r is in the due index. */
static struct due_at due_at_of(const struct call_record *r)
{
	struct due_at at;

	clock_format_iso(r->when_ms, at.time, sizeof at.time);
	memcpy(at.id, r->id, sizeof at.id);
	return at;
}

/* Remembers that a scan held call r back for reason. */
static void remember_held_back(struct scheduler *s, const struct call_record *r, int reason)
{
	const char *id = r->id;
	struct due_at at = due_at_of(r);
	struct held_back *e;

	if (!s->held_back) {
		s->held_back = malloc(HELD_BACK_SLOTS * sizeof *s->held_back);
		if (!s->held_back)
			return;
		s->held_back_used = HELD_BACK_SLOTS;	/* emptied below */
	}
	if (s->held_back_used >= HELD_BACK_SLOTS * 3 / 4) {
		for (int i = 0; i < HELD_BACK_SLOTS; i++)
			s->held_back[i].reason = HELD_FREE;
		memset(s->held_back_for, 0, ((size_t)s->queue_count + 1) * sizeof *s->held_back_for);
		s->held_back_used = 0;
	}
	e = held_back_slot(s, id);
	if (!e || e->reason >= 0)
		return;		/* no room, or remembered already */
	if (e->reason == HELD_FREE) {
		memcpy(e->id, id, sizeof e->id);
		s->held_back_used++;
	}
	e->reason = reason;	/* a free slot, or id's own tombstone */
	if (s->held_back_for[reason]++ == 0 || due_before(&at, &s->held_from[reason]))
		s->held_from[reason] = at;
}

/* Calls held back for reason may go again: the next scan reads them. */
static void release_held_back(struct scheduler *s, int reason)
{
	if (s->held_back_for[reason] == 0)
		return;
	if (!s->release.time[0] || due_before(&s->held_from[reason], &s->release))
		s->release = s->held_from[reason];
	s->released[reason] = true;
	s->scan_needed = true;
}

/* Has a reason released since release was set room for a call again? */
static bool release_has_room(const struct scheduler *s)
{
	for (int i = 0; i <= s->queue_count; i++)
		if (s->released[i] && !still_held(s, i))
			return true;
	return false;
}

/* No calls held back wait to be read again. */
static void clear_release(struct scheduler *s)
{
	s->release.time[0] = '\0';
	memset(s->released, 0, ((size_t)s->queue_count + 1) * sizeof *s->released);
}

/* Was call id held back, for a reason still there?  (An entry whose reason
 * is gone becomes a tombstone: the call is read again.) */
static bool held_back(struct scheduler *s, const char *id)
{
	struct held_back *e;

	if (!s->held_back || s->held_back_used == 0)
		return false;
	e = held_back_slot(s, id);
	if (!e || e->reason < 0)
		return false;
	if (still_held(s, e->reason))
		return true;
	s->held_back_for[e->reason]--;
	e->reason = HELD_GONE;
	return false;
}

/* The policy of queue name: a queue removed from the config has its calls
 * follow the default's, which the log says once per queue. */
static const struct queue_conf *queue_of(struct scheduler *s, const char *name)
{
	const struct queue_conf *q = conf_queue(s->conf, name);

	if (q)
		return q;
	switch (name_set_add(&s->unknown_queues, name)) {
	case NAME_NEW:
		log_warning("calls of queue %s are retried under [queue default]'s policy: the "
			    "config has no [queue %s] section (was it removed?). Add it back and "
			    "restart the host to give them their own", name, name);
		break;
	case NAME_SET_FULL:
		log_warning("calls of more than %d queues the config does not name run under "
			    "[queue default]'s policy; further ones are not logged", NAME_SET_MAX);
		break;
	case NAME_SEEN:
		break;
	}
	return conf_queue(s->conf, "default");
}

/*
 * Attempts dispatched and not yet committed.  Well above what the workers
 * hold at once: an attempt stays counted until the commit after it, and
 * under enqueue load a turn ends in an fsync, so a small cap would idle
 * the workers between turns.
 */
static int max_in_flight(const struct scheduler *s)
{
	int n = pool_capacity(s->pool) * 32;

	return n < MAX_IN_FLIGHT ? n : MAX_IN_FLIGHT;
}

static void forget(struct attempt *a)
{
	struct scheduler *s = a->sched;
	struct attempt **p = &s->buckets[bucket_of(a->rec.id)];
	int qi = queue_index(s, a->queue);

	while (*p && *p != a)
		p = &(*p)->next_in_bucket;
	if (*p)
		*p = a->next_in_bucket;
	s->in_flight--;
	s->deliveries -= a->rec.cage[0] != '\0';
	s->queue_running[qi]--;
	/* calls held back for this queue (or as deliveries) may go now */
	release_held_back(s, qi);
	if (a->rec.cage[0])
		release_held_back(s, s->queue_count);
	free(a->job.payload);
	free(a);
}

static void schedule_dispatch(struct scheduler *s);
static void strand(struct attempt *a);

static void after_commit(bool ok, void *arg)
{
	struct attempt *a = arg;
	struct scheduler *s = a->sched;
	int64_t retry_ms = ok && !a->outcome_lost ? a->retry_ms : 0;

	if (!ok || a->outcome_lost) {
		static struct log_budget budget =
			LOG_BUDGET(20, "warnings of outcomes not stored");

		log_msg_budget(&budget, LOG_WARNING, "call %s: the outcome of attempt %u was not "
			       "stored; it will run again", a->rec.id, a->rec.attempts + 1);
		/* the store is failing (full disk?): give it a moment, not a storm */
		s->paused_until_ms = clock_mono_ms() + STORAGE_PAUSE_MS;
		s->resume.time[0] = '\0';	/* the call is still at its old due time */
		s->scan_needed = true;
		if (a->is_new) {
			strand(a);
			return;
		}
	} else if (a->dies) {
		s->stats.calls_dead++;	/* counted once it is stored */
	}
	forget(a);
	/* a scan while this attempt was in flight passed its call over, even
	 * if the retry was due already (a handler slower than the delay) */
	if (retry_ms)
		scheduler_note_due(s, retry_ms);
	if (s->scan_needed)
		schedule_dispatch(s);	/* room for what the last scan left */
}

static void to_dead(struct call_record *rec, const char *reason)
{
	rec->state = CALL_DEAD;
	rec->when_ms = clock_wall_ms();
	record_clean_text(rec->error, sizeof rec->error, reason);
	log_warning("call %s (%s/%s.%s) is dead after %u attempt(s): %s", rec->id, rec->queue,
		    rec->module, rec->method, rec->attempts, rec->error);
}


/* Counts an outcome (0 ok, 1 retry, 2 fail) of call r for /metrics, by
 * module (calls to other cages are not counted). */
static void count_module_outcome(struct scheduler *s, const struct call_record *r, int outcome)
{
	const char *module = r->module;
	int i;

	if (r->cage[0])
		return;
	for (i = 0; i < s->module_count; i++)
		if (!strcmp(s->modules[i].name, module))
			break;
	if (i == s->module_count) {
		if (s->module_count >= SCHEDULER_MODULES_MAX - 1) {
			/* the last entry counts the modules that found no room */
			i = SCHEDULER_MODULES_MAX - 1;
			if (s->module_count < SCHEDULER_MODULES_MAX) {
				snprintf(s->modules[i].name, sizeof s->modules[i].name, "(other)");
				s->module_count = SCHEDULER_MODULES_MAX;
			}
		} else {
			snprintf(s->modules[i].name, sizeof s->modules[i].name, "%s", module);
			s->module_count++;
		}
	}
	s->modules[i].n[outcome]++;
}
static void attempt_done(struct job *job, struct job_result *res)
{
	struct attempt *a = job->arg;
	struct scheduler *s = a->sched;
	struct call_record rec = a->rec;
	struct attempt_record history;
	char reason[RECORD_ERROR_MAX + 64];
	int64_t next;
	struct batch_mark mark;
	int rc;

	memset(&history, 0, sizeof history);
	history.at_ms = a->started_ms;
	snprintf(history.version, sizeof history.version, "%s", res->version);
	record_clean_text(history.error, sizeof history.error, res->error);
	rec.attempts++;
	snprintf(rec.version, sizeof rec.version, "%s", res->version);
	if (res->status == WORKER_OK) {
		history.outcome = OUTCOME_OK;
		rec.state = CALL_DONE;
		rec.when_ms = clock_wall_ms();
		rec.error[0] = '\0';
		s->stats.attempts_ok++;
		count_module_outcome(s, &rec, 0);
	} else if (res->status == WORKER_FAIL) {
		history.outcome = OUTCOME_FAIL;
		snprintf(reason, sizeof reason, "handler failed: %s",
			 res->error[0] ? res->error : "(no message)");
		to_dead(&rec, reason);
		s->stats.attempts_fail++;
		count_module_outcome(s, &rec, 2);
	} else {
		history.outcome = OUTCOME_RETRY;
		if (!history.error[0])
			snprintf(history.error, sizeof history.error, "handler asked for a retry");
		snprintf(rec.error, sizeof rec.error, "%s", history.error);
		s->stats.attempts_retry++;
		count_module_outcome(s, &rec, 1);
		if (retry_next_due(&a->queue->retry, rec.enqueued_ms, rec.attempts, rec.when_ms,
				   a->started_ms, erand48(s->jitter_seed), &next)) {
			char when[CLOCK_ISO_LEN + 1];

			rec.when_ms = next;
			if (log_get_level() >= LOG_DEBUG)	/* formats only what is logged */
				log_debug("call %s (%s.%s) attempt %u: %s; next attempt %s", rec.id,
					  rec.module, rec.method, rec.attempts, history.error,
					  clock_format_iso(next, when, sizeof when));
		} else {
			snprintf(reason, sizeof reason, "expired after %u attempts; last error: %s",
				 rec.attempts, history.error);
			to_dead(&rec, reason);
		}
	}
	a->dies = rec.state == CALL_DEAD;
	a->listed = false;	/* the outcome's record is what counts now */
	rec.payload = a->job.payload;
	rec.payload_len = a->job.payload_len;
	/* a call done at its first attempt needs no history record: the done
	 * record says it all (the API shows it as attempt 1) */
	/* the waiter first: once an outcome is recorded, it must commit
	 * before the call is forgotten (out of memory: nothing recorded) */
	if (batch_wait(s->batch, false, after_commit, a) < 0) {
		after_commit(false, a);
		return;
	}
	/* calls the handler enqueued on other cages: with its OK, in the same
	 * transaction; out of memory part way, nothing of the outcome is
	 * recorded (the attempt runs again, and sends them once) */
	mark = batch_mark(s->batch);
	rc = rec.state == CALL_DONE ? scheduler_add_outgoing(s, res) : 0;
	if (rc == 0 && (rec.state != CALL_DONE || rec.attempts > 1))
		rc = batch_add_attempt(s->batch, rec.id, rec.attempts, &history);
	if (rc == 0)
		rc = rec.state == CALL_PENDING ? batch_update_call(s->batch, &rec, a->is_new)
					       : batch_finish_call(s->batch, &rec, a->is_new);
	if (rc < 0) {
		batch_undo(s->batch, mark);
		a->outcome_lost = true;	/* the call stays as it was: it runs again */
	} else if (rec.state == CALL_PENDING) {
		a->retry_ms = rec.when_ms;
		scheduler_note_due(s, rec.when_ms);
	}
}

/* A new attempt of call r, counted in flight (NULL when out of memory). */
static struct attempt *track(struct scheduler *s, const struct call_record *r,
			     const struct queue_conf *q)
{
	struct attempt *a = calloc(1, sizeof *a);

	if (!a)
		return NULL;
	a->job.payload = malloc(r->payload_len + 1);
	if (!a->job.payload) {
		free(a);
		return NULL;
	}
	if (r->payload_len)
		memcpy(a->job.payload, r->payload, r->payload_len);
	a->job.payload[r->payload_len] = '\0';
	a->job.payload_len = r->payload_len;
	a->sched = s;
	a->rec = *r;
	a->rec.payload = a->job.payload;
	a->queue = q;
	a->next_in_bucket = s->buckets[bucket_of(r->id)];
	s->buckets[bucket_of(r->id)] = a;
	s->in_flight++;
	s->deliveries += r->cage[0] != '\0';
	s->queue_running[queue_index(s, q)]++;
	return a;
}

/* Hands a tracked attempt to the module registry. */
static void start(struct attempt *a, int64_t now)
{
	a->started_ms = now;
	a->job.kind = JOB_CALL;
	a->job.class = CLASS_QUEUED;
	snprintf(a->job.module, sizeof a->job.module, "%s", a->rec.module);
	snprintf(a->job.method, sizeof a->job.method, "%s", a->rec.method);
	snprintf(a->job.id, sizeof a->job.id, "%s", a->rec.id);
	snprintf(a->job.queue, sizeof a->job.queue, "%s", a->rec.queue);
	snprintf(a->job.cage, sizeof a->job.cage, "%s", a->rec.cage);
	a->job.attempt = a->rec.attempts + 1;
	a->job.timeout_ms = a->queue->attempt_timeout_ms;
	a->job.done = attempt_done;
	a->job.arg = a;
	if (a->rec.cage[0]) {
		/* where the last attempt went: the relay keeps to that copy */
		snprintf(a->job.version, sizeof a->job.version, "%s", a->rec.version);
		relay_run(a->sched->relay, &a->job);
	} else {
		plugins_run(a->sched->plugins, &a->job);
	}
}

struct collect {
	struct scheduler *sched;
	int room;
	struct attempt *list;
	bool held_back;		/* a due call was left for later (concurrency) */
	bool behind_resume;	/* reading calls held back before resume */
};

/* A scan passes over the calls in flight, and those held back before for
 * a reason still there; with nothing before them left behind, the next
 * scan can start after them (calls held back: see release). */
static int passed_over(const char *time, const char *id, void *arg)
{
	struct collect *c = arg;
	struct scheduler *s = c->sched;

	if (find_attempt(s, id) == NULL && !held_back(s, id))
		return 0;
	/* behind resume, there is nothing else to find once the queues
	 * that had room again have none */
	if (c->behind_resume)
		return release_has_room(s) ? 1 : -1;
	if (!c->held_back) {
		memcpy(s->resume.time, time, sizeof s->resume.time);
		memcpy(s->resume.id, id, sizeof s->resume.id);
	}
	return 1;
}

static int collect_due(const struct call_record *r, void *arg)
{
	struct collect *c = arg;
	struct scheduler *s = c->sched;
	const struct queue_conf *q;
	struct attempt *a;
	int qi, held_for;

	q = queue_of(s, r->queue);
	qi = queue_index(s, q);
	held_for = -1;
	if (still_held(s, qi))
		held_for = qi;
	else if (r->cage[0] && still_held(s, s->queue_count))
		held_for = s->queue_count;
	if (held_for >= 0) {
		c->held_back = true;
		remember_held_back(s, r, held_for);
		return 0;
	}
	/* everything before this call is in flight or dispatched: the next
	 * scan can start here (see resume in struct scheduler) */
	if (!c->held_back && !c->behind_resume)
		s->resume = due_at_of(r);
	/* behind resume, the calls of this queue held back before this one
	 * have gone: its next release can start here */
	if (c->behind_resume && s->held_back_for[qi] > 0)
		s->held_from[qi] = due_at_of(r);
	/* counted now, so the rest of this scan respects the limits */
	a = track(s, r, q);
	if (!a)
		return 1;
	a->next_new = c->list;
	c->list = a;
	return --c->room <= 0;
}

/*
 * Sets the timer for the earliest call due after now (the store is
 * synced).  Calls due already were just scanned: those left behind (no
 * room) have scan_needed set, and completions bring the scheduler back.
 */
static void arm(struct scheduler *s)
{
	int64_t due, now = clock_wall_ms(), delay = MAX_TIMER_MS;
	struct timeval tv;
	int rc = store_next_due(s->store, now, &due);

	if (rc < 0)
		log_error("scheduler: %s", store_error(s->store));
	if (rc == 0) {
		delay = due - now;
		if (delay <= 0 || delay > MAX_TIMER_MS)
			delay = MAX_TIMER_MS;
	}
	s->timer_due_ms = now + delay;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* A call was rescheduled for due_ms: fire the timer by then. */
void scheduler_note_due(struct scheduler *s, int64_t due_ms)
{
	int64_t delay = due_ms - clock_wall_ms();
	struct timeval tv;

	if (due_ms >= s->timer_due_ms)
		return;
	if (delay < 0)
		delay = 0;
	s->timer_due_ms = due_ms;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

static bool has_delivery(const struct attempt *list)
{
	for (; list; list = list->next_new)
		if (list->rec.cage[0])
			return true;
	return false;
}

/* Floors read from the store, for the relay once they are safe to send. */
struct floors {
	struct scheduler *sched;
	int count;
	struct {
		int cage_index;		/* in floors_asked */
		char cage[NAME_MAX_LEN + 1];
		char id[CALL_ID_LEN + 1];
	} items[];
};

static void floors_durable(bool ok, void *arg)
{
	struct floors *f = arg;

	for (int i = 0; i < f->count; i++) {
		if (ok)
			relay_set_floor(f->sched->relay, f->items[i].cage, f->items[i].id);
		else	/* ask again at the next dispatch */
			f->sched->floors_asked[f->items[i].cage_index][0] = '\0';
	}
	free(f);
}

/*
 * Reads, for each cage, the oldest call pending for it: the receiving
 * cage may forget the keys of deliveries older than that (see relay.h).
 * The store is synced.  The relay gets them only once everything
 * committed so far is on disk: a floor past a delivery whose answer was
 * committed here but then lost in a crash would let the receiver forget
 * the key of a call this host delivers again.  Until then deliveries go
 * out with the older, lower floor, which is always safe.
 */
static void refresh_floors(struct scheduler *s)
{
	char id[CALL_ID_LEN + 1];
	struct floors *f;
	int n = 0, rc;

	f = calloc(1, sizeof *f + (size_t)s->cage_count * sizeof f->items[0]);
	if (!f)
		return;		/* the relay keeps the floors it has */
	f->sched = s;
	for (const struct cage_conf *c = s->conf->cages; c; c = c->next, n++) {
		rc = store_cage_floor(s->store, c->name, id);
		if (rc < 0)
			log_error("scheduler: %s", store_error(s->store));
		if (rc != 0 || !strcmp(id, s->floors_asked[n]))
			continue;
		snprintf(s->floors_asked[n], sizeof s->floors_asked[n], "%s", id);
		f->items[f->count].cage_index = n;
		snprintf(f->items[f->count].cage, sizeof f->items[0].cage, "%s", c->name);
		snprintf(f->items[f->count++].id, sizeof f->items[0].id, "%s", id);
	}
	if (f->count > 0 && batch_wait(s->batch, true, floors_durable, f) == 0)
		return;
	for (int i = 0; i < f->count; i++)	/* out of memory: ask again later */
		s->floors_asked[f->items[i].cage_index][0] = '\0';
	free(f);
}

/* Reads due calls from the store, when it may hold some not in memory. */
static void dispatch(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	struct collect c = { s, 0, NULL, false, false };
	int64_t now = clock_wall_ms();

	(void)fd;
	(void)what;
	if (!s->started || !s->scan_needed)
		return;
	if (clock_mono_ms() < s->paused_until_ms) {
		struct timeval tv = { 0, STORAGE_PAUSE_MS * 1000 };

		s->timer_due_ms = now + STORAGE_PAUSE_MS;
		evtimer_add(s->timer, &tv);
		return;
	}
	c.room = max_in_flight(s) - s->in_flight;
	if (c.room <= 0) {
		/* still needed: a completion brings us back, or the timer */
		if (!evtimer_pending(s->timer, NULL)) {
			struct timeval tv = { MAX_TIMER_MS / 1000, 0 };

			s->timer_due_ms = now + MAX_TIMER_MS;
			evtimer_add(s->timer, &tv);
		}
		return;
	}
	s->scan_needed = false;
	batch_sync(s->batch);
	/* calls held back before resume that may go again: from the earliest
	 * of them up to resume (the room running out keeps the place) */
	if (s->release.time[0] && s->resume.time[0] && due_before(&s->release, &s->resume)) {
		c.behind_resume = true;
		if (store_scan_due(s->store, s->release.time, s->release.id, s->resume.time,
				   s->resume.id, now, c.room, passed_over, collect_due, &c) < 0) {
			log_error("scheduler: %s", store_error(s->store));
			s->scan_needed = true;
		}
		c.behind_resume = false;
	}
	if (c.room > 0)
		clear_release(s);
	if (c.room > 0 &&
	    store_scan_due(s->store, s->resume.time, s->resume.id, "", "", now, c.room,
			   passed_over, collect_due, &c) < 0) {
		log_error("scheduler: %s", store_error(s->store));
		s->scan_needed = true;
	}
	/* the room ran out, or a queue's concurrency held calls back: look
	 * again when attempts end */
	if (c.room <= 0 || c.held_back)
		s->scan_needed = true;
	if (store_in_transaction(s->store))
		batch_touch(s->batch);	/* e.g. a record moved to quarantine */
	arm(s);
	if (has_delivery(c.list))
		refresh_floors(s);
	while (c.list) {
		struct attempt *a = c.list;

		c.list = a->next_new;
		start(a, now);
	}
}

/*
 * Dispatches on the next turn of the loop, after it has polled for I/O: a
 * chain of attempts that end at once (a missing module, a full disk) must
 * never keep the loop from serving HTTP.
 */
static void schedule_dispatch(struct scheduler *s)
{
	static const struct timeval next_turn = { 0, 0 };

	if (!evtimer_pending(s->kick, NULL))
		evtimer_add(s->kick, &next_turn);
}

/* The timer's tick (at least once a second) scans from the start. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;

	s->resume.time[0] = '\0';
	clear_release(s);	/* a scan from the start reads them all */
	s->scan_needed = true;
	s->timer_due_ms = INT64_MAX;
	dispatch(fd, what, arg);
}

int scheduler_add_outgoing(struct scheduler *s, const struct job_result *res)
{
	struct batch_mark mark = batch_mark(s->batch);
	struct call_record rec;

	for (int i = 0; i < res->outgoing_count; i++) {
		const struct outgoing_call *o = &res->outgoing[i];

		store_new_call(s->store, &rec, o->queue, o->module, o->method);
		snprintf(rec.cage, sizeof rec.cage, "%s", o->cage);
		rec.payload = o->payload;
		rec.payload_len = o->payload_len;
		if (batch_add_call(s->batch, &rec, false) < 0) {
			batch_undo(s->batch, mark);	/* all of them, or none */
			return -1;
		}
		s->scan_needed = true;
		scheduler_note_due(s, rec.when_ms);
	}
	return 0;
}

void scheduler_kick(struct scheduler *s)
{
	s->scan_needed = true;
	schedule_dispatch(s);
}

static void on_pool_idle(void *arg)
{
	struct scheduler *s = arg;

	if (s->scan_needed && s->in_flight < max_in_flight(s))
		schedule_dispatch(s);
}

static void new_committed(bool ok, void *arg)
{
	struct attempt *a = arg;

	a->listed = ok;
	if (ok && a->sched->started)
		start(a, clock_wall_ms());
	else	/* not stored; or the host is stopping: new.db keeps it, and the
		 * next start makes it due */
		forget(a);
}

bool scheduler_take_new(struct scheduler *s, const char *queue)
{
	const struct queue_conf *q = queue_of(s, queue);

	/* calls already due in the store (scan_needed) go first: a new call
	 * then waits its turn in calls.db, in due-time order */
	if (s->scan_needed || !s->started || clock_mono_ms() < s->paused_until_ms ||
	    s->in_flight >= max_in_flight(s) ||
	    still_held(s, queue_index(s, q))) {
		s->scan_needed = true;	/* a scan after the commit (or its flush) finds it */
		return false;
	}
	return true;
}

void scheduler_add_new(struct scheduler *s, const struct call_record *r)
{
	struct attempt *a = track(s, r, queue_of(s, r->queue));

	if (a) {
		a->is_new = true;
		if (batch_wait(s->batch, false, new_committed, a) == 0)
			return;
		forget(a);
	}
	/* out of memory: let the call wait in calls.db instead */
	s->scan_needed = true;
	if (batch_update_call(s->batch, r, true) < 0)
		log_error("call %s: out of memory; it runs after the host restarts", r->id);
}

static void moved(bool ok, void *arg)
{
	struct attempt *a = arg;
	struct scheduler *s = a->sched;

	if (!ok) {
		strand(a);
		return;
	}
	forget(a);
	s->resume.time[0] = '\0';	/* it is due at its enqueue time, long past */
	s->scan_needed = true;
	schedule_dispatch(s);
}

/* Moves stranded calls' records from new.db to calls.db, where scans find them. */
static void on_strand_timer(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	struct attempt *list = s->stranded;

	(void)fd;
	(void)what;
	s->stranded = NULL;
	while (list) {
		struct attempt *a = list;

		list = a->next_new;
		if (batch_update_call(s->batch, &a->rec, true) < 0 ||
		    batch_wait(s->batch, false, moved, a) < 0)
			strand(a);
	}
}

static void strand(struct attempt *a)
{
	struct scheduler *s = a->sched;
	struct timeval tv = { 0, STORAGE_PAUSE_MS * 1000 };

	a->next_new = s->stranded;
	s->stranded = a;
	if (!evtimer_pending(s->strand_timer, NULL))
		evtimer_add(s->strand_timer, &tv);
}

struct wake_pass {
	struct scheduler *sched;
	struct wake *wake;
	int64_t now;
	int woken;
	bool more;
	struct call_record *found;
	void **payloads;
	int count;
};

static int wake_visit(const struct call_record *r, void *arg)
{
	struct wake_pass *p = arg;
	const struct queue_conf *q;

	snprintf(p->wake->after_id, sizeof p->wake->after_id, "%s", r->id);
	p->more = true;
	/* a call that has not run yet (enqueued with a delay) failed on no
	 * version: its first attempt keeps its time */
	if (r->cage[0] || strcmp(r->module, p->wake->module) != 0 || r->when_ms <= p->now ||
	    r->attempts == 0 || find_attempt(p->sched, r->id) ||
	    (p->wake->queue[0] && strcmp(r->queue, p->wake->queue) != 0) ||
	    (p->wake->method[0] && strcmp(r->method, p->wake->method) != 0))
		return 0;
	/* for a new version: not the calls that failed on it already, and
	 * only in queues that ask for it; an operator's wake takes them all */
	q = queue_of(p->sched, r->queue);
	if (p->wake->version[0] &&
	    (!strcmp(r->version, p->wake->version) || !q->wake_on_new_version))
		return 0;
	p->payloads[p->count] = malloc(r->payload_len + 1);
	if (!p->payloads[p->count])
		return 1;
	memcpy(p->payloads[p->count], r->payload, r->payload_len);
	p->found[p->count] = *r;
	p->found[p->count].payload = p->payloads[p->count];
	return ++p->count >= WAKE_PER_TICK;
}

static void wake_tick(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	struct timeval tv = { 0, WAKE_TICK_MS * 1000 };
	struct wake *w = s->wakes;
	struct wake_pass p = { s, w, clock_wall_ms(), 0, false, NULL, NULL, 0 };

	(void)fd;
	(void)what;
	if (!w)
		return;
	batch_sync(s->batch);
	p.found = calloc(WAKE_PER_TICK, sizeof *p.found);
	p.payloads = calloc(WAKE_PER_TICK, sizeof *p.payloads);
	if (p.found && p.payloads &&
	    store_scan_calls(s->store, TABLE_CALLS, w->after_id, WAKE_SCAN_PER_TICK, wake_visit,
			     &p, NULL) < 0)
		log_error("waking calls of %s: %s", w->module, store_error(s->store));
	for (int i = 0; i < p.count; i++) {
		p.found[i].when_ms = p.now;
		if (store_update_call(s->store, &p.found[i], false) == 0)
			s->stats.calls_woken++;
		free(p.payloads[i]);
	}
	free(p.found);
	free(p.payloads);
	if (p.count) {
		batch_touch(s->batch);
		scheduler_kick(s);	/* dispatched after their commit */
	}
	if (!p.more) {
		s->wakes = w->next;
		free(w);
	}
	if (s->wakes)
		evtimer_add(s->wake_timer, &tv);
}

/* Queues a wake; one for the same module and calls starts over instead. */
static void add_wake(struct scheduler *s, const char *module, const char *version,
		     const char *queue, const char *method)
{
	struct wake *w, **tail = &s->wakes;

	for (w = s->wakes; w; w = w->next) {
		if (!strcmp(w->module, module) && !strcmp(w->queue, queue) &&
		    !strcmp(w->method, method)) {
			/* start over for the newer version; an operator's wake
			 * (any version) stays one */
			w->after_id[0] = '\0';
			if (w->version[0])
				snprintf(w->version, sizeof w->version, "%s", version);
			return;
		}
		tail = &w->next;
	}
	w = calloc(1, sizeof *w);
	if (!w)
		return;
	snprintf(w->module, sizeof w->module, "%s", module);
	snprintf(w->version, sizeof w->version, "%s", version);
	snprintf(w->queue, sizeof w->queue, "%s", queue);
	snprintf(w->method, sizeof w->method, "%s", method);
	*tail = w;
	if (!evtimer_pending(s->wake_timer, NULL))
		event_active(s->wake_timer, EV_TIMEOUT, 0);
}

void scheduler_wake_module(struct scheduler *s, const char *module, const char *version)
{
	add_wake(s, module, version, "", "");
}

void scheduler_retry_now(struct scheduler *s, const char *module, const char *queue,
			 const char *method)
{
	add_wake(s, module, "", queue ? queue : "", method ? method : "");
}

static void on_new_version(const char *module, const char *version, void *arg)
{
	scheduler_wake_module(arg, module, version);
}

/* Has count grown past told, and is the last line about it (at told_ms,
 * monotonic; 0: none yet) every_ms old? */
static bool time_to_tell(uint64_t count, uint64_t told, int64_t told_ms, int64_t every_ms)
{
	return count > told && (!told_ms || clock_mono_ms() - told_ms >= every_ms);
}

/* Dead calls past dead_retention or dead_keep_max, if either is set: the
 * writer deletes them, in a pass over dead.db every DEAD_SWEEP_EVERY_MS
 * (dead calls are not in death order: a pass reads more than it deletes);
 * what it deleted is logged, a line a minute at most. */
static void sweep_dead(struct scheduler *s, const struct store_stats *st)
{
	const struct host_conf *c = s->conf;
	char retention[32], keep_max[64] = "";

	if (!c->dead_retention_ms && !c->dead_keep_max)
		return;
	if (!s->dead_swept_ms || clock_mono_ms() - s->dead_swept_ms >= DEAD_SWEEP_EVERY_MS) {
		batch_sweep_dead(s->batch,
				 c->dead_retention_ms ? clock_wall_ms() - c->dead_retention_ms
						      : INT64_MIN,
				 c->dead_keep_max ? c->dead_keep_max : UINT64_MAX, SWEEP_PER_TICK);
		s->dead_swept_ms = clock_mono_ms();
	}
	if (!time_to_tell(st->dead_swept, s->dead_swept_told, s->dead_swept_told_ms,
			  DEAD_SWEEP_TELL_MS))
		return;
	if (c->dead_keep_max)
		snprintf(keep_max, sizeof keep_max, "%sbeyond dead_keep_max = %" PRIu64,
			 c->dead_retention_ms ? " or " : "", c->dead_keep_max);
	log_info("deleted %" PRIu64 " dead call(s) with their history: %s%s%s",
		 st->dead_swept - s->dead_swept_told,
		 c->dead_retention_ms ? "older than dead_retention = " : "",
		 c->dead_retention_ms ? duration_format(c->dead_retention_ms, retention,
							 sizeof retention) : "",
		 keep_max);
	s->dead_swept_told = st->dead_swept;
	s->dead_swept_told_ms = clock_mono_ms();
}

/* Every SWEEP_TICK_MS: forget finished calls past done_retention or
 * done_keep_max, and dead ones as dead_retention and dead_keep_max ask
 * (the writer thread does it, between commits). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;

	struct store_stats st;
	char retention[32];

	(void)fd;
	(void)what;
	batch_sweep_done(s->batch, clock_wall_ms() - s->conf->done_retention_ms,
			 s->conf->done_keep_max, SWEEP_PER_TICK);
	store_get_stats(s->store, &st);
	sweep_dead(s, &st);
	/* done_keep_max cutting done_retention short also cuts how long
	 * Idempotency-Keys are known: say so (the metric counts it too) */
	if (time_to_tell(st.done_swept_early, s->swept_early_told, s->swept_early_told_ms,
			 EARLY_SWEEP_WARN_MS)) {
		log_warning("done_keep_max (%" PRIu64 ") made the host forget %" PRIu64 " finished "
			    "call(s) before done_retention (%s) had passed, and their "
			    "Idempotency-Keys with them: a repeated key now makes a new call. "
			    "Raise done_keep_max to keep them", s->conf->done_keep_max,
			    st.done_swept_early - s->swept_early_told,
			    duration_format(s->conf->done_retention_ms, retention, sizeof retention));
		s->swept_early_told = st.done_swept_early;
		s->swept_early_told_ms = clock_mono_ms();
	}
}

static void on_commit(void *arg)
{
	struct scheduler *s = arg;

	if (s->scan_needed)
		schedule_dispatch(s);
}

struct scheduler *scheduler_new(struct event_base *base, const struct host_conf *conf,
				struct store *store, struct batch *batch,
				struct plugin_dir *plugins, struct worker_pool *pool,
				struct relay *relay)
{
	struct scheduler *s = calloc(1, sizeof *s);
	int n = 0;

	if (!s)
		return NULL;
	s->base = base;
	s->conf = conf;
	s->store = store;
	s->batch = batch;
	s->plugins = plugins;
	s->pool = pool;
	s->relay = relay;
	s->timer_due_ms = INT64_MAX;
	/* jitter spreads retries; it needs no secrecy, only a new seed per run */
	s->jitter_seed[0] = (unsigned short)getpid();
	s->jitter_seed[1] = (unsigned short)clock_wall_ms();
	s->jitter_seed[2] = (unsigned short)(clock_mono_ms() >> 4);
	for (const struct queue_conf *q = conf->queues; q; q = q->next)
		n++;
	s->queue_count = n;
	s->queues = calloc((size_t)n, sizeof *s->queues);
	s->queue_running = calloc((size_t)n, sizeof *s->queue_running);
	s->held_back_for = calloc((size_t)n + 1, sizeof *s->held_back_for);
	s->held_from = calloc((size_t)n + 1, sizeof *s->held_from);
	s->released = calloc((size_t)n + 1, sizeof *s->released);
	for (const struct cage_conf *c = conf->cages; c; c = c->next)
		s->cage_count++;
	s->floors_asked = calloc((size_t)s->cage_count + 1, sizeof *s->floors_asked);
	s->timer = evtimer_new(base, on_timer, s);
	s->kick = evtimer_new(base, dispatch, s);
	s->wake_timer = evtimer_new(base, wake_tick, s);
	s->strand_timer = evtimer_new(base, on_strand_timer, s);
	s->sweep_timer = event_new(base, -1, EV_PERSIST, on_sweep, s);
	if (!s->queues || !s->queue_running || !s->held_back_for || !s->held_from || !s->released ||
	    !s->floors_asked ||
	    !s->timer || !s->kick ||
	    !s->wake_timer || !s->strand_timer || !s->sweep_timer ||
	    event_add(s->sweep_timer, &(struct timeval){ SWEEP_TICK_MS / 1000,
						     (SWEEP_TICK_MS % 1000) * 1000 }) < 0) {
		scheduler_free(&s);
		return NULL;
	}
	n = 0;
	for (const struct queue_conf *q = conf->queues; q; q = q->next)
		s->queues[n++] = q;
	pool_on_idle(pool, on_pool_idle, s);
	plugins_on_new_version(plugins, on_new_version, s);
	batch_after_commit(batch, on_commit, s);
	return s;
}

void scheduler_start(struct scheduler *s)
{
	s->started = true;
	scheduler_kick(s);
}

void scheduler_stop(struct scheduler *s)
{
	s->started = false;
}

void scheduler_free(struct scheduler **sp)
{
	struct scheduler *s = *sp;

	if (!s)
		return;
	for (int i = 0; i < BUCKETS; i++) {
		while (s->buckets[i]) {
			struct attempt *a = s->buckets[i];

			s->buckets[i] = a->next_in_bucket;
			free(a->job.payload);
			free(a);
		}
	}
	while (s->wakes) {
		struct wake *w = s->wakes;

		s->wakes = w->next;
		free(w);
	}
	if (s->timer)
		event_free(s->timer);
	if (s->kick)
		event_free(s->kick);
	if (s->wake_timer)
		event_free(s->wake_timer);
	if (s->strand_timer)
		event_free(s->strand_timer);
	if (s->sweep_timer)
		event_free(s->sweep_timer);
	free(s->queues);
	free(s->queue_running);
	free(s->held_back_for);
	free(s->held_from);
	free(s->released);
	free(s->held_back);
	free(s->floors_asked);
	free(s);
	*sp = NULL;
}

bool scheduler_store_behind(const struct scheduler *s)
{
	return s->scan_needed;
}

int64_t scheduler_earliest_held(const struct scheduler *s)
{
	int64_t earliest = INT64_MAX;

	for (int i = 0; i < BUCKETS; i++)
		for (const struct attempt *a = s->buckets[i]; a; a = a->next_in_bucket)
			if (a->rec.when_ms < earliest)
				earliest = a->rec.when_ms;
	return earliest;
}

void scheduler_get_stats(const struct scheduler *s, struct scheduler_stats *stats)
{
	*stats = s->stats;
	stats->in_flight = s->in_flight;
	stats->deliveries_in_flight = s->deliveries;
}

void scheduler_each_queue(const struct scheduler *s,
			  void (*visit)(const char *queue, int in_flight, void *arg), void *arg)
{
	for (int i = 0; i < s->queue_count; i++)
		visit(s->queues[i]->name, s->queue_running[i], arg);
}

void scheduler_each_module(const struct scheduler *s,
			   void (*visit)(const char *module, const uint64_t outcomes[3], void *arg),
			   void *arg)
{
	for (int i = 0; i < s->module_count; i++)
		visit(s->modules[i].name, s->modules[i].n, arg);
}

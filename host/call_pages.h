/*
 * call_pages.h - the operator's view of the stored calls: the calls of a
 * table that a filter selects, a page at a time, to list them; and dead
 * calls to requeue or delete.
 *
 * A page reads its table (calls.db, the calls waiting for a retry or a
 * delay; dead.db) in id (age) order, after a given id, and ends after
 * `limit` matching calls, after CALL_PAGE_SCAN_MAX records read, or after
 * about CALL_PAGE_MS on the event loop, whichever comes first: a filter
 * that passes most calls over cannot hold the loop.  A page that changes
 * calls also ends once it would change about CALL_PAGE_WRITES_MAX records
 * (a deleted call's attempts count): a page is one transaction, and
 * Berkeley DB's lock table holds so many.  `next` is where the
 * following page starts, "" once the end was read (a page that ends on
 * the last call may still give one; the page after it is then empty).
 * Dead calls requeued or deleted leave dead.db, and a call requeued that dies
 * again comes back under its old id, before `next`, so paging with `next`
 * visits every call once.
 *
 * The caller has run batch_sync() (batch.h); requeues and deletes join the
 * turn's transaction, and are durable with its flush.  Each function
 * returns the number of calls listed, requeued or deleted, or -1 with
 * store_error() saying why (a page's writes are then not committed).
 */
#ifndef CAGEHOST_CALL_PAGES_H
#define CAGEHOST_CALL_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "record.h"
#include "store.h"

#define CALL_PAGE_LIMIT_MAX 1000
#define CALL_PAGE_SCAN_MAX 20000
#define CALL_PAGE_MS 20
#define CALL_PAGE_WRITES_MAX 5000

/* Which calls: NULL matches any. */
struct call_filter {
	const char *queue, *module, *method;
};

/* Calls visit() for each call of a page of table that f selects; a
 * visit() that returns true ends the page after that call. */
int call_page_list(struct store *s, enum store_table table, const struct call_filter *f,
		   const char *after, int limit,
		   bool (*visit)(const struct call_record *r, void *arg), void *arg,
		   char next[CALL_ID_LEN + 1]);

/* Calls visit() for each of a set of calls held elsewhere, in no order. */
typedef void (*call_source)(const void *src,
			    void (*visit)(const struct call_record *r, void *arg), void *arg);

/*
 * A page of the calls not finished, as call_page_list() would give of
 * calls.db (their first attempt failed, or they were delayed) with the
 * calls at their first attempt among them in id order.  Those are new.db's,
 * which the host runs or is about to run; new_calls(src) gives them from
 * memory (scheduler_each_new: new.db is a hash, and would be read whole,
 * payloads and all, for each page).  One of them also on the calls.db page
 * (its outcome just stored) is listed once.  Their payloads are not given
 * (r->payload is NULL).
 */
int call_page_list_pending(struct store *s, const struct call_filter *f, const char *after,
			   int limit, call_source new_calls, const void *src,
			   bool (*visit)(const struct call_record *r, void *arg), void *arg,
			   char next[CALL_ID_LEN + 1]);

/*
 * Requeues the dead calls of a page that f selects: each becomes pending
 * with a fresh lifetime (its enqueue time becomes now_ms) and is due at
 * once; its attempts keep counting.
 */
int dead_page_requeue(struct store *s, const struct call_filter *f, const char *after,
		      int limit, int64_t now_ms, char next[CALL_ID_LEN + 1]);

/* Deletes the dead calls of a page that f selects, for good (see
 * store_delete_dead). */
int dead_page_delete(struct store *s, const struct call_filter *f, const char *after,
		     int limit, char next[CALL_ID_LEN + 1]);

/* Requeues one dead call, r, as above. */
int dead_call_requeue(struct store *s, struct call_record *r, int64_t now_ms);

#endif

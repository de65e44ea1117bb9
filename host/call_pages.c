/*
 * call_pages.c - pages of stored calls for operators: list them; requeue
 * or delete dead ones (contract in call_pages.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call_pages.h"
#include "clock.h"

#define SCAN_STEP 200	/* records per store read, between two looks at the clock */

/* A page being read: the filter and what is done with each match. */
struct page {
	const struct call_filter *filter;
	int limit, count;
	bool (*visit)(const struct call_record *r, void *arg);	/* true: last one */
	void *arg;
};

static bool selected(const struct call_filter *f, const struct call_record *r)
{
	return (!f->queue || !strcmp(f->queue, r->queue)) &&
	       (!f->module || !strcmp(f->module, r->module)) &&
	       (!f->method || !strcmp(f->method, r->method));
}

static int page_visit(const struct call_record *r, void *arg)
{
	struct page *p = arg;

	if (!selected(p->filter, r))
		return 0;
	if (p->visit(r, p->arg))
		p->limit = p->count + 1;
	return ++p->count >= p->limit;
}

int call_page_list(struct store *s, enum store_table table, const struct call_filter *f,
		   const char *after, int limit,
		   bool (*visit)(const struct call_record *r, void *arg), void *arg,
		   char next[CALL_ID_LEN + 1])
{
	struct page p = { f, limit, 0, visit, arg };
	int64_t until_ms = clock_mono_ms() + CALL_PAGE_MS;
	int scanned = 0;

	snprintf(next, CALL_ID_LEN + 1, "%s", after ? after : "");
	while (p.count < p.limit && scanned < CALL_PAGE_SCAN_MAX && clock_mono_ms() < until_ms) {
		char from[CALL_ID_LEN + 1];
		int n;

		snprintf(from, sizeof from, "%s", next);
		n = store_scan_calls(s, table, from, SCAN_STEP, page_visit, &p, next);
		if (n < 0)
			return -1;
		if (n < SCAN_STEP && p.count < p.limit) {
			next[0] = '\0';	/* read to the end */
			break;
		}
		scanned += n;
	}
	return p.count;
}

/* Calls collected for a merged page, without their payloads. */
struct collected {
	struct call_record *calls;
	int count, cap;
	int matched;				/* first attempts': kept or not */
	const struct call_filter *filter;	/* first attempts': the page's test */
	const char *after, *until;		/* ids in (after, until]; NULL: no bound */
};

static int by_id(const void *a, const void *b)
{
	return strcmp(((const struct call_record *)a)->id, ((const struct call_record *)b)->id);
}

static void keep(struct collected *c, const struct call_record *r)
{
	if (c->count == c->cap)
		return;
	c->calls[c->count] = *r;
	c->calls[c->count].payload = NULL;	/* borrowed: not kept */
	c->count++;
}

static bool collect_listed(const struct call_record *r, void *arg)
{
	keep(arg, r);
	return false;
}

/* The calls at their first attempt come in no order; the first `limit`
 * by id stay. */
static void collect_new(const struct call_record *r, void *arg)
{
	struct collected *c = arg;
	int limit = c->cap / 2;

	if (!selected(c->filter, r) || (c->after && strcmp(r->id, c->after) <= 0) ||
	    (c->until && strcmp(r->id, c->until) > 0))
		return;
	c->matched++;
	if (c->count == c->cap) {
		qsort(c->calls, (size_t)c->count, sizeof *c->calls, by_id);
		c->count = limit;
	}
	keep(c, r);
}

int call_page_list_pending(struct store *s, const struct call_filter *f, const char *after,
			   int limit, call_source new_calls, const void *src,
			   bool (*visit)(const struct call_record *r, void *arg), void *arg,
			   char next[CALL_ID_LEN + 1])
{
	struct collected waiting = { NULL, 0, limit, 0, f, NULL, NULL };
	struct collected fresh = { NULL, 0, 2 * limit, 0, f, after, NULL };
	int i = 0, j = 0, listed = 0, rc = -1;

	waiting.calls = calloc((size_t)waiting.cap, sizeof *waiting.calls);
	fresh.calls = calloc((size_t)fresh.cap, sizeof *fresh.calls);
	if (!waiting.calls || !fresh.calls)
		goto out;
	if (call_page_list(s, TABLE_CALLS, f, after, limit, collect_listed, &waiting, next) < 0)
		goto out;
	/* calls.db was read up to next: first attempts past it belong to a
	 * later page */
	fresh.until = next[0] ? next : NULL;
	new_calls(src, collect_new, &fresh);
	qsort(fresh.calls, (size_t)fresh.count, sizeof *fresh.calls, by_id);
	if (fresh.count > limit)
		fresh.count = limit;
	while (listed < limit && (i < waiting.count || j < fresh.count)) {
		const struct call_record *r;
		int order = j == fresh.count	 ? -1
			    : i == waiting.count ? 1
						 : strcmp(waiting.calls[i].id, fresh.calls[j].id);

		if (order == 0)
			j++;	/* on both: calls.db's record has its outcome */
		r = order <= 0 ? &waiting.calls[i++] : &fresh.calls[j++];
		listed++;
		if (visit(r, arg) || listed == limit) {
			/* the first attempts kept are the first by id of those matched */
			if (i < waiting.count || j < fresh.matched)
				snprintf(next, CALL_ID_LEN + 1, "%s", r->id);
			break;
		}
	}
	rc = listed;
out:
	free(waiting.calls);
	free(fresh.calls);
	return rc;
}

int dead_call_requeue(struct store *s, struct call_record *r, int64_t now_ms)
{
	r->state = CALL_PENDING;
	r->when_ms = now_ms;
	r->enqueued_ms = now_ms;
	return store_requeue_dead(s, r);
}

static int delete_one(struct store *s, struct call_record *r, int64_t now_ms)
{
	(void)now_ms;
	return store_delete_dead(s, r);
}

/* The ids of a page's calls: nothing is changed while the store is read. */
struct page_ids {
	char id[CALL_PAGE_LIMIT_MAX][CALL_ID_LEN + 1];
	int count;
	bool with_attempts;	/* their attempts are deleted too */
	long writes;		/* records the page will change */
};

static bool collect_id(const struct call_record *r, void *arg)
{
	struct page_ids *ids = arg;

	snprintf(ids->id[ids->count++], CALL_ID_LEN + 1, "%s", r->id);
	ids->writes += 2 + (ids->with_attempts ? (long)r->attempts : 0);
	return ids->writes >= CALL_PAGE_WRITES_MAX;
}

/* Applies act to each call of a page; returns how many, or -1. */
static int act_on_page(struct store *s, const struct call_filter *f, const char *after,
		       int limit, int (*act)(struct store *, struct call_record *, int64_t),
		       int64_t now_ms, char next[CALL_ID_LEN + 1])
{
	struct page_ids ids_on_stack;	/* 17 KB */
	struct page_ids *ids = &ids_on_stack;
	int done = 0;

	ids->count = 0;
	ids->with_attempts = act == delete_one;
	ids->writes = 0;
	if (limit > CALL_PAGE_LIMIT_MAX)
		limit = CALL_PAGE_LIMIT_MAX;
	if (call_page_list(s, TABLE_DEAD, f, after, limit, collect_id, ids, next) < 0)
		done = -1;
	for (int i = 0; done >= 0 && i < ids->count; i++) {
		struct call_record r;
		void *buf;
		int rc = store_get_call(s, TABLE_DEAD, ids->id[i], &r, &buf);

		if (rc > 0)
			continue;
		if (rc == 0) {
			rc = act(s, &r, now_ms);
			free(buf);
		}
		done = rc < 0 ? -1 : done + 1;
	}
	return done;
}

int dead_page_requeue(struct store *s, const struct call_filter *f, const char *after,
		      int limit, int64_t now_ms, char next[CALL_ID_LEN + 1])
{
	return act_on_page(s, f, after, limit, dead_call_requeue, now_ms, next);
}

int dead_page_delete(struct store *s, const struct call_filter *f, const char *after,
		     int limit, char next[CALL_ID_LEN + 1])
{
	return act_on_page(s, f, after, limit, delete_one, 0, next);
}

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

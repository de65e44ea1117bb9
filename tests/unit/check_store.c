/*
 * check_store.c - unit tests of the ELF completeness check
 * (host/elf_check.c) on real shared objects built by the build, and of the
 * Berkeley DB store (host/store.c) in a fresh temporary environment, and of
 * the group commit on it (host/batch.c), of hot backups of it
 * (host/backup.c), and of pages of its calls (host/call_pages.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../../host/backup.h"
#include "../../host/batch.h"
#include "../../host/clock.h"
#include "../../host/call_pages.h"
#include "../../host/elf_check.h"
#include "../../host/store.h"

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	data = malloc(*len);
	ck_assert_uint_eq(fread(data, 1, *len, f), *len);
	fclose(f);
	return data;
}

static const char *plugin_path(void)
{
	const char *p = getenv("CAGE_TEST_PLUGIN");

	ck_assert_msg(p != NULL, "CAGE_TEST_PLUGIN is not set");
	return p;
}

START_TEST(built_plugin_passes)
{
	size_t len;
	unsigned char *data = slurp(plugin_path(), &len);
	char why[256];

	ck_assert_msg(elf_check_shared_object(data, len, why, sizeof why) == 0, "%s", why);
	free(data);
}
END_TEST

START_TEST(every_truncation_is_refused)
{
	size_t len;
	unsigned char *data = slurp(plugin_path(), &len);
	char why[256];

	/* as a file being copied in: every prefix, in steps, must be refused */
	for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 97)) {
		ck_assert_msg(elf_check_shared_object(data, cut, why, sizeof why) == -1,
			      "a %zu-byte prefix of %zu passed", cut, len);
	}
	ck_assert_int_eq(elf_check_shared_object(data, len - 1, why, sizeof why), -1);
	ck_assert_msg(strstr(why, "truncated"), "why: %s", why);
	free(data);
}
END_TEST

START_TEST(other_files_are_refused_with_a_reason)
{
	size_t len;
	unsigned char *data = slurp(plugin_path(), &len);
	char why[256];

	ck_assert_int_eq(elf_check_shared_object("#!/bin/sh\n", 10, why, sizeof why), -1);
	ck_assert_str_eq(why, "not an ELF file (10 bytes)");
	data[18] ^= 0xff;	/* e_machine */
	ck_assert_int_eq(elf_check_shared_object(data, len, why, sizeof why), -1);
	ck_assert_msg(strstr(why, "another architecture"), "why: %s", why);
	data[18] ^= 0xff;
	data[16] = 2;		/* e_type = ET_EXEC */
	ck_assert_int_eq(elf_check_shared_object(data, len, why, sizeof why), -1);
	ck_assert_msg(strstr(why, "not a shared object"), "why: %s", why);
	free(data);
}
END_TEST

static char dir[256];

static void make_dir(void)
{
	snprintf(dir, sizeof dir, "%s/check_store.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static struct store *open_store(void)
{
	struct store *s;
	char err[512];

	ck_assert_msg(store_open(&s, dir, err, sizeof err) == 0, "%s", err);
	return s;
}

/* A pending call id of default/echo.echo, due (and enqueued) at due. */
static struct call_record pending(const char *id, int64_t due)
{
	struct call_record r;

	memset(&r, 0, sizeof r);
	r.state = CALL_PENDING;
	r.when_ms = due;
	r.enqueued_ms = due;
	snprintf(r.id, sizeof r.id, "%s", id);
	strcpy(r.queue, "default");
	strcpy(r.module, "echo");
	strcpy(r.method, "echo");
	r.payload = "";
	return r;
}

static void add_to(struct store *s, const char *id, int64_t due, const char *key, bool is_new)
{
	struct call_record r = pending(id, due);

	if (key)
		snprintf(r.idem_key, sizeof r.idem_key, "%s", key);
	r.payload = id;
	r.payload_len = strlen(id);
	ck_assert_int_eq(store_add_call(s, &r, is_new), 0);
}

static void add(struct store *s, const char *id, int64_t due, const char *key)
{
	add_to(s, id, due, key, false);
}

/* Records pending call id as done at when_ms (in the open transaction). */
static void finish(struct store *s, const char *id, int64_t when_ms)
{
	struct call_record r;
	void *buf;

	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, id, &r, &buf), 0);
	r.state = CALL_DONE;
	r.when_ms = when_ms;
	ck_assert_int_eq(store_finish_call(s, &r, false), 0);
	free(buf);
}

static int collect(const struct call_record *r, void *arg)
{
	strcat(arg, r->id);
	strcat(arg, ",");
	return 0;
}

START_TEST(committed_calls_survive_reopen)
{
	struct store *s = open_store();
	struct call_record r;
	void *buf;

	add(s, "0000000000000001", 5000, "k1");
	ck_assert_int_eq(store_commit(s), 0);
	add(s, "0000000000000002", 6000, NULL);
	store_abort(s);		/* never acknowledged: may vanish */
	store_close(&s);
	s = open_store();
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "0000000000000001", &r, &buf), 0);
	ck_assert_uint_eq(r.payload_len, 16);
	free(buf);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "0000000000000002", &r, &buf), 1);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Adding a call does not look for one of its id (store.h): an id that
 * was taken when the store opened - pending, done or dead - is refused. */
START_TEST(a_taken_call_id_is_refused)
{
	struct store *s = open_store();
	struct call_record r, fresh;
	void *buf;

	add(s, "0000000000000005", 5000, NULL);
	add(s, "0000000000000007", 6000, NULL);
	finish(s, "0000000000000007", 7000);
	ck_assert_int_eq(store_commit(s), 0);
	store_close(&s);
	s = open_store();
	for (int i = 0; i < 2; i++) {
		r = pending(i ? "0000000000000006" : "0000000000000005", 1000);
		r.payload = "someone else's";
		r.payload_len = strlen(r.payload);
		ck_assert_int_eq(store_add_call(s, &r, false), -1);
		ck_assert_msg(strstr(store_error(s), "not a new call id"), "%s", store_error(s));
		store_abort(s);
	}
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "0000000000000005", &r, &buf), 0);
	ck_assert_uint_eq(r.payload_len, 16);	/* its own: the id */
	free(buf);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "0000000000000006", &r, &buf), 1);
	/* the ids the store makes are new */
	store_new_call(s, &fresh, "default", "echo", "echo");
	ck_assert_str_gt(fresh.id, "0000000000000007");
	ck_assert_int_eq(store_add_call(s, &fresh, false), 0);
	ck_assert_int_eq(store_commit(s), 0);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(due_calls_come_earliest_first)
{
	struct store *s = open_store();
	char seen[256] = "";
	int64_t due;

	add(s, "00000000000000aa", 3000, NULL);
	add(s, "00000000000000bb", 1000, NULL);
	add(s, "00000000000000cc", 9000, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_next_due(s, INT64_MIN, &due), 0);
	ck_assert_int_eq(due, 1000);
	/* what comes after a time: strictly later calls only */
	ck_assert_int_eq(store_next_due(s, 1000, &due), 0);
	ck_assert_int_eq(due, 3000);
	ck_assert_int_eq(store_next_due(s, 2000, &due), 0);
	ck_assert_int_eq(due, 3000);
	ck_assert_int_eq(store_next_due(s, 9000, &due), 1);
	ck_assert_int_eq(store_scan_due(s, "", "", "", "", 5000, 100, NULL, collect, seen), 0);
	ck_assert_str_eq(seen, "00000000000000bb,00000000000000aa,");
	store_close(&s);
	remove_dir();
}
END_TEST

static int skip_listed(const char *time, const char *id, void *arg)
{
	(void)time;
	strcat(arg, id);
	strcat(arg, ",");
	return 1;
}

static int stop_at_cc(const char *time, const char *id, void *arg)
{
	(void)time;
	(void)arg;
	return strcmp(id, "00000000000000cc") == 0 ? -1 : 0;
}

/* A scan resumes at a due time and an id: calls due at the same time come
 * in id order, and those before the id are not walked over again. */
START_TEST(a_due_scan_resumes_at_a_time_and_an_id)
{
	struct store *s = open_store();
	char t2000[CLOCK_ISO_LEN + 1], t1500[CLOCK_ISO_LEN + 1];
	char seen[256] = "", skipped[256] = "";

	add(s, "00000000000000aa", 1000, NULL);
	add(s, "00000000000000dd", 2000, NULL);
	add(s, "00000000000000bb", 2000, NULL);
	add(s, "00000000000000cc", 2000, NULL);
	add(s, "00000000000000ee", 3000, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	clock_format_iso(2000, t2000, sizeof t2000);
	clock_format_iso(1500, t1500, sizeof t1500);
	ck_assert_int_eq(store_scan_due(s, t2000, "", "", "", 5000, 100, NULL, collect, seen), 0);
	ck_assert_str_eq(seen, "00000000000000bb,00000000000000cc,00000000000000dd,"
			       "00000000000000ee,");
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, t2000, "00000000000000cc", "", "", 5000, 100, NULL, collect,
					seen), 0);
	ck_assert_str_eq(seen, "00000000000000cc,00000000000000dd,00000000000000ee,");
	/* past the last call due at 2000: on to the next time */
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, t2000, "00000000000000de", "", "", 5000, 100, NULL, collect,
					seen), 0);
	ck_assert_str_eq(seen, "00000000000000ee,");
	/* a time no call is due at any more: the next one, from its first id */
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, t1500, "00000000000000ff", "", "", 5000, 100, NULL, collect,
					seen), 0);
	ck_assert_str_eq(seen, "00000000000000bb,00000000000000cc,00000000000000dd,"
			       "00000000000000ee,");
	/* up to (not including) a time and an id */
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, "", "", t2000, "00000000000000cc", 5000, 100, NULL,
					collect, seen), 0);
	ck_assert_str_eq(seen, "00000000000000aa,00000000000000bb,");
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, t1500, "", t2000, "", 5000, 100, NULL, collect, seen),
			 0);
	ck_assert_str_eq(seen, "");
	/* skip() can end the scan */
	seen[0] = '\0';
	ck_assert_int_eq(store_scan_due(s, "", "", "", "", 5000, 100, stop_at_cc, collect, seen),
			 0);
	ck_assert_str_eq(seen, "00000000000000aa,00000000000000bb,");
	/* skip() sees each id in order up to now (2500); what it passes over
	 * is not visited (collect would add it a second time) */
	ck_assert_int_eq(store_scan_due(s, t2000, "00000000000000cc", "", "", 2500, 100, skip_listed,
					collect, skipped), 0);
	ck_assert_str_eq(skipped, "00000000000000cc,00000000000000dd,");
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(finished_calls_leave_the_due_index)
{
	struct store *s = open_store();
	struct call_record r;
	void *buf;
	int64_t due;

	add(s, "00000000000000aa", 1000, "key-a");
	ck_assert_int_eq(store_commit(s), 0);
	finish(s, "00000000000000aa", 2000);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_next_due(s, INT64_MIN, &due), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, "00000000000000aa", &r, &buf), 0);
	ck_assert_int_eq(r.state, CALL_DONE);
	free(buf);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(new_calls_are_unindexed_until_a_restart_makes_them_due)
{
	struct store *s = open_store();
	struct call_record r;
	char seen[256] = "";
	void *buf;
	int64_t due;

	add_to(s, "00000000000000aa", 1000, NULL, true);
	add_to(s, "00000000000000bb", 2000, NULL, true);
	ck_assert_int_eq(store_commit(s), 0);
	/* in new.db: readable, not due (the host runs them from memory) */
	ck_assert_int_eq(store_next_due(s, INT64_MIN, &due), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_NEW, "00000000000000aa", &r, &buf), 0);
	free(buf);
	/* a failed first attempt moves the call to calls.db */
	ck_assert_int_eq(store_get_call(s, TABLE_NEW, "00000000000000bb", &r, &buf), 0);
	r.attempts = 1;
	r.when_ms = 7000;
	ck_assert_int_eq(store_update_call(s, &r, true), 0);
	free(buf);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_NEW, "00000000000000bb", &r, &buf), 1);
	ck_assert_int_eq(store_next_due(s, INT64_MIN, &due), 0);
	ck_assert_int_eq(due, 7000);
	/* the host stops while aa's first attempt runs: aa is due again */
	store_close(&s);
	s = open_store();
	ck_assert_int_eq(store_get_call(s, TABLE_NEW, "00000000000000aa", &r, &buf), 1);
	ck_assert_int_eq(store_scan_due(s, "", "", "", "", 9000, 100, NULL, collect, seen), 0);
	ck_assert_str_eq(seen, "00000000000000aa,00000000000000bb,");
	store_close(&s);
	remove_dir();
}
END_TEST

static int count_visit(const struct call_record *r, void *arg)
{
	(void)r;
	++*(int *)arg;
	return 0;
}

START_TEST(a_restart_makes_every_new_call_due)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];
	int64_t due;
	int n = 0;

	/* more than one of the start-up moves' transactions (500 each) */
	for (int i = 1; i <= 1300; i++) {
		snprintf(id, sizeof id, "%016x", i);
		add_to(s, id, 1000 + i, NULL, true);
	}
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_next_due(s, INT64_MIN, &due), 1);
	store_close(&s);
	s = open_store();
	ck_assert_int_eq(store_scan_due(s, "", "", "", "", 10000, 5000, NULL, count_visit, &n), 0);
	ck_assert_int_eq(n, 1300);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(idempotency_keys_find_the_first_call)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	add(s, "00000000000000aa", 1000, "order-42");
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_idem(s, "order-42", id), 0);
	ck_assert_str_eq(id, "00000000000000aa");
	ck_assert_int_eq(store_find_idem(s, "order-43", id), 1);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Adds call id of module as dead after `attempts` attempts (at most 5 of
 * them recorded), with Idempotency-Key key unless NULL. */
static void add_dead(struct store *s, const char *id, const char *module, uint32_t attempts,
		     const char *key)
{
	struct attempt_record a = { 1000, "1+00000000", OUTCOME_RETRY, "no" };
	struct call_record r;
	void *buf;

	add(s, id, 1000, key);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, id, &r, &buf), 0);
	snprintf(r.module, sizeof r.module, "%s", module);
	r.state = CALL_DEAD;
	r.attempts = attempts;
	ck_assert_int_eq(store_finish_call(s, &r, false), 0);
	free(buf);
	for (uint32_t n = 1; n <= attempts && n <= 5; n++)
		ck_assert_int_eq(store_add_attempt(s, id, n, &a), 0);
}

static void count_attempt(uint32_t n, const struct attempt_record *a, void *arg)
{
	(void)n;
	(void)a;
	(*(int *)arg)++;
}

static int attempts_of(struct store *s, const char *id)
{
	int n = 0;

	ck_assert_int_eq(store_list_attempts(s, id, count_attempt, &n), 0);
	return n;
}

START_TEST(dead_pages_requeue_and_delete_what_the_filter_selects)
{
	struct store *s = open_store();
	struct call_filter billing = { NULL, "billing", NULL }, any = { NULL, NULL, NULL };
	char next[CALL_ID_LEN + 1];
	struct call_record r;
	void *buf;

	add_dead(s, "00000000000000a1", "billing", 3, NULL);
	add_dead(s, "00000000000000a2", "echo", 3, NULL);
	add_dead(s, "00000000000000a3", "billing", 3, NULL);
	add_dead(s, "00000000000000a4", "billing", 3, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	/* a page of 2 billing calls, then the last one, then the end */
	ck_assert_int_eq(dead_page_delete(s, &billing, NULL, 2, next), 2);
	ck_assert_str_eq(next, "00000000000000a3");
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000a1", &r, &buf), 1);
	ck_assert_int_eq(attempts_of(s, "00000000000000a1"), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000a2", &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(attempts_of(s, "00000000000000a2"), 3);
	ck_assert_int_eq(dead_page_delete(s, &billing, next, 2, next), 1);
	ck_assert_str_eq(next, "");
	ck_assert_int_eq(store_commit(s), 0);
	/* what is left (echo's) is requeued: pending again, due now, with a
	 * fresh lifetime and its attempts kept */
	ck_assert_int_eq(dead_page_requeue(s, &any, NULL, 100, 5000, next), 1);
	ck_assert_str_eq(next, "");
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000a2", &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "00000000000000a2", &r, &buf), 0);
	ck_assert_int_eq(r.state, CALL_PENDING);
	ck_assert_int_eq(r.when_ms, 5000);
	ck_assert_int_eq(r.enqueued_ms, 5000);
	ck_assert_int_eq(r.attempts, 3);
	free(buf);
	ck_assert_int_eq(dead_page_requeue(s, &any, NULL, 100, 5000, next), 0);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Appends r's id's last 2 digits to the string arg. */
static bool append_id(const struct call_record *r, void *arg)
{
	char *ids = arg;

	strcat(ids, r->id + CALL_ID_LEN - 2);	/* the last 2 digits */
	strcat(ids, " ");
	return false;
}

/* Calls at their first attempt, as the scheduler would give them. */
struct new_calls {
	struct call_record calls[32];
	int count;
};

static void each_new(const void *src, void (*visit)(const struct call_record *r, void *arg),
		     void *arg)
{
	const struct new_calls *n = src;

	for (int i = n->count - 1; i >= 0; i--)	/* in no particular order */
		visit(&n->calls[i], arg);
}

/* Every page of pending calls of limit, from the first: their ids' last 2
 * digits, pages separated by '|'. */
static void pending_pages(struct store *s, const struct new_calls *fresh,
			  const struct call_filter *f, int limit, char *ids)
{
	char next[CALL_ID_LEN + 1] = "", after[CALL_ID_LEN + 1];

	ids[0] = '\0';
	for (int page = 0; page < 50; page++) {
		snprintf(after, sizeof after, "%s", next);
		ck_assert_int_ge(call_page_list_pending(s, f, after[0] ? after : NULL, limit,
							each_new, fresh, append_id, ids, next),
				 0);
		if (!next[0])
			return;
		strcat(ids, "| ");
	}
	ck_abort_msg("more than 50 pages");
}

START_TEST(pending_pages_merge_new_calls_in_id_order)
{
	struct store *s = open_store();
	struct call_filter any = { NULL, NULL, NULL }, flaky = { NULL, "flaky", NULL };
	struct new_calls fresh = { .count = 0 };
	char ids[1024], id[CALL_ID_LEN + 1];

	/* calls.db: 01 03 05; new: 02 04 06 and 10-20 (more than 2 pages), and
	 * 03 (its outcome just stored in calls.db: listed once) */
	for (int n = 1; n <= 20; n++) {
		snprintf(id, sizeof id, "00000000000000%02d", n);
		if (n % 2 && n <= 5)
			add(s, id, 1000, NULL);
		if ((n % 2 == 0 && n <= 6) || n >= 10 || n == 3)
			fresh.calls[fresh.count++] = pending(id, 1000);
	}
	ck_assert_int_eq(store_commit(s), 0);
	pending_pages(s, &fresh, &any, 100, ids);
	ck_assert_str_eq(ids, "01 02 03 04 05 06 10 11 12 13 14 15 16 17 18 19 20 ");
	pending_pages(s, &fresh, &any, 2, ids);
	ck_assert_str_eq(ids, "01 02 | 03 04 | 05 06 | 10 11 | 12 13 | 14 15 | 16 17 | 18 19 "
			      "| 20 ");
	pending_pages(s, &fresh, &any, 3, ids);
	ck_assert_str_eq(ids, "01 02 03 | 04 05 06 | 10 11 12 | 13 14 15 | 16 17 18 | 19 20 ");
	pending_pages(s, &fresh, &flaky, 3, ids);
	ck_assert_str_eq(ids, "");
	store_close(&s);
	remove_dir();
}
END_TEST

/* a part of a transaction that is undone takes nothing else with it, and
 * the dead-call count follows what commits */
START_TEST(an_undone_part_undoes_nothing_else)
{
	struct store *s = open_store();
	struct store_stats st;
	struct call_record r;
	void *buf;

	add_dead(s, "00000000000000e1", "echo", 1, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	add(s, "00000000000000e2", 1000, NULL);	/* the turn's other write */
	ck_assert_int_eq(store_part_begin(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000e1", &r, &buf), 0);
	ck_assert_int_eq(store_delete_dead(s, &r), 0);
	free(buf);
	ck_assert_int_eq(store_part_end(s, false), -1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, "00000000000000e2", &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000e1", &r, &buf), 0);
	store_get_stats(s, &st);
	ck_assert_uint_eq(st.dead_calls, 1);
	/* kept, the part commits with the transaction */
	ck_assert_int_eq(store_part_begin(s), 0);
	ck_assert_int_eq(store_delete_dead(s, &r), 0);
	free(buf);
	ck_assert_int_eq(store_part_end(s, true), 0);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000e1", &r, &buf), 1);
	store_get_stats(s, &st);
	ck_assert_uint_eq(st.dead_calls, 0);
	store_close(&s);
	remove_dir();
}
END_TEST

/* a page of deletes ends before it outgrows one transaction's locks */
START_TEST(a_dead_page_ends_at_its_writes_budget)
{
	struct store *s = open_store();
	struct call_filter any = { NULL, NULL, NULL };
	char next[CALL_ID_LEN + 1];

	add_dead(s, "00000000000000b1", "echo", CALL_PAGE_WRITES_MAX / 2, NULL);
	add_dead(s, "00000000000000b2", "echo", CALL_PAGE_WRITES_MAX / 2, NULL);
	add_dead(s, "00000000000000b3", "echo", 1, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(dead_page_delete(s, &any, NULL, 100, next), 2);
	ck_assert_str_eq(next, "00000000000000b2");
	ck_assert_int_eq(dead_page_delete(s, &any, next, 100, next), 1);
	ck_assert_int_eq(store_commit(s), 0);
	store_close(&s);
	remove_dir();
}
END_TEST

/* a deleted call's key is free again, unless a later call took it over */
START_TEST(deleting_a_dead_call_frees_only_its_own_key)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];
	struct call_record r;
	void *buf;

	add_dead(s, "00000000000000c1", "echo", 1, "mine");
	add_dead(s, "00000000000000c2", "echo", 1, "taken");
	add(s, "00000000000000c3", 1000, "taken");	/* after a sweep of c2's key, say */
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000c1", &r, &buf), 0);
	ck_assert_int_eq(store_delete_dead(s, &r), 0);
	free(buf);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, "00000000000000c2", &r, &buf), 0);
	ck_assert_int_eq(store_delete_dead(s, &r), 0);
	free(buf);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_idem(s, "mine", id), 1);
	ck_assert_int_eq(store_find_idem(s, "taken", id), 0);
	ck_assert_str_eq(id, "00000000000000c3");
	/* a call another cage delivered: its key is in delivered.db */
	r = pending("00000000000000c4", 1000);
	snprintf(r.idem_key, sizeof r.idem_key, "cage-0123456789abcdef-here-00000000000000a1");
	r.delivery = true;
	ck_assert_int_eq(store_add_call(s, &r, false), 0);
	r.state = CALL_DEAD;
	ck_assert_int_eq(store_finish_call(s, &r, false), 0);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_delivery(s, r.idem_key, id), 0);
	ck_assert_int_eq(store_delete_dead(s, &r), 0);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_delivery(s, r.idem_key, id), 1);
	store_close(&s);
	remove_dir();
}
END_TEST

static off_t file_size(const char *name)
{
	char path[300];
	struct stat sb;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	ck_assert_int_eq(stat(path, &sb), 0);
	return sb.st_size;
}

/* a drained backlog's calls.db gives its pages back at the next start,
 * and the calls still pending are all there */
START_TEST(a_drained_file_is_compacted_at_start)
{
	enum { CALLS = 60000, LEFT = 10 };
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1], payload[300];
	struct call_record r;
	void *buf;

	memset(payload, 'p', sizeof payload);
	for (int i = 0; i < CALLS; i++) {
		r = pending("", 1000);
		snprintf(r.id, sizeof r.id, "%016x", i + 1);
		r.payload = payload;
		r.payload_len = sizeof payload;
		ck_assert_int_eq(store_add_call(s, &r, false), 0);
		if (i % 1000 == 999)
			ck_assert_int_eq(store_commit(s), 0);
	}
	ck_assert_int_eq(store_commit(s), 0);
	for (int i = 0; i < CALLS - LEFT; i++) {
		snprintf(id, sizeof id, "%016x", i + 1);
		finish(s, id, 2000);
		if (i % 1000 == 999)
			ck_assert_int_eq(store_commit(s), 0);
	}
	ck_assert_int_eq(store_commit(s), 0);
	store_close(&s);
	ck_assert_int_gt(file_size("calls.db"), 16 << 20);
	s = open_store();
	ck_assert_int_lt(file_size("calls.db"), 1 << 20);
	for (int i = CALLS - LEFT; i < CALLS; i++) {
		snprintf(id, sizeof id, "%016x", i + 1);
		ck_assert_int_eq(store_get_call(s, TABLE_CALLS, id, &r, &buf), 0);
		ck_assert_int_eq(r.payload_len, sizeof payload);
		free(buf);
	}
	store_close(&s);
	remove_dir();
}
END_TEST

/* Adds a call that came from another cage, with its delivery key. */
static void add_delivery(struct store *s, const char *id, const char *key)
{
	struct call_record r = pending(id, 1000);

	snprintf(r.idem_key, sizeof r.idem_key, "%s", key);
	r.delivery = true;
	ck_assert_int_eq(store_add_call(s, &r, false), 0);
}

START_TEST(delivery_keys_outlive_the_finished_call_until_answered)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	add_delivery(s, "00000000000000a1", "cage-x-peer-0000000000000011");
	add_delivery(s, "00000000000000a2", "cage-x-peer-0000000000000012");
	add_delivery(s, "00000000000000a3", "cage-x-peer-2-0000000000000001");
	add_delivery(s, "00000000000000a4", "cage-y-peer-0000000000000001");
	ck_assert_int_eq(store_commit(s), 0);
	/* not an ordinary Idempotency-Key: sweeping the done call leaves it */
	ck_assert_int_eq(store_find_idem(s, "cage-x-peer-0000000000000011", id), 1);
	finish(s, "00000000000000a1", 2000);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_sweep_done(s, 5000, 100, 100), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_delivery(s, "cage-x-peer-0000000000000011", id), 0);
	ck_assert_str_eq(id, "00000000000000a1");

	/* sender x (as [cage peer]) has the answers below ...12 */
	ck_assert_int_eq(store_forget_deliveries(s, "cage-x-peer-", "0000000000000012"), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_delivery(s, "cage-x-peer-0000000000000011", id), 1);
	ck_assert_int_eq(store_find_delivery(s, "cage-x-peer-0000000000000012", id), 0);
	/* a longer prefix is another sender's; so is another identity's */
	ck_assert_int_eq(store_forget_deliveries(s, "cage-x-peer-", "ffffffffffffffff"), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_delivery(s, "cage-x-peer-2-0000000000000001", id), 0);
	ck_assert_int_eq(store_find_delivery(s, "cage-y-peer-0000000000000001", id), 0);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Adds a call to deliver to another cage. */
static void add_for_cage(struct store *s, const char *id, const char *cage)
{
	struct call_record r = pending(id, 1000);

	snprintf(r.cage, sizeof r.cage, "%s", cage);
	ck_assert_int_eq(store_add_call(s, &r, false), 0);
}

START_TEST(cage_floor_is_the_oldest_pending_call_for_the_cage)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	ck_assert_int_eq(store_cage_floor(s, "peer", id), 1);
	add_for_cage(s, "00000000000000b2", "peer");
	add_for_cage(s, "00000000000000b1", "peer-2");
	add_for_cage(s, "00000000000000b3", "peer");
	add(s, "00000000000000b0", 1000, NULL);	/* runs here */
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_cage_floor(s, "peer", id), 0);
	ck_assert_str_eq(id, "00000000000000b2");
	ck_assert_int_eq(store_cage_floor(s, "peer-2", id), 0);
	ck_assert_str_eq(id, "00000000000000b1");
	ck_assert_int_eq(store_cage_floor(s, "pee", id), 1);
	finish(s, "00000000000000b2", 2000);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_cage_floor(s, "peer", id), 0);
	ck_assert_str_eq(id, "00000000000000b3");
	finish(s, "00000000000000b3", 2000);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_cage_floor(s, "peer", id), 1);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Closes s and opens the store again as a data_dir of a version before
 * cages.db: without the file. */
static struct store *reopen_without_cage_index(struct store *s)
{
	char path[sizeof dir + 16];

	store_close(&s);
	snprintf(path, sizeof path, "%s/cages.db", dir);
	ck_assert_int_eq(unlink(path), 0);
	return open_store();
}

START_TEST(cage_index_is_built_for_a_data_dir_without_one)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	add_for_cage(s, "00000000000000c2", "peer");
	add_for_cage(s, "00000000000000c1", "peer");
	ck_assert_int_eq(store_commit(s), 0);
	s = reopen_without_cage_index(s);
	ck_assert_int_eq(store_cage_floor(s, "peer", id), 0);
	ck_assert_str_eq(id, "00000000000000c1");
	store_close(&s);
	remove_dir();
}
END_TEST

/* Building the index reads all of calls.db: more pages than one
 * transaction could lock (120,000 calls failed when it was one). */
START_TEST(cage_index_is_built_over_a_large_queue)
{
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	for (int i = 0; i < 120000; i++) {
		snprintf(id, sizeof id, "%016x", 0x100000 + i);
		if (i % 1000 == 999)
			add_for_cage(s, id, i % 2000 == 999 ? "peer" : "other");
		else
			add(s, id, 1000, NULL);
		if (i % 1000 == 999)
			ck_assert_int_eq(store_commit(s), 0);
	}
	s = reopen_without_cage_index(s);
	ck_assert_int_eq(store_cage_floor(s, "peer", id), 0);
	ck_assert_str_eq(id, "00000000001003e7");	/* 0x100000 + 999 */
	ck_assert_int_eq(store_cage_floor(s, "other", id), 0);
	ck_assert_str_eq(id, "00000000001007cf");	/* 0x100000 + 1999 */
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(sweep_removes_only_old_done_calls)
{
	struct store *s = open_store();
	struct call_record r;
	void *buf;
	char id[CALL_ID_LEN + 1];
	const char *ids[] = { "0000000000010000", "0000000000020000" };

	for (int i = 0; i < 2; i++) {
		add(s, ids[i], 1, i ? NULL : "old-key");
		finish(s, ids[i], i ? 100000 : 2);	/* finished at 2 ms and at 100 s */
	}
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_sweep_done(s, 50000, 1000000, 100), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, ids[0], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, ids[1], &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(store_find_idem(s, "old-key", id), 1);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(sweep_keeps_at_most_keep_max_done_calls)
{
	struct store *s = open_store();
	struct call_record r;
	void *buf;
	const char *ids[] = { "0000000000010000", "0000000000020000", "0000000000030000" };

	for (int i = 0; i < 3; i++) {
		add(s, ids[i], 1, NULL);
		finish(s, ids[i], 100000);	/* recent: the time limit keeps them all */
	}
	ck_assert_int_eq(store_commit(s), 0);
	/* a sweep rolled back (a busy lock, say) leaves the count as it was */
	ck_assert_int_eq(store_sweep_done(s, 50000, 1, 100), 2);
	store_abort(s);
	/* ...and so does a finish rolled back */
	add(s, "0000000000040000", 1, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	finish(s, "0000000000040000", 100000);
	store_abort(s);
	ck_assert_int_eq(store_sweep_done(s, 50000, 1, 100), 2);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, ids[0], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, ids[1], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DONE, ids[2], &r, &buf), 0);
	free(buf);
	store_close(&s);
	remove_dir();
}
END_TEST

/* Adds call id as dead since died_ms, after 2 recorded attempts. */
static void add_dead_since(struct store *s, const char *id, int64_t died_ms, const char *key)
{
	struct attempt_record a = { 1000, "1+00000000", OUTCOME_RETRY, "no" };
	struct call_record r;
	void *buf;

	add(s, id, 1000, key);
	ck_assert_int_eq(store_get_call(s, TABLE_CALLS, id, &r, &buf), 0);
	r.state = CALL_DEAD;
	r.when_ms = died_ms;
	r.attempts = 2;
	ck_assert_int_eq(store_finish_call(s, &r, false), 0);
	free(buf);
	for (uint32_t n = 1; n <= 2; n++)
		ck_assert_int_eq(store_add_attempt(s, id, n, &a), 0);
	ck_assert_int_eq(store_commit(s), 0);
}

static uint64_t dead_now(struct store *s, uint64_t *swept)
{
	struct store_stats st;

	store_get_stats(s, &st);
	*swept = st.dead_swept;
	return st.dead_calls;
}

/* A whole pass of store_sweep_dead() in bites of up to max deletions, each
 * committed; returns how many went. */
static int sweep_dead_pass(struct store *s, int64_t cutoff_ms, uint64_t keep_max, int max,
			   struct store_sweep_pass *pass)
{
	int total = 0, n, bites = 0;

	pass->not_before_ms = 0;	/* the duty gate has a test of its own */
	do {
		n = store_sweep_dead(s, cutoff_ms, keep_max, max, pass);
		ck_assert_int_ge(n, 0);
		ck_assert_int_eq(store_commit(s), 0);
		total += n;
		ck_assert_int_lt(++bites, 100);
	} while (pass->at[0]);
	return total;
}

START_TEST(dead_calls_are_swept_by_age_and_by_count)
{
	struct store *s = open_store();
	const char *ids[] = { "0000000000010000", "0000000000020000", "0000000000030000",
			      "0000000000040000", "0000000000050000", "0000000000060000" };
	struct store_sweep_pass pass = STORE_SWEEP_PASS_INIT;
	struct call_record r;
	char id[CALL_ID_LEN + 1];
	uint64_t swept;
	void *buf;

	add_dead_since(s, ids[0], 2000, "k1");
	add_dead_since(s, ids[1], 3000, "k2");
	add_dead_since(s, ids[2], 100000, NULL);	/* enqueued early, died late */
	add_dead_since(s, ids[3], 4000, NULL);
	/* neither limit set: nothing goes */
	ck_assert_int_eq(sweep_dead_pass(s, INT64_MIN, UINT64_MAX, 100, &pass), 0);
	/* by age: the three that died before 50 s; a bite undone changes nothing */
	pass = (struct store_sweep_pass)STORE_SWEEP_PASS_INIT;
	ck_assert_int_eq(store_sweep_dead(s, 50000, UINT64_MAX, 100, &pass), 3);
	store_abort(s);
	ck_assert_uint_eq(dead_now(s, &swept), 4);
	ck_assert_uint_eq(swept, 0);
	/* bites of one deletion each resume where the last stopped */
	pass = (struct store_sweep_pass)STORE_SWEEP_PASS_INIT;
	ck_assert_int_eq(sweep_dead_pass(s, 50000, UINT64_MAX, 1, &pass), 3);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[0], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[1], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[3], &r, &buf), 1);
	ck_assert_int_eq(attempts_of(s, ids[0]), 0);
	ck_assert_int_eq(store_find_idem(s, "k1", id), 1);	/* the key is free again */
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[2], &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(attempts_of(s, ids[2]), 2);
	ck_assert_uint_eq(dead_now(s, &swept), 1);
	ck_assert_uint_eq(swept, 3);
	/* the call passed over died at 100 s: no pass for age before that */
	ck_assert_int_eq(pass.next_ms, 100000);
	ck_assert_int_ge(pass.not_before_ms, pass.pass_read_ms);
	pass.not_before_ms = 0;
	ck_assert_int_eq(store_sweep_dead(s, 99999, UINT64_MAX, 100, &pass), 0);
	/* after a long pass, the next waits its turn even with work to do */
	pass.not_before_ms = clock_mono_ms() + 60000;
	ck_assert_int_eq(store_sweep_dead(s, 100001, UINT64_MAX, 100, &pass), 0);
	pass.not_before_ms = 0;
	ck_assert_int_eq(store_sweep_dead(s, 100001, UINT64_MAX, 100, &pass), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_str_eq(pass.at, "");
	/* a death stored after that pass, though stamped before it (on the
	 * loop, before a slow commit; or a clock set back), opens the gate */
	add_dead_since(s, ids[3], 3000, NULL);
	pass.not_before_ms = 0;
	ck_assert_int_eq(store_sweep_dead(s, 2999, UINT64_MAX, 100, &pass), 0);
	ck_assert_int_eq(store_sweep_dead(s, 4000, UINT64_MAX, 100, &pass), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[3], &r, &buf), 1);
	/* by count: of 3 recent ones, the oldest 2 go */
	add_dead_since(s, ids[2], 200000, NULL);
	add_dead_since(s, ids[4], 200000, NULL);
	add_dead_since(s, ids[5], 200000, NULL);
	ck_assert_int_eq(sweep_dead_pass(s, INT64_MIN, 1, 100, &pass), 2);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[2], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[4], &r, &buf), 1);
	ck_assert_int_eq(store_get_call(s, TABLE_DEAD, ids[5], &r, &buf), 0);
	free(buf);
	ck_assert_uint_eq(dead_now(s, &swept), 1);
	ck_assert_uint_eq(swept, 7);
	store_close(&s);
	remove_dir();
}
END_TEST

/* A client may send, without being a cage, a key of a delivery's form:
 * it is an ordinary key in idem.db, and sweeping the delivered call with
 * the same string must not free it (the client's retry would then make a
 * second call). */
START_TEST(sweeping_a_delivery_leaves_a_local_call_with_the_same_key)
{
	const char *key = "cage-x-peer-0000000000000011";
	struct store *s = open_store();
	char id[CALL_ID_LEN + 1];

	add_delivery(s, "00000000000000a1", key);
	add(s, "00000000000000b1", 1000, key);
	ck_assert_int_eq(store_commit(s), 0);
	finish(s, "00000000000000a1", 2000);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_sweep_done(s, 5000, 100, 100), 1);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(store_find_idem(s, key, id), 0);
	ck_assert_str_eq(id, "00000000000000b1");
	ck_assert_int_eq(store_find_delivery(s, key, id), 0);
	ck_assert_str_eq(id, "00000000000000a1");
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(a_swept_dead_delivery_keeps_its_delivered_key)
{
	struct store *s = open_store();
	struct store_sweep_pass pass = STORE_SWEEP_PASS_INIT;
	struct call_record r = pending("00000000000000c4", 1000);
	char id[CALL_ID_LEN + 1];

	/* a call another cage delivered: that cage may send it again until
	 * it says it will not, and the key must still find it then */
	snprintf(r.idem_key, sizeof r.idem_key, "cage-0123456789abcdef-here-00000000000000a1");
	r.delivery = true;
	ck_assert_int_eq(store_add_call(s, &r, false), 0);
	r.state = CALL_DEAD;
	r.when_ms = 2000;
	ck_assert_int_eq(store_finish_call(s, &r, false), 0);
	ck_assert_int_eq(store_commit(s), 0);
	ck_assert_int_eq(sweep_dead_pass(s, 50000, UINT64_MAX, 100, &pass), 1);
	ck_assert_int_eq(store_find_delivery(s, r.idem_key, id), 0);
	ck_assert_str_eq(id, "00000000000000c4");
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(ids_increase_across_restarts)
{
	struct store *s = open_store();
	char a[CALL_ID_LEN + 1], b[CALL_ID_LEN + 1];

	store_new_id(s, a);
	add(s, a, 1, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	store_close(&s);
	s = open_store();
	store_new_id(s, b);
	ck_assert_int_lt(strcmp(a, b), 0);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(second_host_on_the_same_dir_is_refused)
{
	struct store *s = open_store(), *other;
	char err[512];

	char expected[512];

	snprintf(expected, sizeof expected, "another cagehost (pid %d) is using %s", (int)getpid(),
		 dir);
	ck_assert_int_eq(store_open(&other, dir, err, sizeof err), -1);
	ck_assert_msg(strstr(err, expected), "'%s' lacks '%s'", err, expected);
	store_close(&s);
	remove_dir();
}
END_TEST

START_TEST(data_dir_is_created_with_its_parents)
{
	char top[sizeof dir], parent[sizeof dir + 8];
	struct store *s;
	struct stat st;

	memcpy(top, dir, sizeof top);
	ck_assert_int_lt(snprintf(dir, sizeof dir, "%s/a/b/data", top), (int)sizeof dir);
	s = open_store();
	store_close(&s);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	ck_assert_int_lt(snprintf(parent, sizeof parent, "%s/a/b", top), (int)sizeof parent);
	ck_assert_int_eq(stat(parent, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0755 & ~umask(022));
	/* "data/" names data itself: 0700 too */
	ck_assert_int_lt(snprintf(dir, sizeof dir, "%s/c/data/", top), (int)sizeof dir);
	s = open_store();
	store_close(&s);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	memcpy(dir, top, sizeof dir);
	remove_dir();
}
END_TEST

Suite *elf_check_suite(void)
{
	Suite *s = suite_create("elf_check");
	TCase *tc = tcase_create("files");

	tcase_add_test(tc, built_plugin_passes);
	tcase_add_test(tc, every_truncation_is_refused);
	tcase_add_test(tc, other_files_are_refused_with_a_reason);
	suite_add_tcase(s, tc);
	return s;
}

static void set_flag(bool ok, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

/* Records pending call id in b's current turn. */
static void batch_add(struct batch *b, const char *id)
{
	struct call_record r = pending(id, 1000);

	r.payload = id;
	r.payload_len = strlen(id);
	ck_assert_int_eq(batch_add_call(b, &r, false), 0);
}

/* Commits and flushes b's current turn through its threads. */
static void batch_commit(struct event_base *base, struct batch *b)
{
	int done = 0;

	ck_assert_int_eq(batch_wait(b, true, set_flag, &done), 0);
	while (!done)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_int_eq(done, 1);
}

static bool stored(struct store *s, const char *id)
{
	struct call_record r;
	void *buf = NULL;
	int rc = store_get_call(s, TABLE_CALLS, id, &r, &buf);

	ck_assert_int_ge(rc, 0);
	free(buf);
	return rc == 0;
}

/* Stops b (its last turn flushed), then closes s and base. */
static void close_all(struct event_base *base, struct batch *b, struct store *s)
{
	batch_flush(b);
	batch_free(&b);
	store_close(&s);
	event_base_free(base);
	remove_dir();
}

START_TEST(batch_undo_drops_only_the_writes_after_the_mark)
{
	struct event_base *base = event_base_new();
	struct store *s = open_store();
	struct batch *b = batch_new(base, s);
	struct batch_mark mark;

	ck_assert_ptr_nonnull(b);
	/* a mark before the turn has any write undoes all of them */
	mark = batch_mark(b);
	batch_add(b, "00000000000000a0");
	batch_undo(b, mark);
	batch_add(b, "00000000000000a1");
	mark = batch_mark(b);
	batch_add(b, "00000000000000a2");
	batch_add(b, "00000000000000a3");
	batch_undo(b, mark);
	batch_add(b, "00000000000000a4");
	batch_undo(b, batch_mark(b));	/* nothing after the mark: no change */
	/* writes the writer already has are never undone */
	mark = batch_mark(b);
	batch_add(b, "00000000000000a5");
	batch_sync(b);
	batch_add(b, "00000000000000a6");
	batch_undo(b, mark);
	batch_commit(base, b);
	ck_assert(!stored(s, "00000000000000a0"));
	ck_assert(stored(s, "00000000000000a1"));
	ck_assert(!stored(s, "00000000000000a2"));
	ck_assert(!stored(s, "00000000000000a3"));
	ck_assert(stored(s, "00000000000000a4"));
	ck_assert(stored(s, "00000000000000a5"));
	ck_assert(stored(s, "00000000000000a6"));
	close_all(base, b, s);
}
END_TEST

static uint64_t commits(struct store *s)
{
	struct store_stats st;

	store_get_stats(s, &st);
	return st.commits;
}

START_TEST(batch_hand_over_commits_part_of_a_long_turn_before_it_ends)
{
	struct event_base *base = event_base_new();
	struct store *s = open_store();
	struct batch *b = batch_new(base, s);
	struct batch_mark mark;
	uint64_t before;
	int waited_ms = 0;

	ck_assert_ptr_nonnull(b);
	/* three writes are not worth handing over: they stay in the turn,
	 * where an undo still reaches them */
	mark = batch_mark(b);
	batch_add(b, "00000000000000b0");
	batch_add(b, "00000000000000b1");
	batch_add(b, "00000000000000b2");
	batch_hand_over(b);
	batch_undo(b, mark);
	/* four are: the writer commits them while the loop turn goes on */
	before = commits(s);
	batch_add(b, "00000000000000b3");
	batch_add(b, "00000000000000b4");
	batch_add(b, "00000000000000b5");
	batch_add(b, "00000000000000b6");
	batch_hand_over(b);
	while (commits(s) == before && waited_ms < 10000) {
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		waited_ms++;
	}
	ck_assert_uint_gt(commits(s), before);
	/* after batch_sync() the loop may be using the store: nothing is
	 * handed over until the turn ends */
	batch_sync(b);
	mark = batch_mark(b);
	batch_add(b, "00000000000000b7");
	batch_add(b, "00000000000000b8");
	batch_add(b, "00000000000000b9");
	batch_add(b, "00000000000000ba");
	batch_hand_over(b);
	batch_undo(b, mark);
	batch_add(b, "00000000000000bb");
	batch_commit(base, b);
	ck_assert(!stored(s, "00000000000000b0"));
	ck_assert(!stored(s, "00000000000000b2"));
	ck_assert(stored(s, "00000000000000b3"));
	ck_assert(stored(s, "00000000000000b6"));
	ck_assert(!stored(s, "00000000000000b7"));
	ck_assert(!stored(s, "00000000000000ba"));
	ck_assert(stored(s, "00000000000000bb"));
	/* an undo across a hand-over, even from a mark taken before the turn
	 * had a write, undoes nothing (and logs the mistake) */
	mark = batch_mark(b);
	batch_add(b, "00000000000000c0");
	batch_add(b, "00000000000000c1");
	batch_add(b, "00000000000000c2");
	batch_add(b, "00000000000000c3");
	batch_hand_over(b);
	batch_add(b, "00000000000000c4");
	batch_undo(b, mark);
	batch_commit(base, b);
	ck_assert(stored(s, "00000000000000c0"));
	ck_assert(stored(s, "00000000000000c4"));
	close_all(base, b, s);
}
END_TEST

START_TEST(direct_writes_commit_at_the_end_of_their_turn)
{
	struct event_base *base = event_base_new();
	struct store *s = open_store();
	struct batch *b = batch_new(base, s);
	struct call_record r = pending("00000000000000d0", 1000);
	uint64_t before;
	int waited_ms = 0;

	ck_assert_ptr_nonnull(b);
	/* a direct write after batch_sync(), and nothing recorded after it */
	batch_sync(b);
	before = commits(s);
	r.payload = "d0";
	r.payload_len = 2;
	ck_assert_int_eq(store_add_call(s, &r, false), 0);
	ck_assert(store_in_transaction(s));
	/* the turn ends: the writer commits the write by itself */
	while (commits(s) == before && waited_ms++ < 10000) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	ck_assert_uint_gt(commits(s), before);
	batch_sync(b);
	ck_assert(!store_in_transaction(s));
	ck_assert(stored(s, "00000000000000d0"));
	close_all(base, b, s);
}
END_TEST

static void backup_finished(const struct backup_result *res, void *arg)
{
	*(struct backup_result *)arg = *res;
}

/* Runs a backup of s into backups to its end; its result. */
static struct backup_result backup_to_end(struct event_base *base, struct backup *b)
{
	struct backup_result res = { 0 };

	res.ms = -1;
	ck_assert_int_eq(backup_start(b, backup_finished, &res), 0);
	/* one at a time: a second is refused until the loop has seen the first end */
	ck_assert_int_eq(backup_start(b, backup_finished, &res), 1);
	ck_assert_str_ne(backup_running_dir(b), "");
	while (res.ms < 0)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_str_eq(backup_running_dir(b), "");
	return res;
}

START_TEST(a_backup_is_a_data_dir_with_every_commit)
{
	struct store *s = open_store(), *copy;
	struct event_base *base = event_base_new();
	char backups[300], partial[400], err[512], path[PATH_MAX + 128];
	struct backup_result res, res2;
	struct call_record r;
	struct backup *b;
	struct stat sb;
	char line[64];
	void *buf;
	FILE *f;

	snprintf(backups, sizeof backups, "%s/backups", dir);
	b = backup_new(base, s, dir, backups, 0);
	ck_assert_ptr_nonnull(b);
	add(s, "0000000000000001", 5000, "k1");
	add(s, "0000000000000002", 6000, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	/* the host's name among cages goes with the data (relay.c writes it) */
	snprintf(partial, sizeof partial, "%s/identity", dir);
	f = fopen(partial, "w");
	fputs("00112233aabbccdd\n", f);
	fclose(f);
	/* a partial backup left by a host that stopped during one */
	snprintf(partial, sizeof partial, "%s/.partial-20260101T000000Z", backups);
	ck_assert_int_eq(store_make_dir(partial), 0);
	fclose(fopen(strcat(strcpy(err, partial), "/calls.db"), "w"));

	res = backup_to_end(base, b);
	ck_assert_msg(res.ok, "%s", res.error);
	ck_assert_msg(strncmp(res.dir, backups, strlen(backups)) == 0 &&
		      res.dir[strlen(backups) + 1] == '2', "dir %s", res.dir);
	ck_assert_uint_gt(res.bytes, 0);
	ck_assert_int_ne(stat(partial, &sb), 0);	/* removed */
	snprintf(path, sizeof path, "%s/identity", res.dir);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
	fclose(f);
	ck_assert_str_eq(line, "00112233aabbccdd\n");
	/* what was committed before is there, and the copy opens as a store */
	ck_assert_msg(store_open(&copy, res.dir, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(store_get_call(copy, TABLE_CALLS, "0000000000000001", &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(store_get_call(copy, TABLE_CALLS, "0000000000000002", &r, &buf), 0);
	free(buf);
	ck_assert_int_eq(store_find_idem(copy, "k1", r.id), 0);
	ck_assert_str_eq(r.id, "0000000000000001");
	store_close(&copy);

	/* the next backup: a directory of its own, with the newer commit */
	add(s, "0000000000000003", 7000, NULL);
	ck_assert_int_eq(store_commit(s), 0);
	res2 = backup_to_end(base, b);
	ck_assert_msg(res2.ok, "%s", res2.error);
	ck_assert_str_ne(res2.dir, res.dir);
	ck_assert_msg(store_open(&copy, res2.dir, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(store_get_call(copy, TABLE_CALLS, "0000000000000003", &r, &buf), 0);
	free(buf);
	store_close(&copy);

	backup_free(&b);
	store_close(&s);
	event_base_free(base);
	remove_dir();
}
END_TEST

START_TEST(a_backup_dir_that_cannot_be_made_is_an_error)
{
	struct store *s = open_store();
	struct event_base *base = event_base_new();
	struct backup_result res;
	struct backup *b = backup_new(base, s, dir, "/proc/cagehost-no-such-dir", 0);

	ck_assert_ptr_nonnull(b);
	res = backup_to_end(base, b);
	ck_assert(!res.ok && !res.cancelled);
	ck_assert_msg(strstr(res.error, "cannot create backup_dir /proc/cagehost-no-such-dir"),
		      "%s", res.error);
	backup_free(&b);
	store_close(&s);
	event_base_free(base);
	remove_dir();
}
END_TEST

Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("bdb");

	tcase_add_checked_fixture(tc, make_dir, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, committed_calls_survive_reopen);
	tcase_add_test(tc, a_taken_call_id_is_refused);
	tcase_add_test(tc, due_calls_come_earliest_first);
	tcase_add_test(tc, a_due_scan_resumes_at_a_time_and_an_id);
	tcase_add_test(tc, finished_calls_leave_the_due_index);
	tcase_add_test(tc, new_calls_are_unindexed_until_a_restart_makes_them_due);
	tcase_add_test(tc, a_restart_makes_every_new_call_due);
	tcase_add_test(tc, idempotency_keys_find_the_first_call);
	tcase_add_test(tc, delivery_keys_outlive_the_finished_call_until_answered);
	tcase_add_test(tc, cage_floor_is_the_oldest_pending_call_for_the_cage);
	tcase_add_test(tc, cage_index_is_built_for_a_data_dir_without_one);
	tcase_add_test(tc, cage_index_is_built_over_a_large_queue);
	tcase_add_test(tc, sweep_removes_only_old_done_calls);
	tcase_add_test(tc, sweep_keeps_at_most_keep_max_done_calls);
	tcase_add_test(tc, dead_calls_are_swept_by_age_and_by_count);
	tcase_add_test(tc, a_swept_dead_delivery_keeps_its_delivered_key);
	tcase_add_test(tc, sweeping_a_delivery_leaves_a_local_call_with_the_same_key);
	tcase_add_test(tc, pending_pages_merge_new_calls_in_id_order);
	tcase_add_test(tc, ids_increase_across_restarts);
	tcase_add_test(tc, second_host_on_the_same_dir_is_refused);
	tcase_add_test(tc, data_dir_is_created_with_its_parents);
	tcase_add_test(tc, dead_pages_requeue_and_delete_what_the_filter_selects);
	tcase_add_test(tc, a_dead_page_ends_at_its_writes_budget);
	tcase_add_test(tc, deleting_a_dead_call_frees_only_its_own_key);
	tcase_add_test(tc, a_drained_file_is_compacted_at_start);
	tcase_add_test(tc, an_undone_part_undoes_nothing_else);
	tcase_add_test(tc, batch_undo_drops_only_the_writes_after_the_mark);
	tcase_add_test(tc, batch_hand_over_commits_part_of_a_long_turn_before_it_ends);
	tcase_add_test(tc, direct_writes_commit_at_the_end_of_their_turn);
	tcase_add_test(tc, a_backup_is_a_data_dir_with_every_commit);
	tcase_add_test(tc, a_backup_dir_that_cannot_be_made_is_an_error);
	suite_add_tcase(s, tc);
	return s;
}

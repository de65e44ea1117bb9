/*
 * check_log.c - unit tests of the log's per-second budgets (host/log.c):
 * a storm of one kind of message is cut to the budget, and the next line
 * logged says how many were left out, or log_budgets_report() does once
 * the storm is over.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../host/clock.h"
#include "../../host/log.h"

/* Sleeps until just after the start of the next second of the clock the
 * budget counts in. */
static void start_of_second(void)
{
	int64_t second = clock_mono_ms() / 1000;

	while (clock_mono_ms() / 1000 == second)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
}

/* The log goes to a temporary file until capture_end(), which returns how
 * many lines were logged and copies the last one to last. */
struct capture {
	char path[32];
	int fd, saved;
};

static void capture_begin(struct capture *c)
{
	snprintf(c->path, sizeof c->path, "/tmp/check_log.XXXXXX");
	c->fd = mkstemp(c->path);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(c->fd, 0);
	ck_assert_int_ge(dup2(c->fd, STDERR_FILENO), 0);	/* the log writes to stderr */
}

static int capture_end(struct capture *c, char *last, size_t size)
{
	char line[512];
	int lines = 0;
	FILE *f;

	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	close(c->fd);
	f = fopen(c->path, "r");
	ck_assert_ptr_nonnull(f);
	last[0] = '\0';
	while (fgets(line, sizeof line, f)) {
		lines++;
		snprintf(last, size, "%s", line);
	}
	fclose(f);
	unlink(c->path);
	return lines;
}

/* Captures the log and, just after a second begins, sends 50 lines of one
 * kind through b. */
static void storm(struct capture *c, struct log_budget *b, enum log_level level)
{
	capture_begin(c);
	start_of_second();
	for (int i = 0; i < 50; i++)
		log_msg_budget(b, level, "storm line %d", i);
}

START_TEST(a_storm_is_cut_to_the_budget_and_counted)
{
	static struct log_budget budget = LOG_BUDGET(20, "storm lines");
	struct capture c;
	char last[512];

	storm(&c, &budget, LOG_ERROR);
	start_of_second();
	log_msg_budget(&budget, LOG_ERROR, "after the storm");
	ck_assert_int_eq(capture_end(&c, last, sizeof last), 21);
	ck_assert_msg(strstr(last, "after the storm (and 30 more like it not logged: over 20 a second)"),
		      "%s", last);
}
END_TEST

/* with no line after the storm, the count comes once its second is over */
START_TEST(a_storm_with_no_line_after_it_is_counted_all_the_same)
{
	static struct log_budget budget = LOG_BUDGET(20, "storm lines");
	struct capture c;
	char last[512];

	storm(&c, &budget, LOG_WARNING);
	log_budgets_report(false);	/* the storm's second is not over */
	ck_assert_int_eq(capture_end(&c, last, sizeof last), 20);
	capture_begin(&c);
	start_of_second();
	log_budgets_report(false);
	log_budgets_report(false);	/* said once */
	ck_assert_int_eq(capture_end(&c, last, sizeof last), 1);
	ck_assert_msg(strstr(last, " warning: 30 more storm lines were not logged (over 20 a second)"),
		      "%s", last);
}
END_TEST

Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("budget");

	tcase_add_test(tc, a_storm_is_cut_to_the_budget_and_counted);
	tcase_add_test(tc, a_storm_with_no_line_after_it_is_counted_all_the_same);
	tcase_set_timeout(tc, 10);	/* each waits for two turns of the second */
	suite_add_tcase(s, tc);
	return s;
}

/*
 * check_log.c - unit tests of the log's per-second budgets (host/log.c):
 * a storm of one kind of message is cut to the budget, and the next line
 * logged says how many were left out.
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

START_TEST(a_storm_is_cut_to_the_budget_and_counted)
{
	static struct log_budget budget = LOG_BUDGET(20);
	char path[] = "/tmp/check_log.XXXXXX", line[512], last[512] = "";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), lines = 0;
	FILE *f;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);	/* the log writes to stderr */
	start_of_second();
	for (int i = 0; i < 50; i++)
		log_msg_budget(&budget, LOG_ERROR, "storm line %d", i);
	start_of_second();
	log_msg_budget(&budget, LOG_ERROR, "after the storm");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f)) {
		lines++;
		memcpy(last, line, sizeof last);
	}
	fclose(f);
	unlink(path);
	ck_assert_int_eq(lines, 21);
	ck_assert_msg(strstr(last, "after the storm (and 30 more like it not logged: over 20 a second)"),
		      "%s", last);
}
END_TEST

Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("budget");

	tcase_add_test(tc, a_storm_is_cut_to_the_budget_and_counted);
	tcase_set_timeout(tc, 10);	/* it waits for two turns of the second */
	suite_add_tcase(s, tc);
	return s;
}

/*
 * check_retry.c - unit tests of the retry schedule (host/retry.c).
 */
#include <check.h>
#include <stdint.h>

#include "../../host/retry.h"

/* Attempts a call that always fails gets when every attempt starts on time. */
static uint32_t attempts_until_expiry(const struct retry_policy *p, int64_t *last_ms)
{
	int64_t planned = 0, next;
	uint32_t attempts = 1;	/* the first attempt, at enqueue time 0 */

	while (retry_next_due(p, 0, attempts, planned, planned, 0, &next)) {
		planned = next;
		attempts++;
	}
	*last_ms = planned;
	return attempts;
}

START_TEST(default_policy_gives_80_retries_in_72h)
{
	struct retry_policy p;
	int64_t last;

	retry_policy_default(&p);
	ck_assert_uint_eq(attempts_until_expiry(&p, &last), 81);
	ck_assert_int_le(last, (int64_t)72 * 3600 * 1000);
	/* one more capped delay would pass the lifetime */
	ck_assert_int_gt(last + 3600 * 1000, (int64_t)72 * 3600 * 1000);
}
END_TEST

START_TEST(default_delays_grow_by_half_and_cap_at_one_hour)
{
	static const struct { uint32_t failures; int64_t delay_ms; } rows[] = {
		{ 1, 60000 }, { 2, 90000 }, { 3, 135000 }, { 4, 202500 }, { 5, 303750 },
		{ 10, 2306602 }, { 11, 3459902 }, { 12, 3600000 }, { 80, 3600000 },
	};
	struct retry_policy p;

	retry_policy_default(&p);
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		ck_assert_msg(retry_delay_ms(&p, rows[i].failures) == rows[i].delay_ms,
			      "row %zu: delay after %u failures is %lld, expected %lld", i,
			      rows[i].failures, (long long)retry_delay_ms(&p, rows[i].failures),
			      (long long)rows[i].delay_ms);
}
END_TEST

START_TEST(first_retry_is_60s_after_the_first_attempt)
{
	struct retry_policy p;
	int64_t next;

	retry_policy_default(&p);
	ck_assert(retry_next_due(&p, 1000, 1, 1000, 1000, 0, &next));
	ck_assert_int_eq(next, 61000);
}
END_TEST

START_TEST(compressed_policy_keeps_81_attempts)
{
	/* every default duration divided by 10000, as the end-to-end test does */
	struct retry_policy p = { 6, 1.5, 360, 25920, 0 };
	int64_t last;

	ck_assert_uint_eq(attempts_until_expiry(&p, &last), 81);
}
END_TEST

START_TEST(late_start_within_a_delay_costs_no_retry)
{
	struct retry_policy p;
	int64_t next;

	retry_policy_default(&p);
	/* planned at 0, started 5 s late: next is still planned + 60 s */
	ck_assert(retry_next_due(&p, 0, 1, 0, 5000, 0, &next));
	ck_assert_int_eq(next, 60000);
}
END_TEST

START_TEST(start_later_than_a_whole_delay_reanchors)
{
	struct retry_policy p;
	int64_t next;

	retry_policy_default(&p);
	/* the host was down for 10 minutes: no burst of catch-up retries */
	ck_assert(retry_next_due(&p, 0, 1, 0, 600000, 0, &next));
	ck_assert_int_eq(next, 660000);
}
END_TEST

START_TEST(zero_lifetime_means_no_retry)
{
	struct retry_policy p = { 1000, 2.0, 10000, 0, 0 };
	int64_t next;

	ck_assert(!retry_next_due(&p, 0, 1, 0, 0, 0, &next));
}
END_TEST

START_TEST(jitter_only_shortens_delays_by_up_to_its_share)
{
	struct retry_policy p;
	int64_t next, shortest = INT64_MAX, longest = 0;

	retry_policy_default(&p);
	p.jitter = 0.25;
	for (double r = 0; r < 1; r += 0.01) {
		ck_assert(retry_next_due(&p, 0, 1, 0, 0, r, &next));
		shortest = next < shortest ? next : shortest;
		longest = next > longest ? next : longest;
	}
	ck_assert_int_eq(longest, 60000);		/* random 0: the planned delay */
	ck_assert_int_ge(shortest, 45000);		/* never more than 25 % shorter */
	ck_assert_int_lt(shortest, 45200);		/* and nearly that at random 0.99 */
	/* the cap holds: a capped delay is never longer than max_interval */
	ck_assert(retry_next_due(&p, 0, 40, 0, 0, 0.5, &next));
	ck_assert_int_eq(next, 3600000 - 450000);
	/* out-of-range randoms are ignored rather than stretching a delay */
	ck_assert(retry_next_due(&p, 0, 1, 0, 0, 1.5, &next));
	ck_assert_int_eq(next, 60000);
}
END_TEST

/* Calls that failed together come back spread out, and still within the
 * lifetime, with at least as many attempts as without jitter. */
START_TEST(jittered_schedules_spread_and_keep_their_attempts)
{
	struct retry_policy p;
	int64_t planned[2] = { 0, 0 }, next;
	uint32_t attempts[2] = { 1, 1 };
	double r[2] = { 0.1, 0.9 };

	retry_policy_default(&p);
	p.jitter = 0.5;
	for (int c = 0; c < 2; c++) {
		while (retry_next_due(&p, 0, attempts[c], planned[c], planned[c], r[c], &next)) {
			ck_assert_int_le(next - planned[c], p.max_interval_ms);
			planned[c] = next;
			attempts[c]++;
		}
		ck_assert_int_le(planned[c], p.lifetime_ms);
		ck_assert_uint_ge(attempts[c], 81);
	}
	ck_assert_uint_gt(attempts[1], attempts[0]);	/* shorter delays, more of them */
}
END_TEST

Suite *retry_suite(void)
{
	Suite *s = suite_create("retry");
	TCase *tc = tcase_create("schedule");

	tcase_add_test(tc, default_policy_gives_80_retries_in_72h);
	tcase_add_test(tc, default_delays_grow_by_half_and_cap_at_one_hour);
	tcase_add_test(tc, first_retry_is_60s_after_the_first_attempt);
	tcase_add_test(tc, compressed_policy_keeps_81_attempts);
	tcase_add_test(tc, late_start_within_a_delay_costs_no_retry);
	tcase_add_test(tc, start_later_than_a_whole_delay_reanchors);
	tcase_add_test(tc, zero_lifetime_means_no_retry);
	tcase_add_test(tc, jitter_only_shortens_delays_by_up_to_its_share);
	tcase_add_test(tc, jittered_schedules_spread_and_keep_their_attempts);
	suite_add_tcase(s, tc);
	return s;
}

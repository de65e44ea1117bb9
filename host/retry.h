/*
 * retry.h - a queue's retry policy and the schedule it implies.
 *
 * After the n-th failed attempt (n = 1, 2, ...) the next attempt waits
 * interval * factor^(n-1), capped at max_interval.  The schedule is anchored
 * to the planned due times, not to when attempts happened to finish, so an
 * attempt that starts a little late does not cost the call a retry; if an
 * attempt starts later than a whole delay (and later than RETRY_ON_PLAN_MS;
 * the host was down), the plan is re-anchored at the attempt's start so
 * missed retries are not fired back to back.  A retry that would fall after enqueued + lifetime does not
 * happen: the call expires instead.
 *
 * With jitter j (0 to 1), each delay is shortened by a random part of up
 * to j of it, so calls that failed together (an outage) do not all come
 * back at the same moment.  Delays are never longer than without jitter:
 * max_interval and lifetime keep their meaning.
 *
 * The defaults (60 s, x1.5, 1 h, 72 h, no jitter) give exactly 80
 * retries, i.e. 81 attempts, for a call that always fails.
 */
#ifndef CAGEHOST_RETRY_H
#define CAGEHOST_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
	int64_t interval_ms;		/* delay after the first failure */
	double factor;			/* growth of each following delay, >= 1 */
	int64_t max_interval_ms;	/* cap on any one delay */
	int64_t lifetime_ms;		/* no attempt later than enqueue + this */
	double jitter;			/* 0 to 1: the random part of each delay */
};

#define RETRY_DEFAULT_INTERVAL_MS (60 * 1000)
#define RETRY_DEFAULT_FACTOR 1.5
#define RETRY_DEFAULT_MAX_INTERVAL_MS (3600 * 1000)
#define RETRY_DEFAULT_LIFETIME_MS ((int64_t)72 * 3600 * 1000)

/*
 * Lateness that never moves the plan, however short the delays (the
 * default first delay; a short test policy must not lose attempts to a
 * busy machine).
 */
#define RETRY_ON_PLAN_MS 60000

/* Fills *policy with the defaults above. */
void retry_policy_default(struct retry_policy *policy);

/* The delay after the failed_attempts-th failure (failed_attempts >= 1). */
int64_t retry_delay_ms(const struct retry_policy *policy, uint32_t failed_attempts);

/*
 * When to run the next attempt after failed_attempts failures, the last of
 * which was planned for planned_ms and started at started_ms; random is a
 * number from 0 up to 1 (only used with jitter).  Returns true and sets
 * *next_ms, or false when the call has expired.
 */
bool retry_next_due(const struct retry_policy *policy, int64_t enqueued_ms,
		    uint32_t failed_attempts, int64_t planned_ms,
		    int64_t started_ms, double random, int64_t *next_ms);

#endif
